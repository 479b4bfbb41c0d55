//! The ICE-TCP listener on loopback: who gets a connection, and what it carries.

use super::*;
use crate::udp::PeerKey;
use crate::udp::stun::testing::request as stun;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A listener serving one registered peer connection (ufrag `srv`, password `secret`) whose
/// datagrams come out of `room`.
struct Fixture {
    addr: SocketAddr,
    demux: Arc<Demux>,
    paths: Arc<TcpPaths>,
    metrics: Arc<MediaMetrics>,
    room: mpsc::Receiver<Datagram>,
    _stop: watch::Sender<bool>,
}

const PEER: PeerKey = PeerKey(7);

async fn fixture() -> Fixture {
    let demux = Arc::new(Demux::default());
    let (tx, room) = mpsc::channel(64);
    demux.register(Route { room: tx, peer: PEER, ufrag: "srv".into(), pwd: "secret".into() });
    let metrics = Arc::new(MediaMetrics::new(&prometheus::Registry::new()));
    let paths = Arc::new(TcpPaths::default());
    let listener = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve(listener, demux.clone(), paths.clone(), metrics.clone(), stop_rx));
    Fixture { addr, demux, paths, metrics, room, _stop: stop }
}

fn framed(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        framing::put_frame(&mut out, f);
    }
    out.to_vec()
}

/// True if the server closes `s` within 2 s (what it sent before is skipped).
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let wait = async {
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), wait).await.is_ok()
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}");
}

#[tokio::test]
async fn a_connection_must_open_with_a_check_signed_by_its_peer_connection() {
    let mut f = fixture().await;
    let check = |u: &str, p: Option<&str>| stun(Some(u), p);
    // columns: case, bytes the client sends first, why the server closes the connection
    let rows: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("not STUN", framed(&[&[0x80; 100]]), DropReason::UnknownSource),
        ("unknown ufrag", framed(&[&check("nobody:c", Some("secret"))]), DropReason::UnknownUfrag),
        ("unsigned", framed(&[&check("srv:c", None)]), DropReason::StunUnauthenticated),
        ("another password", framed(&[&check("srv:c", Some("guess"))]), DropReason::StunUnauthenticated),
        ("a frame larger than any datagram", vec![0xff, 0xff, 1, 2, 3], DropReason::TcpFrameTooLarge),
    ];
    for (case, bytes, why) in rows {
        let before = f.metrics.dropped(why);
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        assert!(closed_by_server(&mut s).await, "{case}: closed");
        assert_eq!(f.metrics.dropped(why), before + 1, "{case}: counted as {why}");
        assert!(f.room.try_recv().is_err(), "{case}: nothing reached the room");
        assert!(f.paths.is_empty(), "{case}: no writer");
    }
    eventually("every refused connection uncounted", || f.metrics.tcp_connections.get() == 0).await;
}

#[tokio::test]
async fn a_signed_connection_carries_datagrams_both_ways_until_its_peer_connection_is_gone() {
    let mut f = fixture().await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let me = Path::Tcp(s.local_addr().unwrap());
    let check = stun(Some("srv:c"), Some("secret"));
    let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xaa];
    let other = stun(Some("other:c"), Some("secret"));
    // split across writes anywhere: the frames are what counts
    let bytes = framed(&[&check, &rtp, &other, &[], &rtp]);
    for part in bytes.chunks(7) {
        s.write_all(part).await.unwrap();
    }
    let taken = f.metrics.dropped(DropReason::AddressTaken);
    for want in [&check[..], &rtp, &rtp] {
        let dg = tokio::time::timeout(Duration::from_secs(2), f.room.recv()).await.unwrap().unwrap();
        assert_eq!((dg.peer, dg.from, &dg.data[..]), (PEER, me, want));
    }
    assert_eq!(f.metrics.dropped(DropReason::AddressTaken), taken + 1, "a check naming another connection");
    assert_eq!(f.metrics.dropped(DropReason::Empty), 1);
    assert_eq!(f.metrics.tcp_in_packets.get(), 5);

    // the room's datagrams to this address come back framed
    eventually("the writer registered", || f.paths.len() == 1).await;
    for d in [&b"dtls"[..], &[0x80; 1200]] {
        f.paths.send(me.addr(), BytesMut::from(d), &f.metrics);
    }
    let mut deframer = Deframer::default();
    let mut got = Vec::new();
    while got.len() < 2 {
        match deframer.next_frame().unwrap() {
            Some(frame) => got.push(frame.len()),
            None => assert!(s.read_buf(deframer.read_buf()).await.unwrap() > 0),
        }
    }
    assert_eq!(got, vec![4, 1200]);
    eventually("both written", || f.metrics.tcp_out_packets.get() == 2).await;
    assert_eq!(f.metrics.tcp_connections.get(), 1);

    // its peer connection leaves: the next check closes the connection
    f.demux.unregister("srv");
    s.write_all(&framed(&[&check])).await.unwrap();
    assert!(closed_by_server(&mut s).await, "closed once its peer connection is gone");
    eventually("the writer gone", || f.paths.is_empty()).await;
    eventually("uncounted", || f.metrics.tcp_connections.get() == 0).await;
    let closed = f.metrics.dropped(DropReason::TcpClosed);
    f.paths.send(me.addr(), BytesMut::from(&b"late"[..]), &f.metrics);
    assert_eq!(f.metrics.dropped(DropReason::TcpClosed), closed + 1);
}

#[tokio::test]
async fn a_client_may_reconnect_more_often_than_a_connection_has_addresses() {
    let mut f = fixture().await;
    let check = stun(Some("srv:c"), Some("secret"));
    for i in 0..(crate::udp::demux::MAX_ADDRS_PER_PEER + 2) {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(&framed(&[&check])).await.unwrap();
        let dg = tokio::time::timeout(Duration::from_secs(2), f.room.recv()).await.unwrap().unwrap();
        assert_eq!(dg.peer, PEER, "connection {i}");
        drop(s);
        eventually("the closed connection's writer gone", || f.paths.is_empty()).await;
    }
}
