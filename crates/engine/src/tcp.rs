//! ICE over TCP (RFC 6544, passive candidates): each accepted connection
//! carries STUN/DTLS/SRTP packets framed by a 16-bit length (RFC 4571). The
//! worker's loop sees whole frames as datagrams from the connection's remote
//! address, and hands frames to send back to the connection's task.
//!
//! Anyone on the internet can open a connection before proving anything, so
//! this module owns the limits that keep strangers from exhausting the
//! worker ([`IceTcpLimits`]): connections per worker, and connections not
//! yet authenticated per source address (refused ones are closed at once);
//! a deadline for the first binding request whose MESSAGE-INTEGRITY holds
//! (the router decides, the worker tells the connection through its
//! [`Activity`]); an idle timeout after the last frame the router took; a
//! back-off when `accept` fails (at the fd limit it fails at once, again and
//! again); and a bounded queue to the worker whose overflow is dropped and
//! counted. Authenticated connections are bounded per transport by the
//! router's path slots, not per source: many clients behind one NAT (the
//! networks that need ICE-TCP) each have their own.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Frames waiting for a slow reader before new ones are dropped (media is
/// better late than never only up to a point).
const WRITE_QUEUE: usize = 512;
/// Largest frame accepted: a datagram never needs more.
const MAX_FRAME: usize = 4096;
/// Pause after `accept` failed for lack of resources (file descriptors,
/// memory): the listener stays readable, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits of a worker's ICE-TCP listener. The defaults suit a public
/// deployment: a browser opens one connection per transport, and sends its
/// first binding request within milliseconds and one every few seconds after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceTcpLimits {
    /// Open connections per worker at most; more are closed as soon as they
    /// are accepted.
    pub max_connections: usize,
    /// Connections from one source (an IPv4 address, or an IPv6 /64, which
    /// one host usually holds whole) that have not authenticated yet, at
    /// most; more are closed as soon as they are accepted.
    pub max_unauthenticated_per_source: usize,
    /// A connection whose first binding request with a valid
    /// MESSAGE-INTEGRITY for a known transport has not arrived this long
    /// after it was accepted is closed.
    pub auth_timeout: Duration,
    /// An authenticated connection is closed this long after the last frame
    /// the router accepted from it (browsers send consent checks every few
    /// seconds, so a live one never gets near it).
    pub idle_timeout: Duration,
    /// Frames from all connections waiting for the worker's loop; more are
    /// dropped and counted (`WorkerStats::tcp_frames_dropped`).
    pub queue: usize,
}

impl Default for IceTcpLimits {
    fn default() -> Self {
        IceTcpLimits {
            max_connections: 1024,
            max_unauthenticated_per_source: 16,
            auth_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            queue: 1024,
        }
    }
}

/// Counters the listener and connection tasks keep; the worker copies them
/// into its `WorkerStats`.
#[derive(Debug, Default)]
pub(crate) struct TcpCounters {
    pub open: AtomicU64,
    pub refused: AtomicU64,
    pub closed_unauthenticated: AtomicU64,
    pub closed_idle: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub accept_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// When a connection last sent a frame the router accepted. Written by the
/// worker's loop, read by the connection's watchdog: one relaxed atomic, no
/// message per frame.
#[derive(Debug)]
pub(crate) struct Activity {
    accepted: Instant,
    /// Milliseconds from `accepted` to the last accepted frame, plus one; 0
    /// while the connection has not authenticated.
    last_valid: AtomicU64,
}

/// Why a connection's watchdog closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Unauthenticated,
    Idle,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Activity {
            accepted,
            last_valid: AtomicU64::new(0),
        }
    }

    /// Whether a frame of this connection was taken by the router.
    fn authenticated(&self) -> bool {
        self.last_valid.load(Ordering::Relaxed) != 0
    }

    /// The router accepted a frame of this connection at `now`.
    pub fn mark_valid(&self, now: Instant) {
        let millis = now.saturating_duration_since(self.accepted).as_millis();
        let stamp = u64::try_from(millis).unwrap_or(u64::MAX - 1) + 1;
        self.last_valid.fetch_max(stamp, Ordering::Relaxed);
    }

    /// When the connection expires unless it sends a valid frame, and why.
    fn deadline(&self, limits: &IceTcpLimits) -> (Instant, Expiry) {
        match self.last_valid.load(Ordering::Relaxed) {
            0 => (self.accepted + limits.auth_timeout, Expiry::Unauthenticated),
            stamp => (
                self.accepted + Duration::from_millis(stamp - 1) + limits.idle_timeout,
                Expiry::Idle,
            ),
        }
    }
}

/// Who a connection counts against for the per-source cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SourceKey(IpAddr);

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                SourceKey(IpAddr::V6(prefix.into()))
            }
            v4 => SourceKey(v4),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    WorkerFull,
    SourceFull,
}

/// The open connections by source, each with its id and activity: owned by
/// the accept loop.
#[derive(Debug)]
struct Admission {
    max_total: usize,
    max_unauthenticated_per_source: usize,
    total: usize,
    per_source: HashMap<SourceKey, Vec<(u64, Arc<Activity>)>>,
}

impl Admission {
    fn new(limits: &IceTcpLimits) -> Self {
        Admission {
            max_total: limits.max_connections,
            max_unauthenticated_per_source: limits.max_unauthenticated_per_source,
            total: 0,
            per_source: HashMap::new(),
        }
    }

    fn admit(&mut self, key: SourceKey, id: u64, activity: &Arc<Activity>) -> Result<(), Refusal> {
        if self.total >= self.max_total {
            return Err(Refusal::WorkerFull);
        }
        let open = self.per_source.entry(key).or_default();
        let unauthenticated = open.iter().filter(|(_, a)| !a.authenticated()).count();
        if unauthenticated >= self.max_unauthenticated_per_source {
            if open.is_empty() {
                self.per_source.remove(&key);
            }
            return Err(Refusal::SourceFull);
        }
        open.push((id, activity.clone()));
        self.total += 1;
        Ok(())
    }

    fn release(&mut self, key: SourceKey, id: u64) {
        let Some(open) = self.per_source.get_mut(&key) else {
            return;
        };
        let Some(i) = open.iter().position(|(open_id, _)| *open_id == id) else {
            return;
        };
        open.swap_remove(i);
        if open.is_empty() {
            self.per_source.remove(&key);
        }
        self.total -= 1;
    }
}

/// Held by a connection's task: tells the accept loop when it ends,
/// however it ends.
struct Admitted {
    key: SourceKey,
    id: u64,
    released: mpsc::UnboundedSender<(SourceKey, u64)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let _ = self.released.send((self.key, self.id));
    }
}

/// What the connection tasks tell the worker's loop.
pub(crate) enum TcpEvent {
    Opened {
        addr: SocketAddr,
        id: u64,
        writer: mpsc::Sender<Vec<u8>>,
        activity: Arc<Activity>,
    },
    Frame(SocketAddr, Vec<u8>),
    Closed {
        addr: SocketAddr,
        id: u64,
    },
}

struct Connection {
    id: u64,
    writer: mpsc::Sender<Vec<u8>>,
    activity: Arc<Activity>,
}

/// The open connections, by remote address: owned by the worker's loop.
#[derive(Default)]
pub(crate) struct Connections {
    open: HashMap<SocketAddr, Connection>,
}

impl Connections {
    /// Track an event; a frame comes back for the router.
    pub fn handle(&mut self, event: TcpEvent) -> Option<(SocketAddr, Vec<u8>)> {
        match event {
            TcpEvent::Opened {
                addr,
                id,
                writer,
                activity,
            } => {
                self.open.insert(
                    addr,
                    Connection {
                        id,
                        writer,
                        activity,
                    },
                );
                None
            }
            TcpEvent::Frame(addr, frame) => Some((addr, frame)),
            TcpEvent::Closed { addr, id } => {
                // A newer connection from the same address stays.
                if self.open.get(&addr).is_some_and(|c| c.id == id) {
                    self.open.remove(&addr);
                }
                None
            }
        }
    }

    /// The router accepted a frame from `from`: it keeps its connection open.
    pub fn mark_valid(&self, from: SocketAddr, now: Instant) {
        if let Some(connection) = self.open.get(&from) {
            connection.activity.mark_valid(now);
        }
    }

    /// Queue a frame for the connection to `to`, if it is open.
    pub fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if let Some(connection) = self.open.get(&to) {
            if let Err(mpsc::error::TrySendError::Closed(_)) = connection.writer.try_send(bytes) {
                self.open.remove(&to);
            }
        }
    }
}

/// Whether `accept` failed for lack of a resource that only time frees.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accept connections and spawn a task for each admitted one, until the
/// worker's loop is gone.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    limits: IceTcpLimits,
    events: mpsc::Sender<TcpEvent>,
    counters: Arc<TcpCounters>,
) {
    let mut admission = Admission::new(&limits);
    let (released_tx, mut released) = mpsc::unbounded_channel();
    let mut next_id = 0u64;
    let mut warned_exhaustion = false;
    loop {
        let accepted = tokio::select! {
            biased;
            Some((key, id)) = released.recv() => {
                admission.release(key, id);
                counters.open.store(admission.total as u64, Ordering::Relaxed);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                bump(&counters.accept_errors);
                if is_resource_exhaustion(&error) {
                    if !std::mem::replace(&mut warned_exhaustion, true) {
                        tracing::warn!(%error, backoff_ms = ACCEPT_BACKOFF.as_millis() as u64, "ICE-TCP accept failed for lack of resources; backing off");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                } else {
                    tracing::debug!(%error, "ICE-TCP accept failed");
                }
                continue;
            }
        };
        if events.is_closed() {
            return;
        }
        let key = SourceKey::of(addr.ip());
        next_id += 1;
        let activity = Arc::new(Activity::new(Instant::now()));
        if let Err(refusal) = admission.admit(key, next_id, &activity) {
            bump(&counters.refused);
            tracing::debug!(
                ?refusal,
                connections = admission.total,
                "ICE-TCP connection refused"
            );
            // Dropping the stream closes the socket: the client reads EOF.
            drop(stream);
            continue;
        }
        counters
            .open
            .store(admission.total as u64, Ordering::Relaxed);
        let admitted = Admitted {
            key,
            id: next_id,
            released: released_tx.clone(),
        };
        let connection = Accepted {
            stream,
            addr,
            activity,
            admitted,
        };
        tokio::spawn(serve(connection, limits, events.clone(), counters.clone()));
    }
}

/// A connection the accept loop admitted.
struct Accepted {
    stream: TcpStream,
    addr: SocketAddr,
    activity: Arc<Activity>,
    /// Frees its place when the task ends.
    admitted: Admitted,
}

/// One connection: read frames for the worker, write the worker's frames
/// back, and close when either side ends or the watchdog expires.
async fn serve(
    connection: Accepted,
    limits: IceTcpLimits,
    events: mpsc::Sender<TcpEvent>,
    counters: Arc<TcpCounters>,
) {
    let Accepted {
        stream,
        addr,
        activity,
        admitted,
    } = connection;
    let id = admitted.id;
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (frames_tx, frames_rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let opened = TcpEvent::Opened {
        addr,
        id,
        writer: frames_tx,
        activity: activity.clone(),
    };
    if events.send(opened).await.is_err() {
        return;
    }
    // Each branch owns a half; whichever ends first drops both, closing the socket.
    let expired = tokio::select! {
        () = read_frames(reader, addr, &events, &counters) => None,
        () = write_frames(writer, frames_rx) => None,
        expiry = watchdog(&activity, &limits) => Some(expiry),
    };
    match expired {
        Some(Expiry::Unauthenticated) => bump(&counters.closed_unauthenticated),
        Some(Expiry::Idle) => bump(&counters.closed_idle),
        None => {}
    }
    tracing::debug!(connection = id, ?expired, "ICE-TCP connection closed");
    drop(admitted);
    let _ = events.send(TcpEvent::Closed { addr, id }).await;
}

/// Resolves when the connection has gone too long without a valid frame.
async fn watchdog(activity: &Activity, limits: &IceTcpLimits) -> Expiry {
    loop {
        let (at, expiry) = activity.deadline(limits);
        if Instant::now() >= at {
            return expiry;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

async fn read_frames(
    mut reader: OwnedReadHalf,
    addr: SocketAddr,
    events: &mpsc::Sender<TcpEvent>,
    counters: &TcpCounters,
) {
    let mut len = [0u8; 2];
    loop {
        if reader.read_exact(&mut len).await.is_err() {
            return;
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n == 0 || n > MAX_FRAME {
            tracing::debug!(
                frame = n,
                "ICE-TCP frame size out of range; closing the connection"
            );
            return;
        }
        let mut frame = vec![0u8; n];
        if reader.read_exact(&mut frame).await.is_err() {
            return;
        }
        match events.try_send(TcpEvent::Frame(addr, frame)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => bump(&counters.frames_dropped),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

async fn write_frames(mut writer: OwnedWriteHalf, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = frames.recv().await {
        let Ok(len) = u16::try_from(frame.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(frame.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&frame);
        if writer.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> IceTcpLimits {
        IceTcpLimits {
            max_connections: 3,
            max_unauthenticated_per_source: 2,
            auth_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            queue: 8,
        }
    }

    fn ip(text: &str) -> SourceKey {
        SourceKey::of(text.parse().expect("an address"))
    }

    #[test]
    fn admission_caps_strangers_per_source_and_everyone_per_worker() {
        let now = Instant::now();
        let mut admission = Admission::new(&limits());
        let activities: Vec<Arc<Activity>> = (0..8).map(|_| Arc::new(Activity::new(now))).collect();
        let mut admit =
            |source: &str, id: usize| admission.admit(ip(source), id as u64, &activities[id]);
        assert_eq!(admit("192.0.2.1", 0), Ok(()));
        assert_eq!(admit("192.0.2.1", 1), Ok(()));
        assert_eq!(
            admit("192.0.2.1", 2),
            Err(Refusal::SourceFull),
            "two strangers from one source at most"
        );
        // One of them authenticates: it no longer counts against its source.
        activities[0].mark_valid(now);
        assert_eq!(admission.admit(ip("192.0.2.1"), 3, &activities[3]), Ok(()));
        assert_eq!(
            admission.admit(ip("192.0.2.2"), 4, &activities[4]),
            Err(Refusal::WorkerFull)
        );
        admission.release(ip("192.0.2.1"), 1);
        assert_eq!(
            admission.admit(ip("192.0.2.2"), 4, &activities[4]),
            Ok(()),
            "a closed connection frees its place"
        );
        // Releasing what is not open changes nothing.
        admission.release(ip("192.0.2.9"), 7);
        admission.release(ip("192.0.2.1"), 1);
        assert_eq!(admission.total, 3);
        assert!(
            admission.per_source.values().all(|open| !open.is_empty()),
            "no empty entries kept"
        );
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::7"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
    }

    #[test]
    fn a_connection_must_authenticate_in_time_then_stay_active() {
        let limits = limits();
        let accepted = Instant::now();
        let activity = Activity::new(accepted);
        assert_eq!(
            activity.deadline(&limits),
            (accepted + limits.auth_timeout, Expiry::Unauthenticated)
        );
        activity.mark_valid(accepted + Duration::from_millis(1200));
        assert_eq!(
            activity.deadline(&limits),
            (
                accepted + Duration::from_millis(1200) + limits.idle_timeout,
                Expiry::Idle
            )
        );
        // A frame handled late (an older time) never moves the deadline back.
        activity.mark_valid(accepted + Duration::from_millis(900));
        assert_eq!(
            activity.deadline(&limits).0,
            accepted + Duration::from_millis(1200) + limits.idle_timeout
        );
        // A frame at the very moment of acceptance still counts.
        let fresh = Activity::new(accepted);
        fresh.mark_valid(accepted);
        assert_eq!(
            fresh.deadline(&limits),
            (accepted + limits.idle_timeout, Expiry::Idle)
        );
    }
}
