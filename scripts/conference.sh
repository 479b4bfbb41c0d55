#!/usr/bin/env bash
# Conference runs (ROOMS rooms x PARTICIPANTS publishing participants) against a fresh local
# server per run, alternating between the server binaries given (default target/release/sfu),
# and one line per run: server CPU seconds (and context switches and RSS in the steady window), kernel
# drops on the media port, datagrams per receive call, time datagrams waited in the socket
# buffer (mean, p50, p99, p99.9 from sfu_udp_receive_queue_seconds), loss and end-to-end
# latency from the load tester's JSON.
#
#   scripts/conference.sh                                    # 10 x 4, 20 s, 1 run
#   RUNS=3 scripts/conference.sh target/baseline/sfu-X target/release/sfu
#   SFU_ARGS="--udp-recv-buffer 0" scripts/conference.sh     # the kernel's default buffer
#   ROOMS=40 PARTICIPANTS=1 RAMP=5s STEADY_AT=8 RUNS=3 scripts/conference.sh A B
#   DURATION=60s STEADY_AT=45 scripts/conference.sh A B  # past the warm-up: until ~40 s the
#                         # retransmission caches fill and the heap grows (docs/perf-history.md 24.5)
#                         # publishers only, nothing forwarded: the receive path's µs/datagram
#
# The steady window also gives the datagrams the server read in it and its CPU per inbound
# datagram (most telling with PARTICIPANTS=1, where receiving is all the server does).
#
# Environment: ROOMS (10), PARTICIPANTS (4), DURATION (20s), RAMP (10s), RUNS (1), SFU_ARGS,
# LOADTEST_BIN, STEADY_AT / STEADY_FOR (12 / 10: the steady window whose server CPU is also
# printed, after the load tester's ramp; keep STEADY_AT + STEADY_FOR below RAMP + DURATION),
# OUT (log directory, default a temporary one), PERF (`perf record` options, e.g. "-F 999 -g":
# the steady window is profiled into $OUT/perf-<binary>-<run>.data, for scripts/perf-split.py).
# Uses ports 7880 (HTTP) and 7882 (UDP).
set -uo pipefail
cd "$(dirname "$0")/.."
bins=("$@"); [ ${#bins[@]} -gt 0 ] || bins=(target/release/sfu)
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
ROOMS=${ROOMS:-10} PARTICIPANTS=${PARTICIPANTS:-4} DURATION=${DURATION:-20s} RAMP=${RAMP:-10s} RUNS=${RUNS:-1}
STEADY_AT=${STEADY_AT:-12} STEADY_FOR=${STEADY_FOR:-10}
OUT=${OUT:-$(mktemp -d)}
for run in $(seq 1 "$RUNS"); do
  for bin in "${bins[@]}"; do
    tag="$(basename "$bin")-$run"
    "$bin" --dev --http 127.0.0.1:7880 --udp 127.0.0.1:7882 --log warn ${SFU_ARGS:-} > "$OUT/sfu-$tag.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -sf 127.0.0.1:7880/healthz >/dev/null && break; sleep 0.1; done
    "$LOADTEST_BIN" conference --rooms "$ROOMS" --participants "$PARTICIPANTS" --duration "$DURATION" --ramp "$RAMP" \
      > "$OUT/loadtest-$tag.out" 2> "$OUT/loadtest-$tag.err" &
    lt=$!
    # the steady part: server CPU over STEADY_FOR seconds from STEADY_AT (after the ramp), its
    # context switches there (every thread's, voluntary and not) and the datagrams it read
    switches() { cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
    inbound() { curl -sf 127.0.0.1:7880/metrics | awk '/^sfu_udp_in_packets_total/ {print $2}'; }
    sleep "$STEADY_AT"; t0=$(awk '{print $14+$15}' "/proc/$pid/stat"); s0=$(switches); d0=$(inbound)
    if [ -n "${PERF:-}" ]; then
      perf record $PERF -o "$OUT/perf-$tag.data" -p "$pid" -- sleep "$STEADY_FOR" 2> "$OUT/perf-$tag.err"
    else
      sleep "$STEADY_FOR"
    fi
    t1=$(awk '{print $14+$15}' "/proc/$pid/stat"); s1=$(switches); d1=$(inbound)
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    wait "$lt"
    cpu=$(awk '{print ($14+$15)/100}' "/proc/$pid/stat")
    steady=$(( t1 - t0 ))
    curl -s 127.0.0.1:7880/metrics > "$OUT/metrics-$tag.txt"
    kill "$pid"; wait "$pid" 2>/dev/null
    python3 - "$tag" "$cpu" "$OUT/metrics-$tag.txt" "$OUT/loadtest-$tag.out" "$steady" "$STEADY_AT" "$STEADY_FOR" $(( s1 - s0 )) $(( ${d1:-0} - ${d0:-0} )) "${rss:-0}" <<'PY'
import json, re, sys
tag, cpu, metrics, out, steady, at, span, switches, inbound, rss = sys.argv[1:]
vals, buckets = {}, []
for line in open(metrics):
    m = re.match(r'sfu_udp_receive_queue_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
    if m:
        buckets.append((float('inf') if m.group(1) == '+Inf' else float(m.group(1)), float(m.group(2))))
    elif line and not line.startswith('#'):
        k, _, v = line.rpartition(' ')
        vals[k] = float(v)
count = vals.get('sfu_udp_receive_queue_seconds_count', 0)
def q(p):
    want, lo, below = p * count, 0.0, 0.0
    for le, c in buckets:
        if c >= want:
            return lo if le == float('inf') else lo + (le - lo) * (want - below) / max(c - below, 1)
        lo, below = le, c
    return float('nan')
us = lambda s: f"{s * 1e6:.0f} µs"
calls = vals.get('sfu_udp_recv_calls_total', 0)
per_call = vals.get('sfu_udp_in_packets_total', 0) / calls if calls else float('nan')
drops = int(vals.get('sfu_dropped_packets_total{reason="udp_receive_buffer_full"}', 0))
lines = [l for l in open(out) if l.startswith('{')]
r = json.loads(lines[-1]) if lines else {}
queue = (f"mean {us(vals.get('sfu_udp_receive_queue_seconds_sum', 0) / count)}, p50 {us(q(.5))}, "
         f"p99 {us(q(.99))}, p99.9 {us(q(.999))}") if count else "no stamps"
per_in = f"{int(steady) * 1e4 / int(inbound):.2f} µs per inbound datagram" if int(inbound) > 0 else "no datagrams"
print(f"{tag}: server CPU {cpu} s ({int(steady) / 100:.2f} s in {at}-{int(at) + int(span)} s, {int(switches) / int(span):.0f} context switches/s, "
      f"{int(inbound) / int(span):.0f} datagrams in/s, {per_in}, RSS {int(rss) / 1024:.0f} MiB at its end), kernel drops {drops}, {per_call:.1f} datagrams/receive call, "
      f"queue {queue}; clients {r.get('clients_connected')}/{r.get('clients_planned')}, "
      f"loss {r.get('loss_pct')}%, e2e p50/p99 {r.get('latency_p50_ms')}/{r.get('latency_p99_ms')} ms")
PY
  done
done
echo "logs: $OUT"
