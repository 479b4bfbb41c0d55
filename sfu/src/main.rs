//! The `sfu` binary: one SFU node (default), or `sfu token ...` to print an access token.

use clap::Parser;
use sfu::config::{Cli, Command, Config, TokenArgs};
use signaling::auth::{self, ApiKey, Grants, TokenRequest};
use std::io::Write;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long in-flight HTTP requests may take once the node decided to exit.
const HTTP_GRACE: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => {
            println!("{}", mint(&args)?);
            Ok(())
        }
        None => serve(cli.serve).await,
    }
}

fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    let key = if args.dev {
        auth::dev_key()
    } else {
        ApiKey {
            key: args.key.clone().ok_or_else(|| anyhow::anyhow!("--key is required"))?,
            secret: args.secret.clone().ok_or_else(|| anyhow::anyhow!("--secret is required"))?,
        }
    };
    if let Some(room) = &args.room {
        anyhow::ensure!(signaling::protocol::valid_room_name(room), "--room: 1-128 characters of A-Z a-z 0-9 _ . -");
    }
    let grants = Grants {
        join: args.room.is_some(),
        publish: args.room.is_some() && !args.no_publish,
        subscribe: args.room.is_some() && !args.no_subscribe,
        admin: args.admin,
    };
    let req = TokenRequest {
        identity: args.identity.clone(),
        name: args.name.clone(),
        room: args.room.clone(),
        grants,
        ttl: args.ttl,
    };
    Ok(auth::issue(&key, &req)?.0)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    sfu::telemetry::init(&config.log)?;
    if config.dev {
        tracing::warn!(
            "development mode: joins need no token, the public key devkey:devsecret is accepted and \
             GET /api/dev/token hands out join tokens; never use --dev in production"
        );
        for addr in config.dev_exposed() {
            tracing::error!(%addr, "development mode on an address other hosts can reach: anyone there can join and mint admin tokens");
        }
    }
    // handlers first: a SIGTERM right after the node reports ready (an orchestrator, a test)
    // must start a drain, not kill the process with the default action
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut server = sfu::server::start(&config).await?;
    let tcp = server.tcp.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(http = %server.http, udp = %server.udp, %tcp, "sfu ready: open http://{}/?room=demo&name=me", server.http);
    let turn = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    println!(
        "SFU_READY http={} udp={} tcp={tcp} turn={} turn_tls={}",
        server.http,
        server.udp,
        turn(server.turn.udp),
        turn(server.turn.tls)
    );
    std::io::stdout().flush()?;

    let outcome = loop {
        tokio::select! {
            _ = term.recv() => {
                if server.node.start_drain() {
                    tracing::info!(rooms = server.rooms.len(), participants = server.rooms.participants(),
                        "SIGTERM: draining, exiting when the last room is empty or at the drain deadline");
                } else {
                    tracing::warn!("second SIGTERM while draining: exiting now");
                    return Ok(());
                }
            }
            _ = int.recv() => {
                if server.node.state() == signaling::NodeState::Draining {
                    tracing::warn!("SIGINT while draining: exiting now");
                } else {
                    tracing::info!("interrupted: exiting");
                }
                return Ok(());
            }
            outcome = &mut server.drained => break outcome?,
        }
    };
    tracing::info!(?outcome, "drained: exiting");
    if !server.shutdown(HTTP_GRACE).await {
        tracing::warn!("a media port's reader did not end in time");
    }
    Ok(())
}
