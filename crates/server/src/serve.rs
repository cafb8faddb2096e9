//! The HTTP(S) front door: accepts TCP connections for the axum app with the
//! bounds a server on the internet needs before a client costs it anything.
//! axum's own `serve` admits every connection and waits forever for request
//! headers (hyper's header timeout needs a timer it does not set), so slow
//! or idle clients could hold sockets until the process runs out of file
//! descriptors. Here:
//! - at most `max_connections` open connections, and `max_connections_per_ip`
//!   from one address; one more is closed at once and counted
//!   (`refused_total{reason="server_full"|"address_full"}`);
//! - request headers must arrive within `header_read_timeout`, which also
//!   closes keep-alive connections idle that long (WebSockets, once
//!   upgraded, are socket.io's business: its heartbeat ends dead ones);
//! - a TLS handshake must finish within [`TLS_HANDSHAKE_TIMEOUT`];
//! - `accept()` errors (no file descriptors left) back off instead of
//!   spinning.

use crate::sfu::Sfu;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How long a TLS client gets to finish its handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an `accept()` error that is not about one connection
/// (EMFILE, ENFILE, ENOBUFS): the listener would fail again at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds of the front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Open TCP connections at most (pages, polling and WebSockets alike).
    pub max_connections: usize,
    /// Open TCP connections from one IP address at most.
    pub max_connections_per_ip: usize,
    /// Time a client gets to send a request's headers (and to start the
    /// next request on a keep-alive connection).
    pub header_read_timeout: Duration,
}

/// Who is connected: counts per address, held by [`Slot`]s.
#[derive(Debug)]
struct Gate {
    limits: ServeLimits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was not admitted (a label of `refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    ServerFull,
    AddressFull,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::AddressFull => "address_full",
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
struct Slot {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (total, per_ip) = &mut *open;
        if *total >= self.limits.max_connections {
            return Err(Refusal::ServerFull);
        }
        let mine = per_ip.entry(ip).or_default();
        if *mine >= self.limits.max_connections_per_ip {
            return Err(Refusal::AddressFull);
        }
        *mine += 1;
        *total += 1;
        Ok(Slot {
            gate: self.clone(),
            ip,
        })
    }

    fn total(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (total, per_ip) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(mine) = per_ip.get_mut(&self.ip) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Serve `app` on `listener` (over TLS with `tls`) until `shutdown`
/// resolves; then ask every connection to finish (hyper's graceful
/// shutdown) and return once all have closed. Bound the wait from outside.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ServeLimits,
    sfu: Sfu,
    shutdown: impl Future<Output = ()>,
) {
    let gate = Arc::new(Gate {
        limits,
        open: Mutex::new((0, HashMap::new())),
    });
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    // Connections hold a sender each: when all are dropped, all are closed.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_errors_logged = false;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_per_connection(&error) => continue,
            Err(error) => {
                // Out of file descriptors or memory: log once per episode, wait, retry.
                if !accept_errors_logged {
                    tracing::warn!(%error, open = gate.total(), "cannot accept connections; retrying every 100 ms (raise the file descriptor limit or lower limits.max_connections)");
                    accept_errors_logged = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        accept_errors_logged = false;
        let slot = match gate.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                sfu.inner.metrics.refused(refusal.reason());
                tracing::debug!(reason = refusal.reason(), "connection refused at the door");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, acceptor, closing, alive) = (
            app.clone(),
            acceptor.clone(),
            closing_rx.clone(),
            alive_tx.clone(),
        );
        let header_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let _alive = alive;
            match acceptor {
                None => serve_connection(stream, app, remote.ip(), header_timeout, closing).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            serve_connection(tls, app, remote.ip(), header_timeout, closing).await
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

/// One HTTP/1.1 connection, with upgrades (WebSockets), until it ends; when
/// `closing` turns true, it finishes its requests and closes. HTTP/1.1
/// only: browsers speak HTTP/2 only over TLS with ALPN, which this server
/// does not offer, and hyper's protocol detection would wait for a first
/// byte without the header timeout.
async fn serve_connection<I>(
    io: I,
    app: axum::Router,
    client: std::net::IpAddr,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Handlers that limit per address (WHIP) read the client's address.
    let app = tower::Layer::layer(&axum::Extension(crate::whip::ClientAddr(client)), app);
    let service = TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!(%error, "connection ended with an error");
                }
                break;
            }
            changed = closing.changed(), if !asked_to_close => {
                asked_to_close = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Errors of `accept()` that concern only the connection being accepted.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize, per_ip: usize) -> Arc<Gate> {
        let limits = ServeLimits {
            max_connections: max,
            max_connections_per_ip: per_ip,
            header_read_timeout: Duration::from_secs(1),
        };
        Arc::new(Gate {
            limits,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    #[test]
    fn one_address_cannot_take_every_place_and_places_come_back() {
        let gate = gate(3, 2);
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let first = gate.admit(a).expect("room");
        let _second = gate.admit(a).expect("room");
        assert_eq!(gate.admit(a).err(), Some(Refusal::AddressFull));
        let _third = gate.admit(b).expect("another address still gets in");
        assert_eq!(gate.admit(b).err(), Some(Refusal::ServerFull));
        drop(first);
        assert_eq!(gate.total(), 2);
        gate.admit(a).expect("a closed connection frees its place");
    }
}
