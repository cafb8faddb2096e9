//! The `simplesfu` binary: read the configuration (file, environment,
//! flags), start the SFU and serve HTTP or HTTPS until Ctrl-C or SIGTERM; or,
//! with `simplesfu token ...`, print a signed join token. Once it accepts
//! connections it prints `simplesfu listening on http(s)://<addr>` as the
//! first line on stdout (with a self-signed certificate, lines with the LAN
//! URLs follow).

use anyhow::Context;
use clap::Parser;
use simplesfu::{app, mint, socket_io_builder, tls, Cli, Command, Config, Sfu, TokenArgs};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// How long open connections get to finish on shutdown.
/// After SIGTERM: how long clients get to hear the goodbye and close, and the
/// SFU to close its transports, before the process exits regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.resolve() {
        Err(error) => Err(error.into()),
        Ok(config) => match &cli.command {
            Some(Command::Token(args)) => print_token(&config, args),
            None => serve(config).await,
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain on one line, without a backtrace: these are
            // configuration and startup errors a user must read and fix.
            eprintln!("simplesfu: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_token(config: &Config, args: &TokenArgs) -> anyhow::Result<()> {
    let secret = config.auth.secret.as_ref().context(
        "no token secret: set auth.secret in the configuration file (--config) or the SIMPLESFU_AUTH_SECRET environment variable",
    )?;
    let token = mint(
        secret,
        &args.room,
        args.rights(),
        args.ttl,
        args.name.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    writeln!(std::io::stdout().lock(), "{token}").context("stdout closed")?;
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(config.log_filter())
        .with_context(|| format!("invalid log level/filter `{}`", config.log_filter()))?;
    // Colours only for a person at a terminal, not in log files and collectors.
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    simplesfu::log_panics();
    raise_file_limit();

    let tls = tls::load(&config.tls).await?;
    let (io_layer, io) = socket_io_builder().build_layer();
    let sfu = Sfu::attach(&io, config.sfu_options()).context("could not start the SFU")?;
    let static_dir = config.static_dir();
    let router = app(sfu.clone(), io_layer, static_dir, config.allowed_origins());

    let listener = std::net::TcpListener::bind(config.http.listen)
        .with_context(|| format!("could not listen on {}", config.http.listen))?;
    listener
        .set_nonblocking(true)
        .context("could not make the listener non-blocking")?;
    let addr = listener.local_addr().context("no local address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Addresses stay out of info logs (the stdout line has the one to use).
    tracing::info!(
        workers = sfu.rtc_addrs().len(),
        tls = tls.is_some(),
        tokens = config.auth.secret.is_some(),
        static_dir = %static_dir.map_or("(built-in examples)".into(), |d| d.display().to_string()),
        "serving"
    );
    tracing::debug!(%addr, rtc = ?sfu.rtc_addrs(), "addresses");
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "simplesfu listening on {scheme}://{addr}").context("stdout closed")?;
        if let Some(tls) = tls.as_ref().filter(|t| !t.lan_addresses.is_empty()) {
            for ip in &tls.lan_addresses {
                let host = if ip.is_ipv6() {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                writeln!(stdout, "simplesfu on this network: https://{host}:{}/ (self-signed: accept the browser's warning once)", addr.port())
                    .context("stdout closed")?;
            }
        }
        stdout.flush().context("stdout closed")?;
    }

    let cluster = match config.cluster.options(&format!("{scheme}://{addr}")) {
        Some(options) => Some(simplesfu::cluster::Cluster::start(options, sfu.clone())?),
        None => None,
    };

    // On SIGTERM or Ctrl-C: stop accepting connections, tell every client
    // (serverShutdown, then a server disconnect), close the transports, and
    // exit within SHUTDOWN_GRACE even if some connection lingers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        stop_tx.send_replace(true);
    });
    let stopping = move || {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        }
    };
    let closer = {
        let (sfu, stopped) = (sfu.clone(), stopping());
        tokio::spawn(async move {
            stopped.await;
            sfu.close("the server is shutting down", SHUTDOWN_GRACE)
                .await;
        })
    };
    let listener = tokio::net::TcpListener::from_std(listener).context("could not serve HTTP")?;
    let rustls = tls.map(|tls| tls.rustls.get_inner());
    let serving = simplesfu::serve(
        listener,
        router,
        rustls,
        config.serve_limits(),
        sfu.clone(),
        stopping(),
    );
    let overdue = async {
        stopping().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = serving => {}
        () = overdue => tracing::warn!("connections still open after the shutdown grace period; exiting anyway"),
    }
    // The cleanup started with the goodbyes and is bounded by the same grace.
    let _ = tokio::time::timeout(Duration::from_secs(1), closer).await;
    if let Some(cluster) = cluster {
        let _ = tokio::time::timeout(Duration::from_secs(1), cluster.leave()).await;
    }
    sfu.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// Every connection, page load and ICE-TCP client costs a file descriptor,
/// and the usual soft limit (1024) is far below what the connection limits
/// allow: raise it to the hard limit, as servers commonly do.
fn raise_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                let soft = limit.rlim_cur;
                limit.rlim_cur = limit.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    tracing::debug!(
                        from = soft,
                        to = limit.rlim_max,
                        "raised the open file limit"
                    );
                }
            }
        }
    }
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
