#!/usr/bin/env bash
# Plays a rolling upgrade on this machine and prints the measured figures: the integration test
# sfu/tests/rolling_upgrade.rs starts the real `sfu` binary twice (node A, then node B as the
# "new version"), runs a conference on A (1 publisher + 2 subscribers, headless loadtest clients),
# drains A through POST /api/node/drain, places the new room on B with a /readyz-based load
# balancer, checks that A's conference goes on without loss or gap > 250 ms and that A exits 0
# once its participants left.
#
#   scripts/rolling-upgrade.sh        # prints the ROLLING_UPGRADE lines (full output on failure)
#   VERBOSE=1 scripts/rolling-upgrade.sh   # also the per-track figures and progress
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo test -p sfu --test rolling_upgrade -- --nocapture >"$log" 2>&1; then
  cat "$log"
  echo "rolling upgrade: FAILED (output above)" >&2
  exit 1
fi
if [ "${VERBOSE:-0}" = 1 ]; then
  grep -vE '^\s*(Compiling|Running|Finished)|^$' "$log"
else
  grep -E '^ROLLING_UPGRADE' "$log"
fi
