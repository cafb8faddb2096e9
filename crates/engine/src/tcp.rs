//! ICE over TCP (RFC 6544, passive candidates): each accepted connection
//! carries STUN/DTLS/SRTP packets framed by a 16-bit length (RFC 4571). The
//! worker's loop sees whole frames as datagrams from the connection's remote
//! address, and hands frames to send back to the connection's writer task.

use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Connections one worker accepts at most; more are closed at once.
const MAX_CONNECTIONS: usize = 4096;
/// Frames waiting for a slow reader before new ones are dropped (media is
/// better late than never only up to a point).
const WRITE_QUEUE: usize = 512;
/// Largest frame accepted: a datagram never needs more.
const MAX_FRAME: usize = 4096;

/// What the connection tasks tell the worker's loop.
pub(crate) enum TcpEvent {
    Opened(SocketAddr, mpsc::Sender<Vec<u8>>),
    Frame(SocketAddr, Vec<u8>),
    Closed(SocketAddr),
}

/// Writers of the open connections, by remote address.
#[derive(Default)]
pub(crate) struct Connections {
    writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
}

impl Connections {
    /// Track an event; a frame comes back for the router.
    pub fn handle(&mut self, event: TcpEvent) -> Option<(SocketAddr, Vec<u8>)> {
        match event {
            TcpEvent::Opened(addr, writer) => {
                if self.writers.len() < MAX_CONNECTIONS {
                    self.writers.insert(addr, writer);
                } else {
                    tracing::warn!(connections = self.writers.len(), "too many ICE-TCP connections; refusing one");
                }
                None
            }
            TcpEvent::Frame(addr, frame) => Some((addr, frame)),
            TcpEvent::Closed(addr) => {
                self.writers.remove(&addr);
                None
            }
        }
    }

    /// Queue a frame for the connection to `to`, if it is open.
    pub fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if let Some(writer) = self.writers.get(&to) {
            if let Err(mpsc::error::TrySendError::Closed(_)) = writer.try_send(bytes) {
                self.writers.remove(&to);
            }
        }
    }
}

pub(crate) async fn accept_loop(listener: tokio::net::TcpListener, events: mpsc::UnboundedSender<TcpEvent>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "ICE-TCP accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        if events.send(TcpEvent::Opened(addr, frames_tx)).is_err() {
            return;
        }
        let reader_events = events.clone();
        tokio::spawn(async move {
            let mut len = [0u8; 2];
            loop {
                if reader.read_exact(&mut len).await.is_err() {
                    break;
                }
                let n = u16::from_be_bytes(len) as usize;
                if n == 0 || n > MAX_FRAME {
                    tracing::debug!(frame = n, "ICE-TCP frame size out of range; closing the connection");
                    break;
                }
                let mut frame = vec![0u8; n];
                if reader.read_exact(&mut frame).await.is_err() {
                    break;
                }
                if reader_events.send(TcpEvent::Frame(addr, frame)).is_err() {
                    return;
                }
            }
            let _ = reader_events.send(TcpEvent::Closed(addr));
        });
        tokio::spawn(async move {
            while let Some(frame) = frames_rx.recv().await {
                let Ok(len) = u16::try_from(frame.len()) else { continue };
                let mut framed = Vec::with_capacity(frame.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&frame);
                if writer.write_all(&framed).await.is_err() {
                    break;
                }
            }
        });
    }
}
