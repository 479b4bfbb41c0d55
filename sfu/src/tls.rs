//! TLS on the HTTP port (`--tls-cert`, `--tls-key`): HTTPS and WSS through rustls, so a node
//! can face browsers directly. The certificate chain and key (PEM) are reloaded on SIGHUP and
//! when either file changes (polled), for the connections that start afterwards; a reload that
//! fails keeps the certificate in use, says why in the log and counts it.

use prometheus::{IntCounterVec, Opts, Registry};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for a change.
const POLL: Duration = Duration::from_secs(5);

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM object of the kind wanted.
    #[error("{path}: {what}")]
    File {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the pair (e.g. a key that does not match the certificate).
    #[error("certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_owned(), what: what.to_string() }
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // HTTP/1.1 only: WebSocket upgrades ride it
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn stamps(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

/// The certificate in use and where it comes from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
    seen: Mutex<Option<(SystemTime, SystemTime)>>,
    reloads: IntCounterVec,
}

impl Tls {
    /// Loads `cert` and `key`; the node does not start with a pair that does not load.
    pub fn load(cert: &Path, key: &Path, registry: &Registry) -> Result<Arc<Tls>, TlsError> {
        let config = server_config(cert, key)?;
        let reloads = IntCounterVec::new(
            Opts::new("sfu_tls_reloads_total", "Certificate reloads (SIGHUP or a changed file) by result: ok, failed"),
            &["result"],
        )
        .expect("valid metric");
        registry.register(Box::new(reloads.clone())).expect("metric registered once");
        Ok(Arc::new(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(stamps(cert, key)),
            reloads,
        }))
    }

    /// An acceptor with the certificate in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("not poisoned").clone())
    }

    /// An acceptor with the certificate in use now and no ALPN (TURN over TLS).
    pub fn acceptor_without_alpn(&self) -> TlsAcceptor {
        let mut config = ServerConfig::clone(&self.current.read().expect("not poisoned"));
        config.alpn_protocols.clear();
        TlsAcceptor::from(Arc::new(config))
    }

    /// Loads the files again; on failure the certificate in use stays.
    pub fn reload(&self, why: &str) -> bool {
        *self.seen.lock().expect("not poisoned") = stamps(&self.cert, &self.key);
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                *self.current.write().expect("not poisoned") = Arc::new(config);
                self.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(why, cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                self.reloads.with_label_values(&["failed"]).inc();
                tracing::error!(why, error = %e, "TLS certificate reload failed: the previous one stays in use");
                false
            }
        }
    }

    /// Reloads on SIGHUP and when a file's modification time changes, until `stop`.
    pub async fn watch(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: certificates reload on file changes only");
                None
            }
        };
        loop {
            tokio::select! {
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload("SIGHUP");
                }
                _ = tokio::time::sleep(POLL) => {
                    let now = stamps(&self.cert, &self.key);
                    let changed = now.is_some() && now != *self.seen.lock().expect("not poisoned");
                    if changed {
                        self.reload("file changed");
                    }
                }
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
}
