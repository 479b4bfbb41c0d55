#!/usr/bin/env python3
"""Checks the dependency graph against deny.toml's [licenses], [bans] and [sources].

The part of `cargo deny check` that needs no advisory database, for machines without
cargo-deny: every package in `cargo metadata` (the platforms in [graph].targets) must carry a
licence expression the allow list satisfies (SPDX `OR`/`AND`/`WITH`, parentheses, the legacy
`/` for OR), must not be a denied crate, and must come from an allowed registry, a git
source in allow-git, or this repository. Exit 1 with one line per finding.
"""
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

def satisfied(expr: str, allow: set[str]) -> bool:
    """Whether an SPDX licence expression is met by the allowed licence ids."""
    tokens = re.findall(r"\(|\)|[A-Za-z0-9.+-]+|/", expr)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary() -> bool:
        if peek() is None:
            raise ValueError(f"licence expression {expr!r} ends early")
        t = take()
        if t == "(":
            v = disjunction()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expr!r}")
            return v
        if peek() == "WITH":  # an exception narrows a licence: allowed when the licence is
            take()
            take()
        return t.rstrip("+") in allow

    def conjunction() -> bool:
        v = primary()
        while peek() == "AND":
            take()
            v = primary() and v
        return v

    def disjunction() -> bool:
        v = conjunction()
        while peek() in ("OR", "/"):
            take()
            v = conjunction() or v
        return v

    v = disjunction()
    if pos != len(tokens):
        raise ValueError(f"cannot parse licence expression {expr!r}")
    return v


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    policy = tomllib.loads((root / "deny.toml").read_text())
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked"]
    for t in policy.get("graph", {}).get("targets", []):
        cmd += ["--filter-platform", t]
    meta = json.loads(subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout)
    # the packages the workspace actually resolves to on these platforms
    used = {n["id"] for n in meta["resolve"]["nodes"]}
    packages = [p for p in meta["packages"] if p["id"] in used]

    allow = set(policy["licenses"]["allow"])
    denied = {d["crate"]: d.get("reason", "") for d in policy["bans"].get("deny", [])}
    registries = {"registry+" + r for r in policy["sources"].get("allow-registry", [])}
    gits = {"git+" + g for g in policy["sources"].get("allow-git", [])}

    findings = []
    for p in sorted(packages, key=lambda p: (p["name"], p["version"])):
        who = f"{p['name']} {p['version']}"
        lic = p.get("license")
        if not lic:
            findings.append(f"licenses: {who} declares no licence expression")
        else:
            try:
                if not satisfied(lic, allow):
                    findings.append(f"licenses: {who} is {lic!r}, not in deny.toml's allow list")
            except ValueError as e:
                findings.append(f"licenses: {who}: {e}")
        if p["name"] in denied:
            findings.append(f"bans: {who} is denied ({denied[p['name']]}); see `cargo tree -i {p['name']}`")
        src = p.get("source")
        if src is None:
            if not Path(p["manifest_path"]).resolve().is_relative_to(root):
                findings.append(f"sources: {who} is a path dependency outside the repository")
        elif src.startswith("registry+"):
            if src not in registries:
                findings.append(f"sources: {who} comes from the registry {src}")
        elif src.startswith("git+"):
            if not any(src.startswith(g) for g in gits):
                findings.append(f"sources: {who} comes from git {src}")
        else:
            findings.append(f"sources: {who} comes from {src}")

    for f in findings:
        print(f, file=sys.stderr)
    print(f"deps-check: {len(packages)} packages, {len(findings)} findings "
          f"(licences, bans and sources per deny.toml)")
    return 1 if findings else 0


def self_test() -> None:
    """The licence expressions seen in the graph and the forms SPDX allows."""
    allow = {"MIT", "Apache-2.0", "Unicode-3.0"}
    rows = [
        ("MIT", True),
        ("GPL-3.0", False),
        ("MIT OR Apache-2.0", True),
        ("GPL-3.0 OR MIT", True),
        ("MIT/Apache-2.0", True),
        ("MIT AND BSD-3-Clause", False),
        ("(MIT OR Apache-2.0) AND Unicode-3.0", True),
        ("(MIT OR GPL-3.0) AND (LGPL-2.1 OR GPL-2.0)", False),
        ("Apache-2.0 WITH LLVM-exception", True),
        ("GPL-2.0 WITH Classpath-exception-2.0 OR MIT", True),
        ("Apache-2.0+", True),
    ]
    for expr, want in rows:
        assert satisfied(expr, allow) == want, expr
    for bad in ["(MIT", "MIT OR", "MIT Apache-2.0"]:
        try:
            satisfied(bad, allow)
        except (ValueError, IndexError):
            continue
        raise AssertionError(f"{bad!r} parsed")


if __name__ == "__main__":
    self_test()
    sys.exit(main())
