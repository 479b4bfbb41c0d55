//! Tests of the send batch: real non-blocking UDP sockets on loopback.

use super::*;

use tokio::net::UdpSocket as Receiver;

/// A sender as the server's: non-blocking.
fn sender() -> UdpSocket {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.set_nonblocking(true).unwrap();
    tx
}

#[tokio::test]
async fn flush_delivers_every_datagram_in_order_to_each_destination() {
    let tx = sender();
    let rx_a = Receiver::bind("127.0.0.1:0").await.unwrap();
    let rx_b = Receiver::bind("127.0.0.1:0").await.unwrap();
    let (a, b) = (rx_a.local_addr().unwrap(), rx_b.local_addr().unwrap());
    let mut batch = SendBatch::default();
    batch.set_gso(false);
    // 150 datagrams: more than two chunks, alternating destinations, distinct sizes
    for i in 0..150u32 {
        let mut d = BytesMut::new();
        d.extend_from_slice(&i.to_be_bytes());
        d.resize(4 + (i as usize % 7) * 100, 0xee);
        batch.push(d, if i % 2 == 0 { a } else { b });
    }
    let f = batch.flush(&tx);
    assert_eq!((f.sent, f.would_block, f.errors), (150, 0, 0));
    assert_eq!(f.syscalls, 3, "150 datagrams in chunks of 64");
    let mut single = SendBatch::new(1);
    single.push(BytesMut::from(&b"x"[..]), a);
    single.push(BytesMut::from(&b"y"[..]), b);
    assert_eq!(single.flush(&tx).syscalls, 2, "chunk 1: one call per datagram");
    assert!(batch.is_empty());
    let mut buf = [0u8; 2048];
    for (sock, parity) in [(&rx_a, 0u32), (&rx_b, 1)] {
        for k in 0..75u32 {
            let i = 2 * k + parity;
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv(&mut buf)).await.unwrap().unwrap();
            assert_eq!(u32::from_be_bytes(buf[..4].try_into().unwrap()), i);
            assert_eq!(n, 4 + (i as usize % 7) * 100);
        }
    }
}

fn queue_of(items: &[(char, usize)]) -> Vec<(BytesMut, SocketAddr)> {
    items
        .iter()
        .map(|&(dest, len)| {
            (BytesMut::from(&vec![0u8; len][..]), SocketAddr::from(([127, 0, 0, 1], 1000 + dest as u16)))
        })
        .collect()
}

#[test]
fn gso_plan_groups_runs_of_equal_size_per_destination() {
    // columns: name, queue (destination, length), expected messages as (destination, count, seg)
    let rows: &[(&str, &[(char, usize)], &[(char, u16, u16)])] = &[
        ("one datagram", &[('a', 100)], &[('a', 1, 100)]),
        ("a frame to one subscriber", &[('a', 1200), ('a', 1200), ('a', 1200), ('a', 700)], &[('a', 4, 1200)]),
        (
            "interleaved subscribers keep their own order",
            &[('a', 1200), ('b', 1200), ('a', 1200), ('b', 900)],
            &[('a', 2, 1200), ('b', 2, 1200)],
        ),
        (
            "a longer datagram starts a new message",
            &[('a', 100), ('a', 1200), ('a', 1200)],
            &[('a', 1, 100), ('a', 2, 1200)],
        ),
        ("a shorter one ends it", &[('a', 1200), ('a', 800), ('a', 1200)], &[('a', 2, 1200), ('a', 1, 1200)]),
        ("audio and video", &[('a', 1100), ('a', 120), ('a', 1100), ('a', 1100)], &[('a', 2, 1100), ('a', 2, 1100)]),
        ("the 64 KB limit", &[('a', 30_000), ('a', 30_000), ('a', 30_000)], &[('a', 2, 30_000), ('a', 1, 30_000)]),
    ];
    let (mut keys, mut order, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    for (name, items, want) in rows {
        let queue = queue_of(items);
        plan(&queue, true, true, &mut keys, &mut order, &mut groups);
        let got: Vec<(char, u16, u16)> = groups
            .iter()
            .map(|g| {
                let port = queue[order[g.start as usize] as usize].1.port();
                (char::from_u32(u32::from(port - 1000)).unwrap(), g.count, g.seg)
            })
            .collect();
        assert_eq!(&got[..], *want, "{name}");
        // every datagram exactly once, in queue order per destination
        let mut seen: Vec<u32> =
            groups.iter().flat_map(|g| order[g.start as usize..][..usize::from(g.count)].to_vec()).collect();
        for w in seen.windows(2) {
            if queue[w[0] as usize].1 == queue[w[1] as usize].1 {
                assert!(w[0] < w[1], "{name}: order kept");
            }
        }
        seen.sort();
        assert_eq!(seen, (0..queue.len() as u32).collect::<Vec<_>>(), "{name}");
    }
    // a run longer than the segment limit
    let queue = queue_of(&[('a', 100); 130]);
    plan(&queue, true, true, &mut keys, &mut order, &mut groups);
    assert_eq!(groups.iter().map(|g| g.count).collect::<Vec<_>>(), [64, 64, 2]);
    // an IPv4 destination and the IPv6 one with the same address bits and port are two
    let v4 = SocketAddr::from(([127, 0, 0, 1], 1000));
    let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0x7f00, 1], 1000));
    let mixed: Vec<(BytesMut, SocketAddr)> =
        [v4, v6, v4, v6].iter().map(|&to| (BytesMut::from(&[0u8; 100][..]), to)).collect();
    plan(&mixed, true, true, &mut keys, &mut order, &mut groups);
    let dests: Vec<(SocketAddr, u16)> =
        groups.iter().map(|g| (mixed[order[g.start as usize] as usize].1, g.count)).collect();
    assert_eq!(dests, [(v4, 2), (v6, 2)]);
    // without GSO: one message per datagram, queue order
    plan(&queue_of(&[('a', 10), ('b', 10), ('a', 10)]), false, false, &mut keys, &mut order, &mut groups);
    assert_eq!(groups.iter().map(|g| (g.start, g.count)).collect::<Vec<_>>(), [(0, 1), (1, 1), (2, 1)]);
}

#[tokio::test]
async fn gso_messages_arrive_as_separate_datagrams() {
    let tx = sender();
    let rx_a = Receiver::bind("127.0.0.1:0").await.unwrap();
    let rx_b = Receiver::bind("127.0.0.1:0").await.unwrap();
    let (a, b) = (rx_a.local_addr().unwrap(), rx_b.local_addr().unwrap());
    let mut batch = SendBatch::default();
    assert!(batch.gso());
    // two "frames" of 5 packets (4 x 1000 B + 1 x 333 B) interleaved between two receivers
    let sizes = [1000, 1000, 1000, 1000, 333];
    for (k, len) in sizes.iter().enumerate() {
        for (to, tag) in [(a, 0xa0u8), (b, 0xb0)] {
            let mut d = BytesMut::from(&vec![tag + k as u8; *len][..]);
            d[0] = k as u8;
            batch.push(d, to);
        }
    }
    let f = batch.flush(&tx);
    assert!(batch.gso(), "the kernel took UDP_SEGMENT");
    assert_eq!((f.sent, f.errors, f.syscalls, f.gso_messages), (10, 0, 1, 2), "{f:?}");
    let mut buf = [0u8; 2048];
    for (sock, tag) in [(&rx_a, 0xa0u8), (&rx_b, 0xb0)] {
        for (k, len) in sizes.iter().enumerate() {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv(&mut buf)).await.unwrap().unwrap();
            assert_eq!((n, buf[0]), (*len, k as u8), "datagram {k} whole and in order");
            assert!(buf[1..n].iter().all(|&x| x == tag + k as u8));
        }
    }
}

#[tokio::test]
async fn an_unreachable_destination_does_not_stop_the_rest() {
    let tx = sender();
    let rx = Receiver::bind("127.0.0.1:0").await.unwrap();
    let mut batch = SendBatch::default();
    let v6 = SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 9)); // IPv4 socket: EAFNOSUPPORT/EINVAL
    batch.push(BytesMut::from(&b"lost"[..]), v6);
    batch.push(BytesMut::from(&b"kept"[..]), rx.local_addr().unwrap());
    let f = batch.flush(&tx);
    assert_eq!((f.sent, f.errors), (1, 1));
    let mut buf = [0u8; 16];
    let n = rx.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"kept");
}
