//! The `simplesfu` binary: parse the configuration, start the SFU and serve
//! HTTP until Ctrl-C or SIGTERM. Prints exactly one line on stdout,
//! `simplesfu listening on http://<addr>`, once it accepts connections.

use anyhow::Context;
use clap::Parser;
use simplesfu::{app, Config, Sfu, MAX_SOCKET_IO_PAYLOAD};
use socketioxide::SocketIo;
use std::io::Write;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = EnvFilter::try_new(config.log_filter())
        .with_context(|| format!("invalid log level/filter `{}`", config.log_filter()))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let (io_layer, io) = SocketIo::builder().max_payload(MAX_SOCKET_IO_PAYLOAD).build_layer();
    let sfu = Sfu::attach(&io, config.sfu_options()).context("could not start the SFU")?;
    let static_dir = config.static_dir();
    let router = app(sfu.clone(), io_layer, &static_dir);

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("could not listen on {}", config.http_listen))?;
    let addr = listener.local_addr().context("no local address")?;
    tracing::info!(%addr, static_dir = %static_dir.display(), rtc = ?sfu.rtc_addrs(), "serving");
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "simplesfu listening on http://{addr}").context("stdout closed")?;
        stdout.flush().context("stdout closed")?;
    }

    axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await.context("HTTP server failed")?;
    sfu.shutdown();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
