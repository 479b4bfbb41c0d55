//! The `sfu` binary: one SFU node.

use clap::Parser;
use sfu::config::Config;
use std::io::Write;
use tokio::signal::unix::{SignalKind, signal};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log)?)
        .with_writer(std::io::stderr)
        .init();
    if config.dev {
        tracing::warn!("development mode: anyone can join any room without a token");
    }
    let server = sfu::server::start(&config).await?;
    tracing::info!(http = %server.http, udp = %server.udp, "sfu ready: open http://{}/?room=demo&name=me", server.http);
    println!("SFU_READY http={} udp={}", server.http, server.udp);
    std::io::stdout().flush()?;

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {
            tracing::info!("interrupted: exiting");
            return Ok(());
        }
    }
    server.node.start_drain();
    let mut changed = server.node.subscribe();
    tracing::info!(rooms = server.rooms.len(), "SIGTERM: draining, exiting when the last room is empty");
    loop {
        if server.rooms.is_empty() {
            tracing::info!("drained: exiting");
            return Ok(());
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = term.recv() => { tracing::warn!("second SIGTERM: exiting now"); return Ok(()); }
            _ = int.recv() => { tracing::warn!("SIGINT while draining: exiting now"); return Ok(()); }
        }
    }
}
