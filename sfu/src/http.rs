//! The HTTP/WebSocket listener: hyper with a deadline for a request's headers (a client that
//! trickles them holds a connection forever otherwise) and connection limits, in total and per
//! client address, so no one host can take every socket. A WebSocket keeps its slot until it
//! closes (the slot travels with the connection's stream into the upgrade). With TLS
//! (`crate::tls`) each connection's handshake runs in its own task, bounded by the header
//! deadline, before hyper sees the stream.

use axum::Router;
use dashmap::DashMap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Open connections (WebSockets included) at most.
    pub connections: usize,
    /// Open connections from one IP address at most.
    pub per_ip: usize,
    /// For a request's headers to arrive.
    pub header_read: Duration,
}

/// What the listener counts.
#[derive(Clone)]
pub struct HttpMetrics {
    open: IntGauge,
    refused: IntCounterVec,
    tls_handshake_failures: prometheus::IntCounter,
}

impl HttpMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn new(registry: &Registry) -> Self {
        let open = IntGauge::new("sfu_http_connections", "Open HTTP and WebSocket connections").expect("valid metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "sfu_http_refused_connections_total",
                "Connections closed at once because a limit was reached: total (--http-max-connections) or per_ip (--http-max-per-ip)",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let tls_handshake_failures = prometheus::IntCounter::new(
            "sfu_tls_handshake_failures_total",
            "TLS connections closed because the handshake failed or did not finish within the header deadline",
        )
        .expect("valid metric");
        registry.register(Box::new(open.clone())).expect("metric registered once");
        registry.register(Box::new(refused.clone())).expect("metric registered once");
        registry.register(Box::new(tls_handshake_failures.clone())).expect("metric registered once");
        HttpMetrics { open, refused, tls_handshake_failures }
    }
}

/// Open connections, in total and by address.
#[derive(Default)]
struct Slots {
    total: AtomicUsize,
    by_ip: DashMap<IpAddr, usize>,
}

/// One admitted connection's place in [`Slots`], given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
    open: IntGauge,
}

impl Slots {
    /// A slot for a connection from `ip`, or which limit refused it. An `exempt` address (a
    /// fleet node relaying many clients' sessions) counts toward the total only.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        exempt: bool,
        limits: &HttpLimits,
        open: &IntGauge,
    ) -> Result<Slot, &'static str> {
        if self.total.fetch_add(1, Ordering::Relaxed) >= limits.connections {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("total");
        }
        let mut n = self.by_ip.entry(ip).or_insert(0);
        if *n >= limits.per_ip && !exempt {
            drop(n);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("per_ip");
        }
        *n += 1;
        drop(n);
        open.inc();
        Ok(Slot { slots: self.clone(), ip, open: open.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.total.fetch_sub(1, Ordering::Relaxed);
        self.slots.by_ip.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
        self.open.dec();
    }
}

/// A connection's stream holding its slot: through hyper and into a WebSocket upgrade.
struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How [`serve`] treats connections.
pub struct ServeOptions {
    /// Connection limits and the header deadline.
    pub limits: HttpLimits,
    /// What it counts.
    pub metrics: HttpMetrics,
    /// Applied to every accepted socket.
    pub tune: fn(&TcpStream),
    /// HTTPS and WSS instead of plain HTTP.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The node's fleet: its nodes' addresses are spared the per-address limit (relayed
    /// sessions of many clients).
    pub fleet: Option<Arc<signaling::fleet::Fleet>>,
}

/// Serves `app` on `listener` until `stop` completes, then lets open requests finish (the
/// caller bounds how long).
pub async fn serve(listener: TcpListener, app: Router, options: ServeOptions, stop: impl Future<Output = ()>) {
    let ServeOptions { limits, metrics, tune, tls, fleet } = options;
    let slots = Arc::new(Slots::default());
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of descriptors and the like: do not spin on it
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let exempt = fleet.as_ref().is_some_and(|f| f.is_node_ip(peer.ip()));
        let slot = match slots.admit(peer.ip(), exempt, &limits, &metrics.open) {
            Ok(s) => s,
            Err(limit) => {
                metrics.refused.with_label_values(&[limit]).inc();
                tracing::debug!(%peer, limit, "connection refused: limit reached");
                continue; // dropping the stream closes it
            }
        };
        tune(&stream);
        let counted = Counted { stream, _slot: slot };
        let service = TowerToHyperService::new(app.clone());
        let Some(tls) = &tls else {
            let conn =
                graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(counted), service).into_owned());
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::trace!(error = %e, "http connection ended");
                }
            });
            continue;
        };
        let (acceptor, builder, watcher) = (tls.acceptor(), builder.clone(), graceful.watcher());
        let handshakes = metrics.tls_handshake_failures.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(limits.header_read, acceptor.accept(counted)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    handshakes.inc();
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    handshakes.inc();
                    tracing::debug!(%peer, "TLS handshake not done within the header deadline");
                    return;
                }
            };
            let conn =
                watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "https connection ended");
            }
        });
    }
    graceful.shutdown().await;
}
