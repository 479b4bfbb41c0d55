#!/usr/bin/env bash
# This server and Janus (Debian's `janus`, VideoRoom plugin) under the same load tester in one
# run, measured alternately (ROUNDS rounds of: this server's points, then Janus's): fan-out to
# N sink subscribers at one layer, and conferences of ROOMS x PARTICIPANTS where everyone
# publishes and receives everyone else (full receivers). Prints markdown tables and a JSON line (docs/PERFORMANCE.md,
# "Side by side").
#
#   scripts/side-by-side.sh                                   # N = 100, 500; 10x4; 2 rounds
#   FANOUT=100 CONFERENCE=5x4 ROUNDS=1 scripts/side-by-side.sh
#
# Janus never gathers ICE candidates on loopback, so the run happens in a network namespace of
# its own (a veth pair, 10.99.0.1/24, nothing leaves it): needs root, `ip`, and the `janus`
# package (installed with apt-get if missing). Janus runs with a generated configuration
# (benches/src/janus_process.rs): VideoRoom and the HTTP transport only, log level warnings, as
# this server runs with `--log warn`.
set -euo pipefail
cd "$(dirname "$0")/.."
FANOUT=${FANOUT:-100,500} CONFERENCE=${CONFERENCE:-10x4} ROUNDS=${ROUNDS:-2} LAYER=${LAYER:-q}
if ! command -v janus >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq janus >/dev/null
fi
cargo build --release --locked --bin sfu -p sfu-benches --bin fanout
ns="sfu-side-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip -n "$ns" link set lo up
ip -n "$ns" link add vb0 type veth peer name vb1
ip -n "$ns" addr add 10.99.0.1/24 dev vb0
ip -n "$ns" link set vb0 up
ip -n "$ns" link set vb1 up
run() { ip netns exec "$ns" target/release/fanout --layer "$LAYER" --peer janus --janus-ip 10.99.0.1 --rounds "$ROUNDS" "$@"; }
# fan-out with sink receivers (they drop RTP unread, leaving the second core to the server),
# then conferences with full receivers (decrypting, checking layers, measuring latency)
run --fanout "$FANOUT" --sink "$@"
run --conference "$CONFERENCE" "$@"
