//! Rooms across nodes (issue 16): with `cluster.secret` set, the peers of
//! one room may be connected to different nodes and still see, hear and
//! consume each other (docs/CLUSTER.md "Rooms across nodes").
//!
//! - **What each node knows of the others**: every node publishes its
//!   rooms (each room's peers on this node, with their producers) on the
//!   Redis channel `P:bus` when they change and at every heartbeat; every
//!   node keeps the latest from each other node and mirrors, in its
//!   registry, the remote peers of the rooms it has peers in
//!   (`Registry::add_remote_peer`). Its own peers then get the usual pushes
//!   and automatic consumers, computed as for local peers. Applying a state
//!   twice changes nothing; an older one (by the sender's start time and
//!   sequence number) is ignored.
//! - **Requests between nodes** go to the Redis channel `P:inbox:<node>`,
//!   with an id, and are answered there within [`REQUEST_TIMEOUT`]: `link`
//!   (make the other end of a media link), `linkMe` (ask the higher node id
//!   to make one: only the higher one starts a link, so two nodes never make
//!   two), `relay` (relay a producer over the link).
//! - **Media**: a local peer consuming a remote peer's producer has it
//!   relayed once over the link between the two nodes (one per pair, on
//!   worker 0 of each: docs/ENGINE.md "Links between nodes"), then piped to
//!   the consumer's worker as usual. The link's ICE credentials derive from
//!   the secret; its DTLS fingerprints cross in signed messages.
//! - **Trust**: every message is `hex(HMAC-SHA256(secret, json)).json`; a
//!   message that is unsigned, badly signed, more than a minute old or
//!   larger than [`MAX_MESSAGE_BYTES`] is dropped and counted. Write access
//!   to Redis alone can neither join a room nor put itself in a link.
//! - **Failures**: a node that dies leaves the membership (cluster.rs) and
//!   its peers are removed everywhere (`peerDisconnection`,
//!   `consumerClosed`), its links closed; a node that stops says so first
//!   (`leaving`). Redis away: links and media go on, nothing new crosses
//!   until it is back (the listener reconnects every second, then every
//!   node publishes its state again).

use crate::cluster::valid_node_id;
use crate::registry::{DataProducerEntry, Effects, ProducerEntry, RemotePeer, WorkerIndex};
use crate::sfu::Sfu;
use aws_lc_rs::hmac;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use simplesfu_engine::{LinkOptions, RelayedDataProducer, RelayedProducer};
use simplesfu_proto::types::rtp_parameters::MediaKind;
use simplesfu_proto::{
    DataProducerId, ErrorCode, PeerId, ProducerId, RoomId, SignalingError, TransportId,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, Notify};

/// The worker that holds every link of this node (and the mirrors of
/// producers relayed here, piped on to other workers as needed).
pub const LINK_WORKER: WorkerIndex = 0;
/// How long a request to another node may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest message taken from Redis (a state of thousands of peers).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// A message older (or further in the future) than this is dropped.
const MAX_MESSAGE_AGE_MS: u64 = 60_000;
/// Requests waiting for an answer at once, at most.
const MAX_PENDING: usize = 1024;
/// A link whose far end sent no ICE check for this long is dead (RFC 7675
/// consent): the end that waits closes it.
const LINK_CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the waiting ends of links are checked.
const LINK_SWEEP: Duration = Duration::from_secs(5);

/// A producer as the other nodes see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProducerWire {
    id: ProducerId,
    kind: MediaKind,
    label: String,
    broadcast: bool,
    paused: bool,
    spatial_layers: u8,
}

/// A data producer as the other nodes see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataProducerWire {
    id: DataProducerId,
    app_data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerWire {
    peer: PeerId,
    producers: Vec<ProducerWire>,
    #[serde(default)]
    data_producers: Vec<DataProducerWire>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RoomWire {
    room: RoomId,
    peers: Vec<PeerWire>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    from: String,
    /// When the sender started: a restarted node's sequence starts again.
    started_ms: u64,
    sent_ms: u64,
    #[serde(flatten)]
    body: Body,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Body {
    State {
        seq: u64,
        rooms: Vec<RoomWire>,
    },
    Leaving,
    Request {
        id: u64,
        ask: Ask,
    },
    Reply {
        id: u64,
        #[serde(default)]
        ok: Option<Value>,
        #[serde(default)]
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "camelCase")]
enum Ask {
    /// Make the connecting end of a link to the sender, which waits at
    /// `address` with `fingerprint`.
    Link {
        fingerprint: String,
        address: SocketAddr,
    },
    /// Make a link to the sender (it has the lower node id).
    LinkMe,
    /// Relay this producer of yours to the sender.
    Relay { producer: ProducerId },
    /// Relay this data producer of yours to the sender.
    #[serde(rename_all = "camelCase")]
    RelayData { data_producer: DataProducerId },
}

struct Known {
    started_ms: u64,
    seq: u64,
    rooms: Vec<RoomWire>,
}

#[derive(Default)]
struct State {
    seq: u64,
    published: Option<Vec<RoomWire>>,
    nodes: HashMap<Arc<str>, Known>,
    links: HashMap<Arc<str>, TransportId>,
    /// Producers relayed here, with their node.
    relayed: HashMap<ProducerId, Arc<str>>,
    /// Data producers relayed here, with their node.
    relayed_data: HashMap<DataProducerId, Arc<str>>,
    /// The links whose end here waits (ICE-lite: it never times out by
    /// itself), with when they were made: see [`Span::sweep_links`].
    waiting: HashMap<TransportId, std::time::Instant>,
}

/// Counters for /metrics and /health.
#[derive(Debug, Default, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanStats {
    /// Links to other nodes.
    pub links: usize,
    /// Producers of other nodes relayed here.
    pub relayed_in: usize,
    /// Data producers of other nodes relayed here.
    pub relayed_data_in: usize,
    /// Messages from Redis dropped: unsigned, signed with another secret,
    /// stale or too large.
    pub messages_dropped: u64,
}

/// This node's part in rooms across nodes.
pub struct Span {
    node: Arc<str>,
    key: hmac::Key,
    secret: Vec<u8>,
    prefix: String,
    started_ms: u64,
    heartbeat: Duration,
    link_ip: Option<IpAddr>,
    manager: ConnectionManager,
    state: Mutex<State>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    changed: Notify,
    link_locks: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Span {
    /// Start: the listener (Redis pub/sub, reconnecting) and the publisher
    /// of this node's state. `link_ip`: the address other nodes reach this
    /// node's worker 0 at (its first announced address).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        sfu: &Sfu,
        client: redis::Client,
        manager: ConnectionManager,
        node: &str,
        prefix: &str,
        secret: &str,
        heartbeat: Duration,
        started_ms: u64,
    ) -> Arc<Span> {
        let span = Arc::new(Span {
            node: node.into(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            secret: secret.as_bytes().to_vec(),
            prefix: prefix.to_owned(),
            started_ms,
            heartbeat,
            link_ip: sfu.link_ip(),
            manager,
            state: Mutex::new(State::default()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            changed: Notify::new(),
            link_locks: Mutex::new(HashMap::new()),
        });
        tokio::spawn(listen(Arc::downgrade(&span), client, sfu.clone()));
        tokio::spawn(publish_states(Arc::downgrade(&span), sfu.clone()));
        tokio::spawn(sweep_links(Arc::downgrade(&span), sfu.clone()));
        span
    }

    fn bus(&self) -> String {
        format!("{}:bus", self.prefix)
    }

    fn inbox(&self, node: &str) -> String {
        format!("{}:inbox:{node}", self.prefix)
    }

    /// The nodes with peers in `room`, this one included.
    pub fn nodes_in_room(&self, room: &str) -> Vec<String> {
        let state = lock(&self.state);
        let mut nodes: Vec<String> = state
            .nodes
            .iter()
            .filter(|(_, k)| k.rooms.iter().any(|r| r.room.as_str() == room))
            .map(|(n, _)| n.to_string())
            .collect();
        if state
            .published
            .as_ref()
            .is_some_and(|rooms| rooms.iter().any(|r| r.room.as_str() == room))
        {
            nodes.push(self.node.to_string());
        }
        nodes
    }

    /// Something in this node's rooms changed: publish soon.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    pub fn stats(&self) -> SpanStats {
        let state = lock(&self.state);
        SpanStats {
            links: state.links.len(),
            relayed_in: state.relayed.len(),
            relayed_data_in: state.relayed_data.len(),
            messages_dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// The ICE credentials of `owner`'s end of the link between `owner`
    /// and `other`: both nodes compute both from the secret.
    fn link_creds(&self, owner: &str, other: &str) -> (String, String) {
        let derive = |what: &str| {
            let tag = hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, &self.secret),
                format!("simplesfu link {what} {owner} {other}").as_bytes(),
            );
            hex(tag.as_ref())
        };
        (
            derive("ufrag")[..16].to_owned(),
            derive("password")[..32].to_owned(),
        )
    }

    fn seal(&self, body: Body) -> Option<String> {
        let envelope = Envelope {
            from: self.node.to_string(),
            started_ms: self.started_ms,
            sent_ms: now_ms(),
            body,
        };
        let json = serde_json::to_string(&envelope).ok()?;
        let tag = hmac::sign(&self.key, json.as_bytes());
        Some(format!("{}.{json}", hex(tag.as_ref())))
    }

    /// A message from Redis, if it is signed with the secret, fresh and
    /// from another node.
    fn open(&self, wire: &[u8]) -> Option<Envelope> {
        if wire.len() > MAX_MESSAGE_BYTES {
            return None;
        }
        let text = std::str::from_utf8(wire).ok()?;
        let (tag, json) = text.split_once('.')?;
        let tag = unhex(tag).filter(|t| t.len() == 32)?;
        hmac::verify(&self.key, json.as_bytes(), &tag).ok()?;
        let envelope: Envelope = serde_json::from_str(json).ok()?;
        let fresh = now_ms().abs_diff(envelope.sent_ms) <= MAX_MESSAGE_AGE_MS;
        (fresh && envelope.from != *self.node && valid_node_id(&envelope.from)).then_some(envelope)
    }

    async fn publish(&self, channel: &str, body: Body) -> Result<u64, String> {
        let wire = self
            .seal(body)
            .ok_or_else(|| "message not serializable".to_owned())?;
        let mut redis = self.manager.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(wire)
            .query_async(&mut redis)
            .await
            .map_err(|e| format!("Redis: {e}"))
    }

    /// Ask `node` and wait for its answer.
    async fn request(&self, node: &str, ask: Ask) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= MAX_PENDING {
                return Err("too many requests to other nodes at once".into());
            }
            pending.insert(id, tx);
        }
        let sent = self
            .publish(&self.inbox(node), Body::Request { id, ask })
            .await;
        let outcome = match sent {
            Ok(0) => Err(format!("node {node} is not listening")),
            Err(e) => Err(e),
            Ok(_) => match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
                Ok(Ok(answer)) => answer,
                _ => Err(format!(
                    "node {node} did not answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )),
            },
        };
        lock(&self.pending).remove(&id);
        outcome
    }

    async fn on_wire(self: Arc<Self>, sfu: Sfu, wire: Vec<u8>) {
        let Some(envelope) = self.open(&wire) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                bytes = wire.len(),
                "span: message dropped (unsigned, wrong secret, stale or too large)"
            );
            return;
        };
        let from: Arc<str> = envelope.from.as_str().into();
        match envelope.body {
            Body::State { seq, rooms } => {
                let restarted_link =
                    {
                        let mut state = lock(&self.state);
                        let newer = state
                            .nodes
                            .get(&from)
                            .is_none_or(|k| (envelope.started_ms, seq) > (k.started_ms, k.seq));
                        if !newer {
                            return;
                        }
                        if state.nodes.get(&from).is_some_and(|k| {
                            k.rooms == rooms && k.started_ms == envelope.started_ms
                        }) {
                            if let Some(k) = state.nodes.get_mut(&from) {
                                k.seq = seq;
                            }
                            return;
                        }
                        // The node restarted under the same id (faster than
                        // the membership notices): the link to its old process
                        // is dead, and the end here may be the one that waits.
                        let restarted = state
                            .nodes
                            .get(&from)
                            .is_some_and(|k| k.started_ms != envelope.started_ms);
                        state.nodes.insert(
                            from.clone(),
                            Known {
                                started_ms: envelope.started_ms,
                                seq,
                                rooms,
                            },
                        );
                        restarted.then(|| state.links.get(&from).copied()).flatten()
                    };
                if let Some(link) = restarted_link {
                    tracing::info!(node = %from, link = %link, "span: node restarted; the link to its old process closes");
                    self.close_link(&sfu, link).await;
                }
                self.reconcile(&sfu).await;
            }
            Body::Leaving => self.node_gone(&sfu, &from).await,
            Body::Request { id, ask } => {
                let answer = self.answer(&sfu, &from, ask).await;
                let body = match answer {
                    Ok(ok) => Body::Reply {
                        id,
                        ok: Some(ok),
                        error: None,
                    },
                    Err(error) => Body::Reply {
                        id,
                        ok: None,
                        error: Some(error),
                    },
                };
                if let Err(error) = self.publish(&self.inbox(&from), body).await {
                    tracing::debug!(node = %from, %error, "span: reply not sent");
                }
            }
            Body::Reply { id, ok, error } => {
                if let Some(tx) = lock(&self.pending).remove(&id) {
                    // `ok: null` (an answer with nothing to say) arrives as None.
                    let _ = tx.send(match error {
                        Some(error) => Err(error),
                        None => Ok(ok.unwrap_or(Value::Null)),
                    });
                }
            }
        }
    }

    async fn answer(&self, sfu: &Sfu, from: &Arc<str>, ask: Ask) -> Result<Value, String> {
        match ask {
            Ask::Link {
                fingerprint,
                address,
            } => {
                let worker = sfu.worker(LINK_WORKER).map_err(|e| e.message)?.clone();
                let (local_ufrag, local_password) = self.link_creds(&self.node, from);
                let (remote_ufrag, remote_password) = self.link_creds(from, &self.node);
                // A new link from a node replaces the one it had (it lost it).
                let old = lock(&self.state).links.remove(from);
                if let Some(old) = old {
                    let _ = worker.close_transport(old).await;
                }
                let info = worker
                    .create_link(LinkOptions {
                        local_ufrag,
                        local_password,
                        remote_ufrag,
                        remote_password,
                        connect_to: Some(address),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if let Err(e) = worker.connect_link(info.id, fingerprint).await {
                    let _ = worker.close_transport(info.id).await;
                    return Err(e.to_string());
                }
                lock(&self.state).links.insert(from.clone(), info.id);
                tracing::info!(node = %from, %address, link = %info.id, "span: link made");
                Ok(serde_json::json!({ "fingerprint": info.fingerprint }))
            }
            // The asker has no link with this node: one this node still
            // holds is dead on the far side, so a new one replaces it.
            Ask::LinkMe => self.ensure_link(sfu, from, true).await.map(|_| Value::Null),
            Ask::Relay { producer } => {
                let link = self.link_with(from)?;
                let worker = sfu
                    .registry()
                    .local_producer_worker(producer)
                    .ok_or_else(|| format!("no producer {producer} on node {}", self.node))?;
                let link_worker = sfu.worker(LINK_WORKER).map_err(|e| e.message)?;
                if worker != LINK_WORKER {
                    let origin = sfu.worker(worker).map_err(|e| e.message)?;
                    origin
                        .pipe_producer(producer, link_worker)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let relayed = link_worker
                    .relay_producer(link, producer)
                    .await
                    .map_err(|e| e.to_string())?;
                serde_json::to_value(relayed).map_err(|e| e.to_string())
            }
            Ask::RelayData { data_producer } => {
                let link = self.link_with(from)?;
                let worker = sfu
                    .registry()
                    .local_data_producer_worker(data_producer)
                    .ok_or_else(|| {
                        format!("no data producer {data_producer} on node {}", self.node)
                    })?;
                let link_worker = sfu.worker(LINK_WORKER).map_err(|e| e.message)?;
                if worker != LINK_WORKER {
                    let origin = sfu.worker(worker).map_err(|e| e.message)?;
                    origin
                        .pipe_data_producer(data_producer, link_worker)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let relayed = link_worker
                    .relay_data_producer(link, data_producer)
                    .await
                    .map_err(|e| e.to_string())?;
                serde_json::to_value(relayed).map_err(|e| e.to_string())
            }
        }
    }

    /// The link with `node`, made if there is none (or, with `replace`,
    /// made anew).
    async fn ensure_link(
        &self,
        sfu: &Sfu,
        node: &Arc<str>,
        replace: bool,
    ) -> Result<TransportId, String> {
        let node_lock = lock(&self.link_locks)
            .entry(node.clone())
            .or_default()
            .clone();
        let _turn = node_lock.lock().await;
        let existing = lock(&self.state).links.get(node).copied();
        match existing {
            Some(link) if !replace => return Ok(link),
            Some(link) => self.close_link(sfu, link).await,
            None => {}
        }
        if *self.node < **node {
            // The higher node id makes the link; its `link` request reaches
            // this node (and is answered) before its answer to this.
            self.request(node, Ask::LinkMe).await?;
            return lock(&self.state)
                .links
                .get(node)
                .copied()
                .ok_or_else(|| format!("node {node} did not make the link"));
        }
        let worker = sfu.worker(LINK_WORKER).map_err(|e| e.message)?.clone();
        let ip = self
            .link_ip
            .ok_or("this node announces no address for links")?;
        let address = SocketAddr::new(ip, worker.local_addr().port());
        let (local_ufrag, local_password) = self.link_creds(&self.node, node);
        let (remote_ufrag, remote_password) = self.link_creds(node, &self.node);
        let info = worker
            .create_link(LinkOptions {
                local_ufrag,
                local_password,
                remote_ufrag,
                remote_password,
                connect_to: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        let answer = self
            .request(
                node,
                Ask::Link {
                    fingerprint: info.fingerprint.clone(),
                    address,
                },
            )
            .await;
        let fingerprint = answer.and_then(|v| {
            v.get("fingerprint")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| "no fingerprint in the answer".to_owned())
        });
        let connected = match fingerprint {
            Ok(fp) => worker
                .connect_link(info.id, fp)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = connected {
            let _ = worker.close_transport(info.id).await;
            return Err(e);
        }
        {
            let mut state = lock(&self.state);
            state.links.insert(node.clone(), info.id);
            state.waiting.insert(info.id, std::time::Instant::now());
        }
        tracing::info!(node = %node, link = %info.id, "span: link made");
        Ok(info.id)
    }

    /// Close the links whose end here waits and whose far end went silent
    /// (no ICE check for [`LINK_CONSENT_TIMEOUT`], or none since it was
    /// made that long ago): a partition between the nodes, or a far
    /// process that died while its node id lives on in the membership.
    async fn sweep_links(&self, sfu: &Sfu) {
        let Ok(worker) = sfu.worker(LINK_WORKER).cloned() else {
            return;
        };
        let waiting: Vec<(TransportId, std::time::Instant)> = lock(&self.state)
            .waiting
            .iter()
            .map(|(l, t)| (*l, *t))
            .collect();
        let now = std::time::Instant::now();
        for (link, made) in waiting {
            let silent = match worker.last_consent(link).await {
                Ok(Some(at)) => now.saturating_duration_since(at) > LINK_CONSENT_TIMEOUT,
                Ok(None) => now.saturating_duration_since(made) > LINK_CONSENT_TIMEOUT,
                Err(_) => true,
            };
            if silent {
                tracing::info!(link = %link, "span: link closed: the far node sent no ICE check for 30 s");
                self.close_link(sfu, link).await;
            }
        }
    }

    /// The link with `node`, for its `relay` and `relayData` requests.
    fn link_with(&self, node: &str) -> Result<TransportId, String> {
        lock(&self.state)
            .links
            .get(node)
            .copied()
            .ok_or_else(|| format!("no link with node {node}"))
    }

    /// The link with `node` (made if need be) and `node`'s description of
    /// what `ask` relays over it.
    async fn ask_relay(
        &self,
        sfu: &Sfu,
        node: &Arc<str>,
        ask: Ask,
    ) -> Result<(TransportId, Value), String> {
        let link = self.ensure_link(sfu, node, false).await?;
        Ok((link, self.request(node, ask).await?))
    }

    /// Make `producer` of a peer on `node` consumable on the link worker.
    pub async fn ensure_relay(
        &self,
        sfu: &Sfu,
        node: &Arc<str>,
        producer: ProducerId,
    ) -> Result<(), SignalingError> {
        if lock(&self.state).relayed.contains_key(&producer) {
            return Ok(());
        }
        let what = format!("producer {producer}");
        let unreachable = |why: String| relay_failed(&what, node, why);
        let (link, value) = self
            .ask_relay(sfu, node, Ask::Relay { producer })
            .await
            .map_err(unreachable)?;
        let relayed: RelayedProducer =
            serde_json::from_value(value).map_err(|e| unreachable(e.to_string()))?;
        sfu.worker(LINK_WORKER)?
            .accept_relayed_producer(link, relayed)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        lock(&self.state).relayed.insert(producer, node.clone());
        Ok(())
    }

    /// Make data producer `id` of a peer on `node` consumable on the link
    /// worker.
    pub async fn ensure_data_relay(
        &self,
        sfu: &Sfu,
        node: &Arc<str>,
        id: DataProducerId,
    ) -> Result<(), SignalingError> {
        if lock(&self.state).relayed_data.contains_key(&id) {
            return Ok(());
        }
        let what = format!("data producer {id}");
        let unreachable = |why: String| relay_failed(&what, node, why);
        let (link, value) = self
            .ask_relay(sfu, node, Ask::RelayData { data_producer: id })
            .await
            .map_err(unreachable)?;
        let relayed: RelayedDataProducer =
            serde_json::from_value(value).map_err(|e| unreachable(e.to_string()))?;
        if relayed.id != id {
            return Err(unreachable(format!("it described {}", relayed.id)));
        }
        sfu.worker(LINK_WORKER)?
            .accept_relayed_data_producer(link, relayed)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        lock(&self.state).relayed_data.insert(id, node.clone());
        Ok(())
    }

    /// The far node closed a producer it relayed here.
    pub fn relay_closed(&self, producer: ProducerId) {
        lock(&self.state).relayed.remove(&producer);
    }

    /// The far node closed a data producer it relayed here.
    pub fn data_relay_closed(&self, id: DataProducerId) {
        lock(&self.state).relayed_data.remove(&id);
    }

    /// A link died in the engine (or was closed): forget it and what it
    /// brought. The node it went to, if it was one of this node's links.
    pub fn link_closed(&self, link: TransportId) -> Option<Arc<str>> {
        let mut state = lock(&self.state);
        state.waiting.remove(&link);
        let node = state
            .links
            .iter()
            .find(|(_, l)| **l == link)
            .map(|(n, _)| n.clone())?;
        state.links.remove(&node);
        state.relayed.retain(|_, n| *n != node);
        state.relayed_data.retain(|_, n| *n != node);
        Some(node)
    }

    /// Close a link of this node: what it brought closes, and the local
    /// consumers of that are taken back (see `Registry::link_gone`).
    async fn close_link(&self, sfu: &Sfu, link: TransportId) {
        let node = self.link_closed(link);
        let Ok(worker) = sfu.worker(LINK_WORKER) else {
            return;
        };
        let _ = worker.close_transport(link).await;
        if let Some(node) = node {
            sfu.link_gone(&node).await;
        }
    }

    /// `node` left or died: its peers leave every room here, its link closes.
    pub async fn node_gone(&self, sfu: &Sfu, node: &str) {
        let link = {
            let mut state = lock(&self.state);
            state.nodes.remove(node);
            state.relayed.retain(|_, n| &**n != node);
            state.relayed_data.retain(|_, n| &**n != node);
            let link = state.links.remove(node);
            if let Some(link) = link {
                state.waiting.remove(&link);
            }
            link
        };
        tracing::info!(node = %node, "span: node gone; its peers leave");
        self.reconcile(sfu).await;
        if let (Some(link), Ok(worker)) = (link, sfu.worker(LINK_WORKER)) {
            let _ = worker.close_transport(link).await;
        }
    }

    /// Say goodbye: the others drop this node's peers now.
    pub async fn leave(&self) {
        let _ = self.publish(&self.bus(), Body::Leaving).await;
    }

    /// Make the registry's remote peers what the other nodes said, for the
    /// rooms with peers here.
    pub async fn reconcile(&self, sfu: &Sfu) {
        let desired: BTreeMap<PeerId, RemotePeer> = {
            let state = lock(&self.state);
            let local: std::collections::HashSet<RoomId> =
                sfu.registry().room_ids().into_iter().collect();
            let mut desired = BTreeMap::new();
            for (node, known) in &state.nodes {
                for room in known.rooms.iter().filter(|r| local.contains(&r.room)) {
                    for p in &room.peers {
                        let producers = p
                            .producers
                            .iter()
                            .map(|w| {
                                (
                                    w.id,
                                    ProducerEntry {
                                        kind: w.kind,
                                        label: w.label.clone(),
                                        broadcast: w.broadcast,
                                        paused: w.paused,
                                        spatial_layers: w.spatial_layers,
                                    },
                                )
                            })
                            .collect();
                        let data_producers = p
                            .data_producers
                            .iter()
                            .map(|d| {
                                (
                                    d.id,
                                    DataProducerEntry {
                                        app_data: d.app_data.clone(),
                                    },
                                )
                            })
                            .collect();
                        desired.insert(
                            p.peer.clone(),
                            RemotePeer {
                                node: node.clone(),
                                room: room.room.clone(),
                                producers,
                                data_producers,
                            },
                        );
                    }
                }
            }
            desired
        };
        let (effects, targets) = {
            let mut registry = sfu.registry();
            let current = registry.remote_peers();
            let mut effects = Effects::default();
            let mut targets = Vec::new();
            for (peer, cur) in &current {
                let same = desired
                    .get(peer)
                    .is_some_and(|want| want.node == cur.node && want.room == cur.room);
                if !same {
                    effects.merge(registry.remove_remote_peer(peer));
                }
            }
            for (peer, want) in desired {
                let (had, had_data) = match current.get(&peer) {
                    Some(cur) if cur.node == want.node && cur.room == want.room => {
                        (cur.producers.clone(), cur.data_producers.clone())
                    }
                    _ => {
                        match registry.add_remote_peer(
                            &peer,
                            want.node.clone(),
                            LINK_WORKER,
                            &want.room,
                        ) {
                            Ok(e) => effects.merge(e),
                            Err(error) => {
                                tracing::warn!(peer = %peer, node = %want.node, error = %error.message, "span: remote peer not mirrored");
                                continue;
                            }
                        }
                        (BTreeMap::new(), BTreeMap::new())
                    }
                };
                for id in had_data
                    .keys()
                    .filter(|id| !want.data_producers.contains_key(id))
                {
                    if let Ok(e) = registry.remove_remote_data_producer(&peer, *id) {
                        effects.merge(e);
                    }
                }
                for (id, d) in &want.data_producers {
                    if !had_data.contains_key(id) {
                        if let Ok(e) = registry.add_remote_data_producer(&peer, *id, d.clone()) {
                            effects.merge(e);
                        }
                    }
                }
                for id in had.keys().filter(|id| !want.producers.contains_key(id)) {
                    if let Ok(e) = registry.remove_remote_producer(&peer, *id) {
                        effects.merge(e);
                    }
                }
                for (id, p) in &want.producers {
                    match had.get(id) {
                        None => {
                            if let Ok((e, t)) = registry.add_remote_producer(&peer, *id, p.clone())
                            {
                                effects.merge(e);
                                targets.extend(t);
                            }
                        }
                        Some(old) if old.paused != p.paused => {
                            if let Ok(e) = registry.set_producer_paused(&peer, *id, p.paused) {
                                effects.merge(e);
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
            (effects, targets)
        };
        sfu.apply(effects).await;
        sfu.auto_consume(targets);
    }
}

/// What a consumer across nodes is refused with when `what` (a producer or
/// data producer) could not be relayed from `node`.
fn relay_failed(what: &str, node: &str, why: String) -> SignalingError {
    SignalingError::new(
        ErrorCode::InternalError,
        format!("{what} is on node {node}, which could not relay it here ({why}); try again"),
    )
}

/// This node's rooms as the others see them.
fn wire_rooms(sfu: &Sfu) -> Vec<RoomWire> {
    sfu.registry()
        .local_rooms()
        .into_iter()
        .map(|(room, peers)| RoomWire {
            room,
            peers: peers
                .into_iter()
                .map(|local| PeerWire {
                    peer: local.peer,
                    data_producers: local
                        .data_producers
                        .into_iter()
                        .map(|(id, d)| DataProducerWire {
                            id,
                            app_data: d.app_data,
                        })
                        .collect(),
                    producers: local
                        .producers
                        .into_iter()
                        .map(|(id, p)| ProducerWire {
                            id,
                            kind: p.kind,
                            label: p.label,
                            broadcast: p.broadcast,
                            paused: p.paused,
                            spatial_layers: p.spatial_layers,
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// Check the waiting ends of links every [`LINK_SWEEP`] while the span lives.
async fn sweep_links(span: Weak<Span>, sfu: Sfu) {
    let mut ticker = tokio::time::interval(LINK_SWEEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(s) = span.upgrade() else { return };
        s.sweep_links(&sfu).await;
    }
}

/// Publish this node's state when it changes (a few ms later, so a burst
/// is one message) and at every heartbeat (for nodes that came later or
/// missed one).
async fn publish_states(span: Weak<Span>, sfu: Sfu) {
    let mut last_full = tokio::time::Instant::now();
    loop {
        let Some(s) = span.upgrade() else { return };
        let heartbeat = s.heartbeat;
        let changed = tokio::select! {
            _ = s.changed.notified() => true,
            _ = tokio::time::sleep(heartbeat) => false,
        };
        if changed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rooms = wire_rooms(&sfu);
        let due = {
            let state = lock(&s.state);
            state.published.as_ref() != Some(&rooms) || last_full.elapsed() >= heartbeat
        };
        if !due {
            continue;
        }
        let seq = {
            let mut state = lock(&s.state);
            state.seq += 1;
            state.seq
        };
        match s
            .publish(
                &s.bus(),
                Body::State {
                    seq,
                    rooms: rooms.clone(),
                },
            )
            .await
        {
            Ok(_) => {
                lock(&s.state).published = Some(rooms);
                last_full = tokio::time::Instant::now();
            }
            Err(error) => tracing::debug!(%error, "span: state not published"),
        }
    }
}

/// Listen on the bus and this node's inbox; reconnect when Redis goes.
async fn listen(span: Weak<Span>, client: redis::Client, sfu: Sfu) {
    loop {
        let Some(s) = span.upgrade() else { return };
        let (bus, inbox) = (s.bus(), s.inbox(&s.node));
        drop(s);
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&bus).await.is_ok() && pubsub.subscribe(&inbox).await.is_ok() {
                    tracing::info!(channel = %bus, "span: listening");
                    if let Some(s) = span.upgrade() {
                        // Our state again, for nodes that missed it while we were away.
                        s.changed();
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Some(s) = span.upgrade() else { return };
                        let wire = message.get_payload_bytes().to_vec();
                        // Requests may wait on other requests: never here.
                        tokio::spawn(s.on_wire(sfu.clone(), wire));
                    }
                    tracing::warn!("span: Redis subscription lost; reconnecting");
                }
            }
            Err(error) => tracing::debug!(%error, "span: Redis subscription failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_odd_or_foreign_text() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
