#!/usr/bin/env bash
# Abuse run: garbage datagrams at the media port while a conference runs. Starts the release
# server on loopback, a load-tester conference, and after a warm-up a flood of random datagrams
# (random sizes 1-1200 bytes, random first bytes: STUN-, DTLS-, RTP- and RTCP-looking and
# neither) from many source ports for FLOOD_SECONDS at FLOOD_PPS. Prints the conference's loss
# and latency, the server's drop counters by reason, the kernel's UDP receive-buffer drops over
# the run, the server's CPU and whether /healthz answered during the flood. Bounded: it stops
# by itself. FLOOD_SPOOF=1 (root: a raw socket) sends the garbage from the participants' own
# addresses instead (what a hostile participant, or anyone spoofing one, can send): it gets
# past the address check into the participants' connections.
#
#   cargo build --release --bin sfu --bin loadtest && scripts/abuse-flood.sh
#   FLOOD_PPS=100000 FLOOD_SECONDS=30 ROOMS=4 PARTICIPANTS=3 scripts/abuse-flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD_PPS="${FLOOD_PPS:-100000}" FLOOD_SECONDS="${FLOOD_SECONDS:-30}"
ROOMS="${ROOMS:-4}" PARTICIPANTS="${PARTICIPANTS:-3}" WARMUP="${WARMUP:-10}"
HTTP=127.0.0.1:7981 UDP=127.0.0.1:7982
bin=target/release

rcvbuf_errors() { awk '/^Udp:/ && !h { h=1; for (i=1;i<=NF;i++) if ($i=="RcvbufErrors") c=i; next } /^Udp:/ && h { print $c; exit }' /proc/net/snmp; }

"$bin/sfu" --dev --http "$HTTP" --udp "$UDP" --max-participants 1000 >target/abuse-sfu.log 2>&1 &
sfu=$!
trap 'kill $sfu 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs "http://$HTTP/healthz" >/dev/null && break; sleep 0.1; done
kill -0 $sfu 2>/dev/null || { echo "the server did not start: target/abuse-sfu.log" >&2; exit 1; }
errs0=$(rcvbuf_errors)
cpu0=$(awk '{print $14+$15}' /proc/$sfu/stat)
run_s=$((WARMUP + FLOOD_SECONDS + 5))
"$bin/loadtest" conference --url "ws://$HTTP/ws" --rooms "$ROOMS" --participants "$PARTICIPANTS" \
  --ramp 3s --duration "${run_s}s" >target/abuse-loadtest.log 2>&1 &
lt=$!
sleep "$((WARMUP + 3))"
spoof=""
if [ "${FLOOD_SPOOF:-0}" = 1 ]; then
  # the load tester's UDP sockets: the addresses the server learned for its participants
  spoof=$(ss -uanpH 2>/dev/null | awk '/"loadtest"/ {print $4}' | { grep '^127\.' || true; } | sort -u | tr '\n' ' ')
  echo "spoofing $(echo $spoof | wc -w) participant addresses"
fi
python3 - "$UDP" "$FLOOD_PPS" "$FLOOD_SECONDS" $spoof <<'PY' &
import os, random, socket, struct, sys, time
host, port = sys.argv[1].rsplit(":", 1)
pps, secs = int(sys.argv[2]), float(sys.argv[3])
sources = [a.rsplit(":", 1) for a in sys.argv[4:]]
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(64)]
firsts = [0x00, 0x01, 0x16, 0x17, 0x80, 0x90, 0xc8, 0xc9, 0xff]
payloads = []
for i in range(4096):
    n = random.randint(1, 1200)
    b = bytearray(os.urandom(n))
    b[0] = random.choice(firsts) if random.random() < 0.8 else b[0]
    payloads.append(bytes(b))
dest = (host, int(port))
if sources:
    # IPv4 + UDP headers by hand (the kernel fills the IP checksum; UDP checksum 0 is allowed)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dst_ip = socket.inet_aton(host)
    def wrap(p, src):
        sip, sport = socket.inet_aton(src[0]), int(src[1])
        udp = struct.pack("!HHHH", sport, int(port), 8 + len(p), 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(p), 0, 0, 64, 17, 0, sip, dst_ip)
        return ip + udp + p
    payloads = [wrap(p, random.choice(sources)) for p in payloads]
    socks = [raw] * 64
sent, start = 0, time.monotonic()
while True:
    now = time.monotonic() - start
    if now >= secs:
        break
    due = int(now * pps)
    while sent < due:
        try:
            socks[sent % 64].sendto(payloads[sent % 4096], dest)
        except OSError:
            pass
        sent += 1
print(f"flood: {sent} datagrams in {time.monotonic() - start:.1f} s ({sent / secs:.0f}/s)", flush=True)
PY
flood=$!
health_ok=0 health_fail=0
while kill -0 $flood 2>/dev/null; do
  if curl -fs -m 1 "http://$HTTP/healthz" >/dev/null; then health_ok=$((health_ok + 1)); else health_fail=$((health_fail + 1)); fi
  sleep 1
done
wait $flood || true
wait $lt || true
cpu1=$(awk '{print $14+$15}' /proc/$sfu/stat)
errs1=$(rcvbuf_errors)
echo "== conference (loadtest summary)"
grep -E '^  (subscribers|video tracks|packets|latency|keyframes)' target/abuse-loadtest.log || tail -20 target/abuse-loadtest.log
echo "== server drops by reason"
curl -fs "http://$HTTP/metrics" | grep -E '^sfu_(dropped_packets_total|rtc_rejected_packets_total)' | sort
echo "== kernel UDP receive-buffer drops during the run: $((errs1 - errs0))"
echo "== server CPU over the run: $(( (cpu1 - cpu0) ))/$(getconf CLK_TCK) s; /healthz during the flood: $health_ok answered, $health_fail failed"
