#!/usr/bin/env bash
# The vendored webrtc-rs crates (vendor/rtc*) are the published release plus the patches in
# vendor/patches/<crate>/ (applied in name order) and the trimming below; nothing else.
#
#   scripts/vendor.sh recreate   rewrite vendor/<crate>/ from the release (PATCH.md is kept)
#   scripts/vendor.sh check      recreate into a temp dir and diff against vendor/; fails on a diff
#   scripts/vendor.sh stat       lines added/removed per patch, and the total
#
# Upgrading: change VERSION, run `recreate`, fix the patches that no longer apply.
# Needs cargo (with access to the crates registry, unless the crates are already in its cache),
# git (for `git apply`) and diff.
set -euo pipefail

VERSION=0.21.1
CRATES=(rtc rtc-ice rtc-interceptor rtc-srtp)
# What is kept of each crate besides Cargo.toml, src/ and the licences: examples, benches,
# docs and the tests that need dev-dependencies are dropped (rtc-interceptor's tests need none
# and run with the suite, scripts/test.sh).
declare -A KEEP=([rtc]=README.md [rtc-ice]=README.md [rtc-interceptor]=tests [rtc-srtp]=README.md)

root=$(cd "$(dirname "$0")/.." && pwd)
patches=$root/vendor/patches

# Pristine sources through cargo itself, so no registry address is spelled here: `cargo
# vendor` of a throwaway package depending on exactly this release.
fetch() { # fetch DIR -> DIR/v/<crate>-VERSION
    mkdir -p "$1/src"
    touch "$1/src/lib.rs"
    {
        printf '[package]\nname = "pristine"\nversion = "0.0.0"\nedition = "2021"\n\n'
        printf '[workspace]\n\n[dependencies]\n'
        for c in "${CRATES[@]}"; do printf '%s = "=%s"\n' "$c" "$VERSION"; done
    } >"$1/Cargo.toml"
    (cd "$1" && cargo vendor --quiet --versioned-dirs v >/dev/null)
}

# Drops the manifest tables of what is not kept ([[example]], [[bench]], [dev-dependencies*],
# [profile*], and [[test]] unless tests/ is kept), each with the blank lines before it.
trim_manifest() { # trim_manifest FILE KEEP_TESTS(0|1)
    awk -v keep_tests="$2" '
        /^\[/ {
            t = $0; gsub(/[][]/, "", t)
            drop = t ~ /^(example|bench)$/ || t ~ /^(dev-dependencies|profile)(\.|$)/ \
                || (t == "test" && !keep_tests)
        }
        /^$/ { blanks = blanks "\n"; next }
        !drop { printf "%s", blanks; print }
        { blanks = "" }
    ' "$1" >"$1.new"
    mv "$1.new" "$1"
}

# Builds every patched crate into OUT/<crate>.
build() { # build OUT
    local out=$1 work=$1/.pristine c tests p
    fetch "$work"
    for c in "${CRATES[@]}"; do
        local src=$work/v/$c-$VERSION dst=$out/$c
        mkdir -p "$dst"
        for p in Cargo.toml src ${KEEP[$c]}; do cp -R "$src/$p" "$dst/"; done
        # rtc-ice, rtc-interceptor and rtc-srtp are published without licence files; they are
        # the same project's (MIT/Apache-2.0), so rtc's are copied alongside.
        cp "$work/v/rtc-$VERSION"/LICENSE-{APACHE,MIT} "$dst/"
        tests=0; [[ " ${KEEP[$c]} " == *" tests "* ]] && tests=1
        trim_manifest "$dst/Cargo.toml" "$tests"
        for p in "$patches/$c"/*.patch; do
            # the ceiling keeps git from taking an enclosing repository's root as the patch root
            (cd "$dst" && GIT_CEILING_DIRECTORIES=$out git apply --whitespace=nowarn "$p") ||
                { echo "vendor.sh: $p does not apply" >&2; exit 1; }
        done
    done
    rm -rf "$work"
}

case "${1:-}" in
recreate)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    build "$tmp"
    for c in "${CRATES[@]}"; do
        find "$root/vendor/$c" -mindepth 1 -maxdepth 1 ! -name PATCH.md -exec rm -rf {} +
        cp -R "$tmp/$c/." "$root/vendor/$c/"
    done
    ;;
check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    build "$tmp"
    status=0
    for c in "${CRATES[@]}"; do
        diff -ruN -x PATCH.md "$tmp/$c" "$root/vendor/$c" || status=1
    done
    [[ $status == 0 ]] || echo "vendor.sh: vendor/ differs from release + vendor/patches (above)" >&2
    exit $status
    ;;
stat)
    # changed lines: those starting with + or -, less the +++/--- file headers
    awk '
        BEGIN { print " added removed  patch" }
        FNR == 1 { if (f) printf "%6d %6d  %s\n", a, d, f; f = FILENAME; a = d = 0 }
        /^(\+\+\+|---) / { next }
        /^\+/ { a++; ta++ }
        /^-/ { d++; td++ }
        END { if (f) printf "%6d %6d  %s\n", a, d, f
              printf "%6d %6d  total: %d changed lines\n", ta, td, ta + td }
    ' "$patches"/*/*.patch | sed "s|$root/||"
    ;;
*)
    echo "usage: $0 recreate|check|stat" >&2
    exit 2
    ;;
esac
