#!/usr/bin/env bash
# Runs `fanout` with the server and the load generator in two network namespaces joined by a
# veth pair whose receive side runs in threaded NAPI (a kernel thread at SCHED_FIFO), so the
# server's CPU time holds its send path only, not the delivery into the receivers' sockets that
# loopback charges to the sender. Needs root; creates netns `sfub` (load generator, 10.99.0.2)
# and veth vsfu0 (host side, the server, 10.99.0.1) / vsfu1, and removes them on exit.
#
#   sudo scripts/veth-bench.sh --sink --layer q --fanout 100,500 --window 8s
#
# Arguments go to `fanout`; the server binary is target/release/sfu (or $SFU_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
SFU_BIN=$(realpath "${SFU_BIN:-target/release/sfu}")
[ -x target/release/fanout ] || { echo "build first: cargo build --release -p sfu-benches --bin fanout" >&2; exit 2; }

cleanup() {
  ip netns del sfub 2>/dev/null || true
  ip link del vsfu0 2>/dev/null || true
  umount /run/netns/sfuhost 2>/dev/null || true
  rm -f /run/netns/sfuhost "$WRAP"
}
WRAP=$(mktemp /tmp/sfu-hostns.XXXXXX)
trap cleanup EXIT
cleanup

mkdir -p /run/netns
touch /run/netns/sfuhost
mount --bind /proc/self/ns/net /run/netns/sfuhost
ip netns add sfub
ip link add vsfu0 type veth peer name vsfu1
ip link set vsfu1 netns sfub
ip addr add 10.99.0.1/24 dev vsfu0
ip link set vsfu0 up
ip netns exec sfub ip addr add 10.99.0.2/24 dev vsfu1
ip netns exec sfub ip link set vsfu1 up
ip netns exec sfub ip link set lo up
# veth uses NAPI when GRO is on; plain UDP is eligible only with UDP GRO forwarding on
ethtool -K vsfu0 gro on rx-udp-gro-forwarding on >/dev/null
ip netns exec sfub ethtool -K vsfu1 gro on rx-udp-gro-forwarding on >/dev/null
echo 1 > /sys/class/net/vsfu0/threaded
ip netns exec sfub sh -c 'echo 1 > /sys/class/net/vsfu1/threaded'
# drain the 256-entry veth rings at once, or bursts overflow them
for p in $(pgrep 'napi/vsfu'); do chrt -f -p 50 "$p"; done

# fanout runs in sfub and starts the server through this wrapper, back in the host namespace
printf '#!/bin/sh\nexec nsenter --net=/run/netns/sfuhost %q "$@"\n' "$SFU_BIN" > "$WRAP"
chmod +x "$WRAP"
ip netns exec sfub target/release/fanout --sfu-bin "$WRAP" --sfu-args "--http 10.99.0.1:7880 --udp 10.99.0.1:7882" "$@"
echo "# NAPI threads' CPU time: $(ps -o comm=,time= -p "$(pgrep -d, 'napi/vsfu')" | tr '\n' ' ')"
