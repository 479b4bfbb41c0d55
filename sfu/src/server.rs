//! Wiring of one node: sockets, media plane, signaling, HTTP server. Used by the binary and by
//! integration tests (which bind `127.0.0.1:0`).

use crate::assets::ASSETS;
use crate::config::Config;
use crate::metrics::MediaMetrics;
use crate::room::{MediaAddr, MediaPlane};
use crate::udp::{Demux, reader};
use signaling::{AppState, Auth, Metrics, Node, Rooms};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::net::{TcpListener, UdpSocket};

/// A started node.
pub struct Server {
    /// Bound HTTP address.
    pub http: SocketAddr,
    /// Bound media address.
    pub udp: SocketAddr,
    /// Node state (drain).
    pub node: Arc<Node>,
    /// Rooms.
    pub rooms: Arc<Rooms>,
    /// Media metrics.
    pub media_metrics: Arc<MediaMetrics>,
    /// The HTTP server task.
    pub http_task: tokio::task::JoinHandle<()>,
}

/// Binds the sockets and starts every task of a node.
pub async fn start(config: &Config) -> anyhow::Result<Server> {
    let socket = UdpSocket::bind(config.udp).await?;
    let udp = socket.local_addr()?;
    let socket = Arc::new(socket);
    let listener = TcpListener::bind(config.http).await?;
    let http = listener.local_addr()?;

    let metrics = Arc::new(Metrics::new());
    let media_metrics = Arc::new(MediaMetrics::new(&metrics.registry));
    let demux = Arc::new(Demux::default());
    let addr = MediaAddr { local: udp, announce: config.announce_ips(udp) };
    tracing::info!(announce = ?addr.announce, "media addresses");
    let plane = MediaPlane {
        socket: socket.clone(),
        demux: demux.clone(),
        metrics: media_metrics.clone(),
        addr,
        next_key: Arc::new(AtomicU64::new(1)),
    };
    tokio::spawn(reader::run(socket, demux, media_metrics.clone()));

    let node = Arc::new(Node::new(env!("CARGO_PKG_VERSION")));
    let rooms = Arc::new(Rooms::new(Arc::new(plane), node.clone(), config.max_participants));
    let auth = Arc::new(if config.dev { Auth::Dev } else { Auth::Locked });
    let state = AppState { rooms: rooms.clone(), node: node.clone(), auth, metrics, assets: ASSETS };
    let app = signaling::app(state);
    let http_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server failed");
        }
    });
    Ok(Server { http, udp, node, rooms, media_metrics, http_task })
}
