#!/usr/bin/env bash
# Runs the browser H264 simulcast test (tests/browser/h264.test.mjs) several times per server
# binary, alternating, and prints how long the switch to the top layer took: the top layer waits
# for the publishing Chromium's bandwidth estimate, so this shows how the server's feedback
# (TWCC arrival times) lets it ramp. HOG=1 keeps one CPU busy with a shell loop meanwhile (a
# loaded CI machine).
#
#   scripts/h264-ramp.sh                                   # target/debug/sfu, 5 runs
#   HOG=1 RUNS=7 scripts/h264-ramp.sh /tmp/old/sfu target/debug/sfu
#
# Environment: RUNS (5), HOG (unset), SFU_ARGS (passed to every server), OUT (log directory,
# default a temporary one). Needs `cargo build --bin sfu` and the browser tests' packages
# (`cd tests/browser && npm ci`).
set -uo pipefail
cd "$(dirname "$0")/.."
bins=("$@"); [ ${#bins[@]} -gt 0 ] || bins=(target/debug/sfu)
RUNS=${RUNS:-5} OUT=${OUT:-$(mktemp -d)}
hog=""
if [ -n "${HOG:-}" ]; then (while :; do :; done) & hog=$!; fi
trap '[ -n "$hog" ] && kill $hog' EXIT
for i in $(seq 1 "$RUNS"); do
  for b in "${bins[@]}"; do
    log="$OUT/h264-$(basename "$b")-$i.log"
    bin=$(realpath "$b")
    (cd tests/browser && SFU_BIN="$bin" SFU_ARGS="${SFU_ARGS:-}" \
      timeout 200 node --test --test-timeout=160000 h264.test.mjs) > "$log" 2>&1
    rc=$?
    switch=$(grep -o 'layer f (width [0-9]*) [0-9]* ms' "$log" || echo "no top layer")
    echo "run $i $b: exit $rc, $switch"
  done
done
echo "logs: $OUT"
