//! The server's ICE agent (lite) answers a connectivity check that arrives before the client's
//! answer (the usual race: the answer goes over the WebSocket, the check straight to the media
//! port), and once the description is applied a nomination selects the pair at once, with no
//! check of the server's own.

use super::*;
use rtc::ice::attributes::control::AttrControlling;
use rtc::ice::attributes::priority::PriorityAttr;
use rtc::ice::attributes::use_candidate::UseCandidateAttr;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCIceConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, CLASS_REQUEST, Message, TransactionId};
use rtc::stun::textattrs::Username;

fn binding_request(username: &str, pwd: &str, nominate: bool) -> (Vec<u8>, TransactionId) {
    let provider = rtc::crypto::default_provider().unwrap();
    let mut m = Message::new();
    let mut setters: Vec<Box<dyn rtc::stun::message::Setter + '_>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(Username::new(ATTR_USERNAME, username.to_owned())),
    ];
    if nominate {
        setters.push(Box::<UseCandidateAttr>::default());
    }
    setters.push(Box::new(AttrControlling(7)));
    setters.push(Box::new(PriorityAttr(1_000)));
    setters.push(Box::new(MessageIntegrity::new_short_term_integrity_with_provider(pwd.to_owned(), provider.crypto())));
    setters.push(Box::new(FINGERPRINT));
    m.build(&setters).unwrap();
    (m.raw.clone(), m.transaction_id)
}

#[test]
fn a_check_before_the_answer_is_answered() {
    let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let addr = MediaAddr { local, announce: vec![local.ip()], tcp: None };
    // columns: USERNAME (U = the server's ufrag), MESSAGE-INTEGRITY password (P = the
    // server's), USE-CANDIDATE, answered. A check is answered at once; a nomination waits for
    // the answer (the connection must not come up before the client's description is applied).
    let rows = [
        ("U:client", "P", false, true),
        ("U:client", "P", true, false),
        ("U:", "P", false, false),
        ("other:client", "P", false, false),
        ("U:client", "wrong", false, false),
    ];
    for (username, pwd, nominate, answered) in rows {
        let now = Instant::now();
        let mut peer = new_peer(PeerKey(1), "viewer", Role::Subscriber, &addr, now).unwrap();
        // an m-line, so that the offer carries the ICE credentials
        peer.pc.create_data_channel("probe", None).unwrap();
        let offer = peer.pc.create_offer(None).unwrap();
        peer.pc.set_local_description(now, offer).unwrap();
        let sdp = peer.pc.local_description().unwrap().sdp;
        let server_pwd = sdp.lines().find_map(|l| l.strip_prefix("a=ice-pwd:")).unwrap().trim().to_owned();
        while peer.pc.poll_write().is_some() {}
        let (request, tid) =
            binding_request(&username.replace('U', &peer.ufrag), &pwd.replace('P', &server_pwd), nominate);
        let (got, _) = read_check(&mut peer, local, client, &request, tid, now);
        assert_eq!(got, answered, "{username} / {pwd} / nominate {nominate}");
    }
}

/// What the server sent back to `client` after reading `request`: whether it answered the
/// transaction, and how many Binding requests (checks of its own) it sent.
fn read_check(
    peer: &mut Peer,
    local: SocketAddr,
    client: SocketAddr,
    request: &[u8],
    tid: TransactionId,
    now: Instant,
) -> (bool, usize) {
    let msg = TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: client,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: bytes::BytesMut::from(request),
    };
    let _ = peer.pc.handle_read(msg);
    let (mut answered, mut checks) = (false, 0);
    while let Some(out) = peer.pc.poll_write() {
        let mut m = Message::new();
        if out.transport.peer_addr == client && m.unmarshal_binary(&out.message).is_ok() {
            answered |= m.typ == BINDING_SUCCESS && m.transaction_id == tid;
            checks += usize::from(m.typ.class == CLASS_REQUEST);
        }
    }
    (answered, checks)
}

#[test]
fn a_nomination_after_the_description_selects_the_pair_at_once() {
    let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let a: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:50001".parse().unwrap();
    let addr = MediaAddr { local, announce: vec![local.ip()], tcp: None };
    // A publisher connection: the client offers, the server answers, so the server knows the
    // client's credentials. Requests in order: (from, ms after the start, USE-CANDIDATE); then
    // for the last one: answered, ICE connected, the selected path. A lite agent sends no
    // checks of its own (RFC 8445 7.3.1.4), and the latest nomination wins (the client moved).
    type Row = (Vec<(SocketAddr, u64, bool)>, bool, bool, Option<SocketAddr>);
    let rows: Vec<Row> = vec![
        (vec![(a, 0, false)], true, false, None),
        (vec![(a, 0, true)], true, true, Some(a)),
        (vec![(a, 0, false), (a, 10, true)], true, true, Some(a)),
        (vec![(a, 0, true), (a, 10, true)], true, true, Some(a)),
        // a check from another path does not move the connection, its nomination does
        (vec![(a, 0, true), (b, 500, false)], true, true, Some(a)),
        (vec![(a, 0, true), (b, 500, true)], true, true, Some(b)),
        (vec![(a, 0, true), (b, 500, true), (a, 3_000, true)], true, true, Some(a)),
    ];
    for (requests, answered, connected, selected) in rows {
        let start = Instant::now();
        let mut peer = new_peer(PeerKey(2), "publisher", Role::Publisher, &addr, start).unwrap();
        let mut browser = RTCPeerConnectionBuilder::new().build(start).unwrap();
        browser.create_data_channel("probe", None).unwrap();
        let offer = browser.create_offer(None).unwrap();
        browser.set_local_description(start, offer).unwrap();
        let offer = browser.local_description().unwrap().sdp;
        let client_ufrag = offer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap().trim().to_owned();
        peer.pc.set_remote_description(start, RTCSessionDescription::offer(offer).unwrap()).unwrap();
        let answer = peer.pc.create_answer(None).unwrap();
        peer.pc.set_local_description(start, answer).unwrap();
        let sdp = peer.pc.local_description().unwrap().sdp;
        let server_pwd = sdp.lines().find_map(|l| l.strip_prefix("a=ice-pwd:")).unwrap().trim().to_owned();
        while peer.pc.poll_write().is_some() {}
        while peer.pc.poll_event().is_some() {}
        let username = format!("{}:{client_ufrag}", peer.ufrag);
        let mut last = false;
        for &(from, ms, nominate) in &requests {
            let (request, tid) = binding_request(&username, &server_pwd, nominate);
            let at = start + std::time::Duration::from_millis(ms);
            let (got, checks) = read_check(&mut peer, local, from, &request, tid, at);
            assert_eq!(checks, 0, "{requests:?}: the lite agent sent a check of its own");
            last = got;
        }
        let mut ice_connected = false;
        while let Some(e) = peer.pc.poll_event() {
            ice_connected |=
                matches!(e, RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(RTCIceConnectionState::Connected));
        }
        assert_eq!(
            (last, ice_connected, peer.pc.selected_remote_addr()),
            (answered, connected, selected),
            "{requests:?}"
        );
    }
}
