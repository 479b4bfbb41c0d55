#!/usr/bin/env bash
# Installs what the tests need (Debian chromium, redis-server, node packages) and runs every test:
# Kubernetes manifest validation, formatting and lints, Rust unit + integration tests (and
# the vendored rtc-interceptor's own), then the headless-Chromium browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# a one-shot build gains nothing from incremental state, which doubles target/ on disk
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || need_apt+=(firefox-esr)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# the capped-downlink browser test makes a network namespace and shapes its link with tc
{ command -v ip && command -v tc; } >/dev/null 2>&1 || need_apt+=(iproute2)
# the ICE-TCP browser test drops UDP in its own network namespace with an nftables rule
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
# the TURN tests (Rust and browser) start Debian's coturn on loopback ports; openssl makes
# the browser test's TURN-over-TLS certificate
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# the fleet tests start their own redis-server on a loopback port
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "== Kubernetes manifests (offline schema validation)"
bash scripts/validate-k8s.sh

echo "== dependencies: licences, bans (rsa: RUSTSEC-2023-0071) and sources per deny.toml"
python3 scripts/deps-check.py
if command -v cargo-deny >/dev/null 2>&1; then
  cargo deny --locked check
fi

echo "== cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings 2>&1

echo "== cargo test (unit + loopback integration tests)"
cargo test --workspace --locked 2>&1

echo "== vendored rtc-interceptor: upstream's own tests (its in-place read walk: glue/tests/interceptor_chain.rs)"
cargo test --locked -p rtc-interceptor 2>&1

echo "== vendored crates: the release plus vendor/patches, nothing else (scripts/vendor.sh)"
bash scripts/vendor.sh check

echo "== browser tests (headless Chromium)"
cargo build --locked --bin sfu
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && npm test)

echo "== disk: target/ after the suite"
du -sh target 2>/dev/null || true
