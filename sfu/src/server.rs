//! Wiring of one node: sockets, media plane, signaling, HTTP server, drain supervisor. Used by
//! the binary and by integration tests (which bind `127.0.0.1:0`).

use crate::assets::ASSETS;
use crate::config::Config;
use crate::metrics::MediaMetrics;
use crate::room::{MediaAddr, MediaPlane, MediaThreads, RoomContext};
use crate::udp::{Demux, reader};
use signaling::drain::{self, DrainOutcome};
use signaling::fleet::Fleet;
use signaling::{AppState, Auth, Metrics, Node, Rooms};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A started node.
pub struct Server {
    /// Bound HTTP address.
    pub http: SocketAddr,
    /// Bound media address (of the first media thread, with `--media-threads`).
    pub udp: SocketAddr,
    /// The IPs announced in ICE candidates.
    pub announce: Vec<std::net::IpAddr>,
    /// Every media port, one per media thread (one without them).
    pub media_ports: Vec<SocketAddr>,
    /// The ICE-TCP listener of the first media thread (`None` with `--tcp off`).
    pub tcp: Option<SocketAddr>,
    /// The embedded TURN server's listeners (none without `--turn`, `--turn-tls`).
    pub turn: crate::turn::Listeners,
    /// Node state (drain).
    pub node: Arc<Node>,
    /// Rooms.
    pub rooms: Arc<Rooms>,
    /// Media metrics.
    pub media_metrics: Arc<MediaMetrics>,
    /// Routing tables of the media ports, one per media thread.
    pub demuxes: Vec<Arc<Demux>>,
    /// The HTTP server task.
    pub http_task: tokio::task::JoinHandle<()>,
    /// The readers of the media ports (tasks, or media threads): they end on shutdown.
    pub readers: Vec<Reader>,
    /// This node's part in a fleet (`--redis`).
    pub fleet: Option<Arc<Fleet>>,
    /// Its heartbeat task: on shutdown it releases the node's rooms and record.
    fleet_task: Option<tokio::task::JoinHandle<()>>,
    /// Ends with the drain (SIGTERM or `POST /api/node/drain`): when the last participant left,
    /// or after the deadline's evacuation. The binary exits then.
    pub drained: tokio::task::JoinHandle<DrainOutcome>,
    shutdown: watch::Sender<bool>,
}

/// Binds the sockets and starts every task of a node. Fails without API keys unless in dev
/// mode: a node never serves media or the API unauthenticated.
pub async fn start(config: &Config) -> anyhow::Result<Server> {
    let mut config = config.clone();
    if config.external_ip.contains(&crate::config::ExternalIp::Auto) {
        let ip = crate::discover::public_ip(&config.stun_server, Duration::from_secs(3)).await?;
        tracing::info!(%ip, stun_server = %config.stun_server, "public address learned (--external-ip auto)");
        config.discovered_ip = Some(ip);
    }
    let config = &config;
    let auth = Arc::new(Auth::new(&config.keys, config.dev)?);
    let listener = TcpListener::bind(config.http_addr()).await?;
    let http = listener.local_addr()?;

    let metrics = Arc::new(Metrics::new());
    let http_metrics = crate::http::HttpMetrics::new(&metrics.registry);
    let media_metrics = Arc::new(MediaMetrics::new(&metrics.registry));
    let next_key = Arc::new(AtomicU64::new(1));
    let send_pool = Arc::new(crate::udp::SendPool::new(config.send_helpers())?);
    let mut planes = Vec::new();
    let mut readers = Vec::new();
    let (shutdown, shutdown_rx) = watch::channel(false);
    // without media threads the one plane runs on this runtime; with them, each thread's
    // runtime owns its socket (registered with that runtime's poller) and runs its reader
    for i in 0..config.media_threads.max(1) {
        let runtime = match config.media_threads {
            0 => None,
            _ => Some(tokio::runtime::Builder::new_current_thread().enable_all().build()?),
        };
        let (socket, tcp_listener) = {
            let _in_thread = runtime.as_ref().map(|rt| rt.enter());
            let socket = Arc::new(bind_media(config, config.media_thread_addr(i)?)?);
            let tcp = match config.tcp_addr(i, socket.local_addr()?)? {
                Some((addr, asked)) => Some(crate::tcp::bind(addr, asked)?),
                None => None,
            };
            (socket, tcp)
        };
        let udp = socket.local_addr()?;
        let tcp = tcp_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let demux = Arc::new(Demux::default());
        let addr = MediaAddr { local: udp, announce: config.announce_ips(udp), tcp };
        tracing::info!(thread = i, announce = ?addr.announce, ?tcp, send_helpers = config.send_helpers(), gso = config.gso, send_only_socket = socket.has_send_only_socket(), "media addresses");
        let ctx = RoomContext {
            demux: demux.clone(),
            metrics: media_metrics.clone(),
            addr,
            next_key: next_key.clone(),
            send_batch: usize::from(config.send_batch),
            gso: config.gso,
            quiet_viewers_above: config.quiet_viewers_above,
            bwe_allocate: config.bwe_allocate,
            inject_room_panic: config.inject_room_panic.clone(),
        };
        let tcp_paths = Arc::new(crate::tcp::TcpPaths::default());
        if let Some(listener) = tcp_listener {
            let serve = crate::tcp::serve(
                listener,
                demux.clone(),
                tcp_paths.clone(),
                media_metrics.clone(),
                shutdown_rx.clone(),
            );
            match &runtime {
                Some(rt) => drop(rt.spawn(serve)),
                None => drop(tokio::spawn(serve)),
            }
        }
        let plane = MediaPlane {
            ctx,
            tcp: tcp_paths,
            socket: socket.clone(),
            send_pool: send_pool.clone(),
            runtime: runtime.as_ref().map(|rt| rt.handle().clone()),
            rooms: media_metrics.media_thread_rooms.with_label_values(&[&i.to_string()]),
        };
        let read = reader::run(socket, demux, media_metrics.clone(), runtime.is_some(), shutdown_rx.clone());
        readers.push(match runtime {
            None => Reader::Task(tokio::spawn(read)),
            // the thread ends with its reader, and its runtime's rooms with it
            Some(rt) => Reader::Thread(
                std::thread::Builder::new().name(format!("sfu-media-{i}")).spawn(move || rt.block_on(read))?,
            ),
        });
        planes.push(plane);
    }
    let udp = planes[0].ctx.addr.local;
    let demuxes = planes.iter().map(|p| p.ctx.demux.clone()).collect();
    let media_ports: Vec<SocketAddr> = planes.iter().map(|p| p.ctx.addr.local).collect();
    let tcp = planes[0].ctx.addr.tcp;

    let node = Arc::new(Node::new(env!("CARGO_PKG_VERSION")).with_drain_deadline(config.drain_deadline));
    let rooms = Arc::new(
        Rooms::new(Arc::new(MediaThreads::new(planes)), node.clone(), config.max_participants)
            .with_drain_admit(config.drain_admit),
    );
    tracing::info!(?auth, drain_deadline = %humantime::format_duration(config.drain_deadline), drain_admit = config.drain_admit, "access control");
    let (fleet, fleet_task) = match config.fleet(http) {
        Some(fc) => {
            tracing::info!(node = %fc.node_id, url = %fc.url, heartbeat = ?fc.heartbeat, prefix = %fc.prefix, "joining the fleet");
            let fleet = Fleet::new(fc, node.clone(), rooms.clone(), &metrics.registry)?;
            let task = tokio::spawn(fleet.clone().run(shutdown_rx.clone()));
            (Some(fleet), Some(task))
        }
        None => (None, None),
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = crate::tls::Tls::load(cert, key, &metrics.registry)?;
            tokio::spawn(tls.clone().watch(shutdown_rx.clone()));
            tracing::info!(cert = %cert.display(), "HTTPS and WSS on the HTTP port");
            Some(tls)
        }
        _ => None,
    };
    let announce = config.announce_ips(udp);
    let (turn_listeners, turn_secret, turn_urls) = if config.turn.is_some() || config.turn_tls.is_some() {
        let secret = config.turn_secret.clone().filter(|s| !s.is_empty()).unwrap_or_else(crate::turn::random_secret);
        let tls_listen = match (config.turn_tls, &tls) {
            (Some(addr), Some(tls)) => Some((addr, tls.clone())),
            (Some(_), None) => anyhow::bail!("--turn-tls needs --tls-cert and --tls-key"),
            _ => None,
        };
        let embedded = crate::turn::Embedded {
            plain: config.turn,
            tls: tls_listen,
            secret: secret.clone(),
            media_ports: &media_ports,
            announce: &announce,
        };
        let bound = crate::turn::start(embedded, &metrics.registry, shutdown_rx.clone()).await?;
        let host = config.turn_host.clone().unwrap_or_else(|| announce.first().map_or(udp.ip(), |ip| *ip).to_string());
        let urls = match config.turn_urls.is_empty() {
            true => crate::turn::urls(&host, &bound),
            false => config.turn_urls.clone(),
        };
        tracing::info!(udp = ?bound.udp, tcp = ?bound.tcp, tls = ?bound.tls, "embedded TURN server");
        (bound, Some(secret), urls)
    } else {
        (crate::turn::Listeners::default(), config.turn_secret.clone(), config.turn_urls.clone())
    };
    let turn = signaling::turn::TurnCredentials::new(turn_secret, turn_urls, config.turn_ttl)?.map(Arc::new);
    if let Some(turn) = &turn {
        tracing::info!(?turn, "TURN credentials in every joined (coturn REST convention)");
    }
    let state = AppState {
        rooms: rooms.clone(),
        node: node.clone(),
        auth,
        metrics,
        assets: ASSETS,
        limits: Default::default(),
        fleet: fleet.clone(),
        parking: Default::default(),
        turn,
        wish: Default::default(),
    };
    let app = signaling::app(state);
    let mut shutdown_rx = shutdown_rx;
    let limits = config.http_limits();
    let http_fleet = fleet.clone();
    let http_task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
        };
        let options = crate::http::ServeOptions {
            limits,
            metrics: http_metrics,
            tune: limit_send_buffer,
            tls,
            fleet: http_fleet,
        };
        crate::http::serve(listener, app, options, stop).await;
    });
    let drained = tokio::spawn(drain::supervise(node.clone(), rooms.clone(), drain::EVACUATE_GRACE, fleet.clone()));
    Ok(Server {
        http,
        udp,
        announce,
        media_ports,
        tcp,
        turn: turn_listeners,
        node,
        rooms,
        media_metrics,
        demuxes,
        http_task,
        readers,
        fleet,
        fleet_task,
        drained,
        shutdown,
    })
}

/// Binds one media port (inside the runtime that will read it) and sizes its receive buffer.
fn bind_media(config: &Config, addr: SocketAddr) -> anyhow::Result<crate::udp::MediaSocket> {
    let socket = crate::udp::MediaSocket::bind(addr)?;
    if config.udp_recv_buffer > 0 {
        let granted = reader::size_receive_buffer(&socket, config.udp_recv_buffer);
        // Linux reports twice the usable size (the rest is its bookkeeping)
        let usable = if cfg!(target_os = "linux") { granted / 2 } else { granted };
        tracing::info!(requested = config.udp_recv_buffer, usable, "media socket receive buffer");
        if usable < config.udp_recv_buffer {
            tracing::warn!(
                requested = config.udp_recv_buffer,
                usable,
                "media socket receive buffer smaller than asked: raise net.core.rmem_max"
            );
        }
    }
    Ok(socket)
}

/// The reader of one media port.
pub enum Reader {
    /// A task on the server's runtime.
    Task(tokio::task::JoinHandle<()>),
    /// A media thread (`--media-threads`), running its reader and rooms.
    Thread(std::thread::JoinHandle<()>),
}

impl Reader {
    /// The reader has ended.
    pub fn is_finished(&self) -> bool {
        match self {
            Reader::Task(t) => t.is_finished(),
            Reader::Thread(t) => t.is_finished(),
        }
    }
}

impl Server {
    /// Stops accepting HTTP connections and waits up to `grace` for open requests to finish
    /// (so the answer to the drain call that emptied the node still goes out); the media
    /// ports' readers and media threads end too. False if a reader was still running after
    /// `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, self.http_task).await;
        if let Some(task) = self.fleet_task {
            let _ = tokio::time::timeout(grace, task).await;
        }
        let mut ended = true;
        for reader in self.readers {
            ended &= match reader {
                Reader::Task(t) => tokio::time::timeout(grace, t).await.is_ok(),
                Reader::Thread(t) => {
                    tokio::time::timeout(grace, tokio::task::spawn_blocking(move || t.join())).await.is_ok()
                }
            };
        }
        ended
    }
}

/// Kernel send buffer of one HTTP/WebSocket connection (the kernel doubles it). Autotuning
/// would let a client that stops reading hold megabytes of signaling messages in the kernel
/// (~28k messages in a test) before its queue overflows and the room removes it
/// (`room::participant::queue`); 64 KiB is still several of the largest messages (an offer or
/// a `joined` list), and writes beyond it just wait for the client.
const HTTP_SEND_BUFFER: libc::c_int = 64 * 1024;

fn limit_send_buffer(tcp: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let ok = crate::udp::set_int_option(tcp.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, HTTP_SEND_BUFFER);
    if !ok {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot limit the send buffer");
    }
}
