#!/usr/bin/env bash
# The kernel's UDP send path alone on this machine: `udpcost` sends to an address behind a
# veth whose peer end is down, so every datagram goes through the whole send path (socket,
# route, IP output, neighbour, qdisc, device transmit) and is dropped by the device instead
# of being delivered. Needs root; creates veth `vcost0`/`vcost1` (10.99.7.1/24, peer in netns
# `sfucost`, down) and removes them on exit. Arguments go to `udpcost`.
#
#   sudo scripts/udpcost-veth.sh                    # 200-byte datagrams to 500 ports
#   sudo scripts/udpcost-veth.sh --size 1200 --segments 7
#   UDPCOST_WRAP="perf record -g -o /tmp/veth.data --" sudo -E scripts/udpcost-veth.sh --df   # profile it
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/release/udpcost ] || { echo "build first: cargo build --release -p sfu-benches --bin udpcost" >&2; exit 2; }
cleanup() {
  ip link del vcost0 2>/dev/null || true
  ip netns del sfucost 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add sfucost
ip link add vcost0 type veth peer name vcost1
ip link set vcost1 netns sfucost
ip addr add 10.99.7.1/24 dev vcost0
ip link set vcost0 up
# a static neighbour entry: no ARP, and the peer stays down so the device drops each datagram
ip neigh add 10.99.7.2 lladdr 02:00:00:00:07:02 dev vcost0 nud permanent
${UDPCOST_WRAP:-} target/release/udpcost --to 10.99.7.2 "$@"
echo "# vcost0 dropped: $(ip -s link show vcost0 | awk '/TX:/{getline; print $4}') datagrams"
