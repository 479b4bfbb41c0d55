//! HTTPS and WSS on the HTTP port, with the real binary (`--tls-cert`, `--tls-key`): a client
//! that trusts the certificate gets `/healthz` over HTTPS and joins a room over WSS; a
//! plain-HTTP client gets no answer and the node stays up; after the files are replaced and
//! the process gets SIGHUP, new connections see the new certificate while the open WebSocket
//! goes on; a broken file on a reload keeps the certificate in use.

mod process;

use futures::{SinkExt, StreamExt};
use process::{LogsOnPanic, Node};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM into `dir`.
fn issue(dir: &Path) -> CertificateDer<'static> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    ck.cert.der().clone()
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to `addr` trusting only `root`; the certificate the server showed.
async fn connect(addr: SocketAddr, root: &CertificateDer<'static>) -> std::io::Result<(Tls, CertificateDer<'static>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
    let shown = stream.get_ref().1.peer_certificates().expect("a certificate")[0].clone().into_owned();
    Ok((stream, shown))
}

/// `GET path` over a TLS connection trusting `root`: the whole answer.
async fn get(addr: SocketAddr, root: &CertificateDer<'static>, path: &str) -> String {
    let (mut s, _) = connect(addr, root).await.expect("TLS connection");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_a_certificate_reloaded_on_sighup() {
    let dir = std::env::temp_dir().join(format!("sfu-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = issue(&dir);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let node = Node::start_with("tls", &args).await;
    let _logs = LogsOnPanic(vec![(node.name, node.log.clone())]);

    let health = get(node.http, &first, "/healthz").await;
    assert!(health.starts_with("HTTP/1.0 200 OK") && health.ends_with("ok\n"), "{health}");

    // a room joined over WSS
    let (tls, shown) = connect(node.http, &first).await.unwrap();
    assert_eq!(shown, first);
    let url = format!("wss://localhost:{}/ws", node.http.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.expect("WebSocket over TLS");
    let join = serde_json::json!({"type": "join", "room": "secure", "name": "a"}).to_string();
    ws.send(Message::Text(join.into())).await.unwrap();
    let joined = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert!(joined.to_text().unwrap().contains("\"joined\""), "{joined:?}");

    // plain HTTP to the TLS port: no HTTP answer, and the node stays up
    let mut plain = TcpStream::connect(node.http).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "plain HTTP must not be served");

    // a broken file and SIGHUP: the certificate in use stays
    let pid = node.child.id().unwrap() as libc::pid_t;
    std::fs::write(&cert, "not a certificate").unwrap();
    // SAFETY: signals our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(connect(node.http, &first).await.expect("the old certificate still served").1, first);

    // a new certificate and SIGHUP: new connections get it
    let second = issue(&dir);
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let start = Instant::now();
    loop {
        if let Ok((_, shown)) = connect(node.http, &second).await {
            assert_eq!(shown, second);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the new certificate is served after SIGHUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(connect(node.http, &first).await.is_err(), "the old certificate is gone");

    // the WebSocket opened before the reload goes on
    ws.send(Message::Text(r#"{"type":"nonsense"}"#.into())).await.unwrap();
    let replied = tokio::time::timeout(Duration::from_secs(10), async {
        // (the `session` message that follows `joined` may come first)
        while let Some(Ok(m)) = ws.next().await {
            if m.to_text().is_ok_and(|t| t.contains("unknown_type")) {
                return true;
            }
        }
        false
    });
    assert!(replied.await.unwrap_or(false), "the open WebSocket answers after the reload");

    let metrics = get(node.http, &second, "/metrics").await;
    assert!(metrics.contains("sfu_tls_reloads_total{result=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("sfu_tls_reloads_total{result=\"failed\"} 1"), "{metrics}");
    assert!(!metrics.contains("sfu_tls_handshake_failures_total 0"), "the plain and distrusting clients count");
    let _ = std::fs::remove_dir_all(&dir);
}
