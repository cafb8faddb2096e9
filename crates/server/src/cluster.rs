//! Several nodes (issue 16), first part: each node registers in Redis with
//! a heartbeat that expires, and learns which other nodes are alive. Rooms,
//! peers and media across nodes build on this (docs/CLUSTER.md).
//!
//! Keys (prefix `P`, `cluster.prefix`, default `simplesfu`):
//! - `P:node:<id>`: a hash (url, version, started_ms, heartbeat_ms, peers,
//!   rooms, transports, consumers) that expires `node_ttl` after the last
//!   heartbeat. The only truth about liveness.
//! - `P:nodes`: a sorted set of node ids, scored by their last heartbeat
//!   (ms), so that nodes can be listed (an expired key does not say whose
//!   it was).
//! - `P:room:<room>:node`: the node that serves the room, while it has
//!   peers in it (refreshed every heartbeat, expiring like the node's
//!   hash). Until rooms span nodes, a room lives on one node: `joinRoom`
//!   elsewhere is refused with `room_on_another_node`, naming the node.
//!
//! Every heartbeat (`heartbeat`, 1 s by default) writes the node's own hash
//! and refreshes its expiry in one transaction, then reads the others: a
//! node whose hash is gone has died (or left) and is dropped from the view
//! and from `P:nodes`. Redis unreachable or restarted: the node keeps
//! serving its own peers, keeps its last view of the others (it cannot tell
//! an empty Redis from dead nodes), says so in `/health`, and registers
//! again once Redis answers.

use crate::sfu::Sfu;
use redis::aio::ConnectionManager;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many other nodes are read per heartbeat: a bound on what a
/// Redis full of stale ids can cost.
pub const MAX_NODES: usize = 256;

/// What a node needs to take part in a cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    /// `redis://[:password@]host:port[/db]`; kept out of logs (it may hold
    /// a password).
    pub redis_url: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Where clients and other nodes reach this node's HTTP server.
    pub node_url: String,
    /// Key prefix, so that several clusters can share one Redis.
    pub prefix: String,
    pub heartbeat: Duration,
    /// How long a node's registration outlives its last heartbeat.
    pub node_ttl: Duration,
    /// The secret the nodes share: set, rooms span nodes (`crate::span`).
    pub secret: Option<String>,
    /// Peers this node takes before its rooms' new peers are pointed
    /// elsewhere (`None`: [`PEERS_PER_WORKER`] per media worker).
    pub capacity_peers: Option<u64>,
}

/// A node's default capacity per media worker, in peers (`capacity_peers`):
/// a viewer of one video and one audio stream costs a few hundred µs of a
/// core per second at 30 packets/s per stream (bench/RESULTS.md), so a
/// core carries a few hundred.
pub const PEERS_PER_WORKER: u64 = 250;

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("redis_url", &redacted_url(&self.redis_url))
            .field("node_id", &self.node_id)
            .field("node_url", &self.node_url)
            .field("prefix", &self.prefix)
            .field("heartbeat", &self.heartbeat)
            .field("node_ttl", &self.node_ttl)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("capacity_peers", &self.capacity_peers)
            .finish()
    }
}

/// `url` without the password, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A node as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub url: String,
    pub version: String,
    pub peers: u64,
    pub rooms: u64,
    pub transports: u64,
    pub consumers: u64,
    /// Peers it takes before its rooms grow onto other nodes (0: unknown,
    /// an older node).
    pub capacity: u64,
}

impl NodeInfo {
    /// Whether it takes more peers.
    fn has_room(&self) -> bool {
        self.capacity == 0 || self.peers < self.capacity
    }

    /// Its load as a fraction of its capacity (peers alone when unknown).
    fn load(&self) -> f64 {
        if self.capacity == 0 {
            self.peers as f64
        } else {
            self.peers as f64 / self.capacity as f64
        }
    }
}

/// This node's view of the cluster (in `/health` as `cluster`).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub node: String,
    /// Whether the last heartbeat reached Redis.
    pub redis: &'static str,
    /// Every live node, this one included, by id.
    pub nodes: Vec<NodeInfo>,
    /// Nodes found dead (or gone) since this node started.
    pub departed: u64,
    /// Rooms this node serves (holds the claim of).
    pub rooms_served: usize,
    /// Rooms across nodes (with a shared secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<crate::span::SpanStats>,
}

/// A running membership: its view, and its task.
pub struct Cluster {
    options: ClusterOptions,
    state: Arc<Mutex<State>>,
    manager: ConnectionManager,
    task: tokio::task::JoinHandle<()>,
    /// Rooms across nodes (with a shared secret).
    span: Option<Arc<crate::span::Span>>,
}

#[derive(Default)]
struct State {
    connected: bool,
    others: BTreeMap<String, NodeInfo>,
    me: Option<NodeInfo>,
    departed: u64,
    /// Rooms this node holds the claim of, with when a peer last claimed
    /// each here (`claim_room`).
    claimed: BTreeMap<String, std::time::Instant>,
}

/// Where a room is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomPlace {
    pub room: String,
    /// The node serving it, or the one suggested for it when none does.
    pub node: String,
    pub url: String,
    /// Whether `node` serves it now (false: a suggestion, the least loaded
    /// live node).
    pub served: bool,
}

impl Cluster {
    /// Start taking part: registers at once when Redis answers, and keeps
    /// trying (with backoff) when it does not. Fails only on a malformed
    /// URL.
    pub fn start(options: ClusterOptions, sfu: Sfu) -> anyhow::Result<Arc<Cluster>> {
        let client = redis::Client::open(options.redis_url.as_str()).map_err(|e| {
            anyhow::anyhow!(
                "cluster.redis_url {} is not a Redis URL ({e}); use redis://host:6379",
                redacted_url(&options.redis_url)
            )
        })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(1);
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
                anyhow::anyhow!(
                    "could not set up the Redis connection to {}: {e}",
                    redacted_url(&options.redis_url)
                )
            })?;
        let state = Arc::new(Mutex::new(State::default()));
        let started_ms = now_ms();
        let span = options.secret.as_ref().map(|secret| {
            let span = crate::span::Span::start(
                &sfu,
                client,
                manager.clone(),
                &options.node_id,
                &options.prefix,
                secret,
                options.heartbeat,
                started_ms,
            );
            sfu.set_span(span.clone());
            span
        });
        let task = tokio::spawn(heartbeats(
            options.clone(),
            manager.clone(),
            state.clone(),
            sfu.clone(),
            started_ms,
        ));
        let cluster = Arc::new(Cluster {
            options,
            state,
            manager,
            task,
            span,
        });
        sfu.set_cluster(cluster.clone());
        tracing::info!(node = %cluster.options.node_id, redis = %redacted_url(&cluster.options.redis_url), "cluster: joining");
        Ok(cluster)
    }

    pub fn view(&self) -> ClusterView {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut nodes: Vec<NodeInfo> = state.others.values().cloned().collect();
        nodes.extend(state.me.clone());
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        ClusterView {
            node: self.options.node_id.clone(),
            redis: if state.connected {
                "connected"
            } else {
                "unreachable"
            },
            nodes,
            departed: state.departed,
            rooms_served: state.claimed.len(),
            span: self.span.as_ref().map(|s| s.stats()),
        }
    }

    /// Claim `room` for this node before a peer joins it here: `Ok` when
    /// this node serves it (or now does), `Err` with the node that does.
    /// With Redis unreachable the room is served here (a cluster that
    /// cannot coordinate keeps serving rather than refuse everyone).
    pub async fn claim_room(&self, room: &str) -> Result<(), RoomPlace> {
        let keys = Keys::new(&self.options.prefix);
        let key = keys.room(room);
        let me = &self.options.node_id;
        let mut redis = self.manager.clone();
        let ttl_ms = self.options.node_ttl.as_millis() as u64;
        let outcome: redis::RedisResult<(Option<String>, Option<String>)> = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(me)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .get(&key)
            .query_async(&mut redis)
            .await;
        match outcome {
            // With a shared secret rooms span nodes: the claim only says
            // where a room began (a hint for placement), it refuses nobody.
            Ok((_, Some(holder))) if holder != *me && self.options.secret.is_none() => {
                let url = self.url_of(&holder).unwrap_or_default();
                Err(RoomPlace {
                    room: room.to_owned(),
                    node: holder,
                    url,
                    served: true,
                })
            }
            Ok(_) => {
                self.state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .claimed
                    .insert(room.to_owned(), std::time::Instant::now());
                Ok(())
            }
            Err(error) => {
                tracing::warn!(room = %room, %error, "cluster: Redis unreachable; the room is served here");
                Ok(())
            }
        }
    }

    /// Where `room` is served, or the least loaded live node when nowhere.
    pub async fn place_of(&self, room: &str) -> RoomPlace {
        let key = Keys::new(&self.options.prefix).room(room);
        let mut redis = self.manager.clone();
        let holder: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap_or(None);
        let view = self.view();
        let holder = holder.and_then(|h| view.nodes.iter().find(|n| n.id == h).cloned());
        // Rooms across nodes: a holder without room left gives way to the
        // least loaded node that has room, one with the room's peers first
        // (the room grows onto as few nodes as the load allows).
        let span = self.span.as_ref();
        if let Some(holder) = holder.filter(|h| span.is_none() || h.has_room()) {
            return RoomPlace {
                room: room.to_owned(),
                node: holder.id,
                url: holder.url,
                served: true,
            };
        }
        let with_room: Vec<String> = span.map(|s| s.nodes_in_room(room)).unwrap_or_default();
        let here = &view.node;
        let best = view.nodes.iter().min_by(|a, b| {
            let key = |n: &NodeInfo| {
                (
                    !n.has_room(),
                    !with_room.contains(&n.id),
                    n.load(),
                    n.id != *here,
                )
            };
            let (ka, kb) = (key(a), key(b));
            (ka.0, ka.1)
                .cmp(&(kb.0, kb.1))
                .then(ka.2.total_cmp(&kb.2))
                .then(ka.3.cmp(&kb.3))
        });
        match best {
            Some(n) => RoomPlace {
                room: room.to_owned(),
                node: n.id.clone(),
                url: n.url.clone(),
                served: with_room.contains(&n.id),
            },
            None => RoomPlace {
                room: room.to_owned(),
                node: self.options.node_id.clone(),
                url: self.options.node_url.clone(),
                served: false,
            },
        }
    }

    /// The URL of a live node (this one included).
    fn url_of(&self, node: &str) -> Option<String> {
        if node == self.options.node_id {
            return Some(self.options.node_url.clone());
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.others.get(node).map(|n| n.url.clone())
    }

    /// Leave on shutdown: stop the heartbeat and remove this node's keys,
    /// so that the others drop it now rather than when its key expires.
    pub async fn leave(&self) {
        self.task.abort();
        if let Some(span) = &self.span {
            span.leave().await;
        }
        let mut redis = self.manager.clone();
        let keys = Keys::new(&self.options.prefix);
        let claimed: Vec<String> = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.claimed.keys().map(|r| keys.room(r)).collect()
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(keys.node(&self.options.node_id))
            .ignore()
            .zrem(keys.nodes(), &self.options.node_id)
            .ignore();
        for key in &claimed {
            pipe.del(key).ignore();
        }
        let result: redis::RedisResult<()> = pipe.query_async(&mut redis).await;
        match result {
            Ok(()) => tracing::info!(node = %self.options.node_id, "cluster: left"),
            Err(error) => {
                tracing::warn!(node = %self.options.node_id, %error, "cluster: could not deregister; the others drop this node when its key expires")
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Keys<'a> {
    prefix: &'a str,
}

impl<'a> Keys<'a> {
    fn new(prefix: &'a str) -> Self {
        Keys { prefix }
    }
    fn node(&self, id: &str) -> String {
        format!("{}:node:{id}", self.prefix)
    }
    fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    fn room(&self, room: &str) -> String {
        format!("{}:room:{room}:node", self.prefix)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn heartbeats(
    options: ClusterOptions,
    mut redis: ConnectionManager,
    state: Arc<Mutex<State>>,
    sfu: Sfu,
    started_ms: u64,
) {
    let mut tick = tokio::time::interval(options.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After Redis comes back (or comes back empty, which a node notices
    // by its own hash missing), the others register again within a
    // heartbeat: until they had `node_ttl` to do so, none is taken for dead.
    let mut grace_until: Option<std::time::Instant> = None;
    let mut registered_once = false;
    let capacity = options
        .capacity_peers
        .unwrap_or_else(|| PEERS_PER_WORKER * sfu.stats().workers.max(1) as u64);
    loop {
        tick.tick().await;
        let counts = sfu.stats().signaling;
        let me = NodeInfo {
            id: options.node_id.clone(),
            url: options.node_url.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            peers: counts.peers as u64,
            rooms: counts.rooms as u64,
            transports: counts.transports as u64,
            consumers: counts.consumers as u64,
            capacity,
        };
        let outcome = beat(&options, &mut redis, &me, started_ms).await;
        if outcome.is_ok() {
            let claimed = state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .claimed
                .clone();
            // The rooms with peers here, and those a peer claimed just now
            // (its join may not be in the registry yet).
            let mut rooms: std::collections::BTreeSet<String> = sfu
                .registry()
                .room_ids()
                .iter()
                .map(|r| r.to_string())
                .collect();
            rooms.extend(
                claimed
                    .iter()
                    .filter(|(_, at)| at.elapsed() < 2 * options.heartbeat)
                    .map(|(r, _)| r.clone()),
            );
            let rooms: Vec<String> = rooms.into_iter().collect();
            let released: Vec<String> = claimed
                .keys()
                .filter(|r| rooms.binary_search(r).is_err())
                .cloned()
                .collect();
            match refresh_claims(&options, &mut redis, &rooms, &released).await {
                Ok(held) => {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    let now = std::time::Instant::now();
                    s.claimed = held
                        .into_iter()
                        .map(|r| {
                            let at = s.claimed.get(&r).copied().unwrap_or(now);
                            (r, at)
                        })
                        .collect();
                }
                Err(error) => tracing::debug!(%error, "cluster: room claims not refreshed"),
            }
        }
        let departed = {
            let mut departed = Vec::new();
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.me = Some(me);
            match outcome {
                Ok((alive, existed)) => {
                    if !s.connected {
                        tracing::info!(node = %options.node_id, "cluster: registered in Redis");
                    }
                    let now = std::time::Instant::now();
                    if registered_once && (!s.connected || !existed) {
                        grace_until = Some(now + options.node_ttl);
                    }
                    registered_once = true;
                    s.connected = true;
                    let in_grace = grace_until.is_some_and(|until| now < until);
                    let gone: Vec<String> = s
                        .others
                        .keys()
                        .filter(|id| !in_grace && !alive.contains_key(*id))
                        .cloned()
                        .collect();
                    for id in gone {
                        s.others.remove(&id);
                        s.departed += 1;
                        tracing::info!(node = %id, "cluster: node gone (left, or its heartbeat expired)");
                        departed.push(id);
                    }
                    for (id, info) in alive {
                        if !s.others.contains_key(&id) {
                            tracing::info!(node = %id, url = %info.url, "cluster: node joined");
                        }
                        s.others.insert(id, info);
                    }
                }
                Err(error) => {
                    if s.connected {
                        tracing::warn!(node = %options.node_id, %error, "cluster: Redis unreachable; serving local peers, retrying");
                    }
                    s.connected = false;
                }
            }
            departed
        };
        if let Some(span) = sfu.inner.span.get() {
            for id in departed {
                span.node_gone(&sfu, &id).await;
            }
        }
    }
}

/// One heartbeat: register (or refresh) this node, then read the others.
/// Nodes whose hash has expired are removed from `P:nodes` and left out.
/// Also says whether this node's hash was there before (false: first
/// registration, or Redis lost it).
async fn beat(
    options: &ClusterOptions,
    redis: &mut ConnectionManager,
    me: &NodeInfo,
    started_ms: u64,
) -> redis::RedisResult<(BTreeMap<String, NodeInfo>, bool)> {
    let keys = Keys::new(&options.prefix);
    let now = now_ms();
    let own = keys.node(&me.id);
    let ttl_ms = options.node_ttl.as_millis() as i64;
    let (existed,): (bool,) = redis::pipe()
        .atomic()
        .exists(&own)
        .hset_multiple(
            &own,
            &[
                ("url", me.url.clone()),
                ("version", me.version.clone()),
                ("started_ms", started_ms.to_string()),
                ("heartbeat_ms", now.to_string()),
                ("peers", me.peers.to_string()),
                ("rooms", me.rooms.to_string()),
                ("transports", me.transports.to_string()),
                ("consumers", me.consumers.to_string()),
                ("capacity", me.capacity.to_string()),
            ],
        )
        .ignore()
        .pexpire(&own, ttl_ms)
        .ignore()
        .zadd(keys.nodes(), &me.id, now)
        .ignore()
        .query_async(redis)
        .await?;
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys.nodes())
        .arg(0)
        .arg(MAX_NODES as i64)
        .query_async(redis)
        .await?;
    let others: Vec<String> = ids
        .into_iter()
        .filter(|id| *id != me.id && valid_node_id(id))
        .collect();
    let mut pipe = redis::pipe();
    for id in &others {
        pipe.hgetall(keys.node(id));
    }
    let hashes: Vec<BTreeMap<String, String>> = if others.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(redis).await?
    };
    let mut alive = BTreeMap::new();
    let mut dead = Vec::new();
    for (id, hash) in others.into_iter().zip(hashes) {
        if hash.is_empty() {
            dead.push(id);
            continue;
        }
        let number = |k: &str| hash.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        let text = |k: &str| {
            hash.get(k)
                .map(|v| v.chars().take(256).collect())
                .unwrap_or_default()
        };
        alive.insert(
            id.clone(),
            NodeInfo {
                url: text("url"),
                version: text("version"),
                peers: number("peers"),
                rooms: number("rooms"),
                transports: number("transports"),
                consumers: number("consumers"),
                capacity: number("capacity"),
                id,
            },
        );
    }
    if !dead.is_empty() {
        let _: () = redis::cmd("ZREM")
            .arg(keys.nodes())
            .arg(&dead)
            .query_async(redis)
            .await?;
    }
    Ok((alive, existed))
}

/// Keep the claims of `rooms`, those this node has peers in (claiming again
/// those that expired, e.g. after Redis restarted empty), and give up
/// `released`, which it has none in any more. Returns the rooms it holds now. A room another
/// node claimed meanwhile (Redis was away) stays served here for its
/// peers, unclaimed.
async fn refresh_claims(
    options: &ClusterOptions,
    redis: &mut ConnectionManager,
    rooms: &[String],
    released: &[String],
) -> redis::RedisResult<std::collections::BTreeSet<String>> {
    let keys = Keys::new(&options.prefix);
    let me = &options.node_id;
    let ttl_ms = options.node_ttl.as_millis() as u64;
    let mut held = std::collections::BTreeSet::new();
    if !rooms.is_empty() {
        let mut pipe = redis::pipe();
        for room in rooms {
            pipe.cmd("SET")
                .arg(keys.room(room))
                .arg(me)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .ignore()
                .get(keys.room(room));
        }
        let holders: Vec<Option<String>> = pipe.query_async(redis).await?;
        let mut refresh = redis::pipe();
        for (room, holder) in rooms.iter().zip(holders) {
            if holder.as_deref() == Some(me.as_str()) {
                refresh.pexpire(keys.room(room), ttl_ms as i64).ignore();
                held.insert(room.clone());
            } else {
                tracing::warn!(room = %room, holder = ?holder, "cluster: a room with peers here is claimed by another node (split while Redis was away); its peers here stay");
            }
        }
        let _: () = refresh.query_async(redis).await?;
    }
    for room in released {
        // Only our own claim: another node may hold it by now.
        let key = keys.room(room);
        let holder: Option<String> = redis::cmd("GET").arg(&key).query_async(redis).await?;
        if holder.as_deref() == Some(me.as_str()) {
            let _: () = redis::cmd("DEL").arg(&key).query_async(redis).await?;
        }
    }
    Ok(held)
}

/// A node id: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A node id for a node that was given none: this machine's host name and
/// a random suffix (a restarted node is a new node).
pub fn generated_node_id() -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(40)
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_printed_urls() {
        assert_eq!(
            redacted_url("redis://:hunter2@cache.internal:6379/0"),
            "redis://***@cache.internal:6379/0"
        );
        assert_eq!(redacted_url("redis://user:pw@h:1"), "redis://***@h:1");
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let options = ClusterOptions {
            redis_url: "redis://:hunter2@h:1".into(),
            node_id: "a".into(),
            node_url: "http://a".into(),
            prefix: "simplesfu".into(),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
            secret: Some("the-cluster-secret-0123456789abcdef".into()),
            capacity_peers: None,
        };
        let printed = format!("{options:?}");
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("the-cluster-secret"), "{printed}");
    }

    #[test]
    fn node_ids_are_short_and_plain() {
        assert!(valid_node_id("sfu-1.eu_west"));
        assert!(!valid_node_id(""));
        assert!(!valid_node_id("a:b"));
        assert!(!valid_node_id(&"a".repeat(65)));
        let id = generated_node_id();
        assert!(valid_node_id(&id), "{id}");
        assert_ne!(id, generated_node_id(), "a random suffix");
    }
}
