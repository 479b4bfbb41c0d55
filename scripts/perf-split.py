#!/usr/bin/env python3
"""Splits a `perf record -g` profile of the sfu process into where its CPU went.

    scripts/perf-split.py perf.data        (e.g. from `fanout --perf perf.data --perf-args "-F 999 -g"`)

On loopback the delivery of every datagram into the receiving socket (IP/UDP receive, socket
queue, waking the reader) runs in the softirq of the *sender's* system call, so it is counted
as server CPU although on a real network it is work of the receiving host. This prints the
share of samples in that receive path (any stack through `net_rx_action`), in the send system
calls without it, in the server's own code, and the rest, so the server's cost per forwarded
packet can be quoted with and without loopback delivery.

    scripts/perf-split.py perf.data SYMBOL...

also prints, for each SYMBOL (a substring of a function's name), the share of samples whose
stack holds it (inclusive) and their count, e.g. `Chain::handle_read` for the interceptor chain.
"""
import collections
import subprocess
import sys


def classify(frames):
    names = " ".join(frames)
    if "net_rx_action" in names:
        return "loopback delivery (rx softirq)"
    if "__sys_sendmmsg" in names or "__sys_sendmsg" in names or "__sys_sendto" in names:
        return "send system calls"
    if frames and not frames[0].startswith("[k]"):
        return "user space (server code, libraries)"
    if "epoll_wait" in names or "futex" in names or "schedule" in names:
        return "waiting, waking (epoll, futex, scheduler)"
    if "recvfrom" in names or "recvmsg" in names or "recvmmsg" in names:
        return "receive system calls"
    return "other kernel"


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    wanted = sys.argv[2:]
    inclusive = collections.Counter()
    out = subprocess.run(
        ["perf", "script", "-i", sys.argv[1], "-F", "ip,sym,dso"],
        check=True, capture_output=True, text=True,
    ).stdout
    counts = collections.Counter()
    total = 0
    for block in out.split("\n\n"):
        frames = []
        for line in block.strip().splitlines():
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            sym = parts[1]
            kernel = "[kernel.kallsyms]" in sym
            frames.append(("[k]" if kernel else "") + sym.split(" (")[0].split("+0x")[0])
        if not frames:
            continue
        total += 1
        counts[classify(frames)] += 1
        for symbol in wanted:
            if any(symbol in frame for frame in frames):
                inclusive[symbol] += 1
    if total == 0:
        print("no samples", file=sys.stderr)
        sys.exit(1)
    print(f"{total} samples")
    for what, n in counts.most_common():
        print(f"{100.0 * n / total:6.1f}%  {what}")
    for symbol in wanted:
        n = inclusive[symbol]
        print(f"{100.0 * n / total:6.1f}%  {n:6d} samples with {symbol} on the stack")


if __name__ == "__main__":
    main()
