#!/usr/bin/env bash
# One broadcast run (1 publisher -> VIEWERS subscribers) against a fresh local server, with the
# machine's per-second picture: server and load tester CPU, datagrams out/in of the media port,
# the kernel's UDP receive-buffer drops (all sockets), NACKs and the server's drop counters.
# Prints the per-second table, the load tester's JSON line and the non-zero drop reasons; exits
# with the load tester's status (1 when --max-loss-pct 0.5 failed).
#
#   scripts/broadcast.sh                      # 1000 viewers at f, 20 s ramp, 30 s window
#   PIN=1 scripts/broadcast.sh                # server on CPU 0, load tester on CPU 1
#   VIEWERS=700 LAYER=q RUNS=3 scripts/broadcast.sh
#
# Environment: VIEWERS (1000), LAYER (f), DURATION (30s), RAMP (20s), RUNS (1), PIN (unset:
# the scheduler places both; 1: taskset the server to CPU 0 with --send-threads 0 and the load
# tester to CPU 1, like two one-core hosts), SFU_BIN, LOADTEST_BIN, SFU_ARGS, LOADTEST_ARGS,
# OUT (directory for logs, default a temporary one). Uses ports 7880 (HTTP) and 7882 (UDP).
set -uo pipefail
cd "$(dirname "$0")/.."
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
VIEWERS=${VIEWERS:-1000} LAYER=${LAYER:-f} DURATION=${DURATION:-30s} RAMP=${RAMP:-20s} RUNS=${RUNS:-1}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
for b in "$SFU_BIN" "$LOADTEST_BIN"; do
  [ -x "$b" ] || { echo "missing $b: cargo build --release --bin sfu --bin loadtest" >&2; exit 2; }
done
PIN_SFU=() PIN_LT=() EXTRA=()
if [ -n "${PIN:-}" ]; then PIN_SFU=(taskset -c 0) PIN_LT=(taskset -c 1) EXTRA=(--send-threads 0); fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rcvbuf() { awk '/^Udp:/ { n++; if (n == 2) print $6 }' /proc/net/snmp; }
metric() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

status=0
for run in $(seq 1 "$RUNS"); do
  "${PIN_SFU[@]}" "$SFU_BIN" --dev --http 127.0.0.1:7880 --udp 127.0.0.1:7882 --max-participants 5000 \
    --log warn "${EXTRA[@]}" ${SFU_ARGS:-} > "$OUT/sfu-$run.log" 2>&1 &
  sfu=$!
  for _ in $(seq 50); do curl -sf 127.0.0.1:7880/metrics > /dev/null && break; sleep 0.1; done
  "${PIN_LT[@]}" "$LOADTEST_BIN" broadcast --viewers "$VIEWERS" --layer "$LAYER" --duration "$DURATION" \
    --ramp "$RAMP" --max-loss-pct 0.5 ${LOADTEST_ARGS:-} > "$OUT/loadtest-$run.out" 2> "$OUT/loadtest-$run.err" &
  lt=$!
  printf '%-8s %6s %6s %6s %8s %7s %8s %7s\n' time viewers sfu% load% out/s in/s rcvbuf/s nacks/s
  prev=""
  while kill -0 "$lt" 2> /dev/null; do
    curl -s -m 0.5 127.0.0.1:7880/metrics > "$OUT/m" 2> /dev/null
    now="$(ticks $sfu) $(ticks $lt) $(metric sfu_udp_out_packets_total "$OUT/m") $(metric sfu_udp_in_packets_total "$OUT/m") $(rcvbuf) $(metric sfu_nacks_received_total "$OUT/m")"
    if [ -n "$prev" ]; then
      # shellcheck disable=SC2086
      echo $prev $now | awk -v t="$(date +%T)" -v v="$(metric sfu_participants "$OUT/m")" \
        '{ printf "%-8s %6d %6d %6d %8d %7d %8d %7d\n", t, v, $7-$1, $8-$2, $9-$3, $10-$4, $11-$5, $12-$6 }'
    fi
    prev=$now
    sleep 1
  done
  wait "$lt"; rc=$?
  curl -s 127.0.0.1:7880/metrics > "$OUT/metrics-$run"
  kill "$sfu"; wait "$sfu" 2> /dev/null
  echo "run $run: exit $rc"
  tail -1 "$OUT/loadtest-$run.out"
  grep '^sfu_dropped_packets_total' "$OUT/metrics-$run" | grep -v ' 0$' || true
  [ "$rc" -eq 0 ] || status=$rc
done
echo "logs: $OUT"
exit "$status"
