//! WHIP ingest (RFC 9725): a publisher that speaks HTTP and SDP (OBS,
//! GStreamer, a hardware encoder, a plain `RTCPeerConnection`) joins a room
//! as a peer without a socket. Its offer becomes one producer per m-line
//! through the same requests a mediasoup-client peer makes (`joinRoom`,
//! `createWebRtcTransport`, `connectWebRtcTransport`, `produce`), so the
//! room consumes it like any other peer and every rule (tokens, room limits,
//! producer checks) applies unchanged.
//!
//! Endpoints (docs/PROTOCOL.md "WHIP"):
//! - `POST /whip/<room>[?label=<label>]`, `Content-Type: application/sdp`,
//!   `Authorization: Bearer <join token>` when tokens are on: `201 Created`
//!   with the answer, `Location` of the session and an `ETag`;
//! - `DELETE <session>`: the publisher leaves;
//! - `PATCH <session>` with `application/trickle-ice-sdpfrag`: trickled
//!   candidates are acknowledged (`204`; an ICE-lite server learns the
//!   client's addresses from its checks), new ICE credentials restart ICE
//!   (`200` with ours);
//! - `OPTIONS`: `Accept-Post` (CORS preflights are answered by the CORS layer).
//!
//! A session lives while its client keeps ICE consent (a valid binding
//! request at least every [`CONSENT_TIMEOUT`]); one that never connects is
//! gone after the same time.

pub(crate) mod sdp;

use crate::auth::{require, require_room, Right};
use crate::errors::from_engine;
use crate::registry::WorkerIndex;
use crate::sfu::Sfu;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use simplesfu_engine::{Direction, EngineError, WebRtcTransportInfo, WebRtcTransportOptions};
use simplesfu_proto::types::rtp_parameters::{MediaKind, RtpCapabilitiesFinalized};
use simplesfu_proto::{ErrorCode, PeerId, Request, RoomId, SignalingError, TransportId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A session whose client sent no valid ICE check for this long is ended
/// (RFC 7675 consent: clients check every 5 s or so).
pub(crate) const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often sessions are checked for consent.
const CONSENT_SWEEP: Duration = Duration::from_secs(5);
/// Longest label accepted from `?label=`.
const MAX_LABEL: usize = 64;

/// The client's address, when the server's own listener (not an
/// application's) accepted the connection: for the per-address limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub IpAddr);

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// WHIP: the client publishes.
    Whip,
    /// WHEP: the client plays.
    Whep,
}

impl Endpoint {
    const fn of(whep: bool) -> Self {
        if whep {
            Self::Whep
        } else {
            Self::Whip
        }
    }
}

impl Endpoint {
    fn right(self) -> Right {
        match self {
            Endpoint::Whip => Right::Publish,
            Endpoint::Whep => Right::Subscribe,
        }
    }
}

/// One WHIP publisher or WHEP player.
#[derive(Debug)]
pub(crate) struct WhipSession {
    endpoint: Endpoint,
    pub peer: PeerId,
    pub room: RoomId,
    worker: WorkerIndex,
    transport_id: TransportId,
    transport: WebRtcTransportInfo,
    etag: String,
    created: Instant,
    ip: Option<IpAddr>,
    /// The answer's first m-line and mid, for ICE restart answers.
    first_media: Option<(String, String)>,
    /// The client's ICE ufrag as last offered.
    client_ufrag: String,
}

/// What [`Sfu::open_session`] keeps of a session set up.
struct NewSession {
    peer: PeerId,
    room: RoomId,
    worker: WorkerIndex,
    transport: WebRtcTransportInfo,
    ip: Option<IpAddr>,
    first_media: Option<(String, String)>,
    client_ufrag: String,
}

/// Every WHIP session of the server, by session id.
#[derive(Debug, Default)]
pub(crate) struct WhipSessions {
    sessions: HashMap<String, WhipSession>,
}

impl WhipSessions {
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    fn count_from(&self, ip: IpAddr) -> usize {
        self.sessions.values().filter(|s| s.ip == Some(ip)).count()
    }

    /// Forget `peer`'s session, if it is a WHIP publisher (the peer is
    /// being removed).
    pub(crate) fn remove_peer(&mut self, peer: &PeerId) {
        self.sessions.retain(|_, s| &s.peer != peer);
    }
}

/// A refused WHIP request: the status and a message that says what to do.
#[derive(Debug)]
pub(crate) struct WhipError {
    status: StatusCode,
    message: String,
}

impl WhipError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        WhipError {
            status,
            message: message.into(),
        }
    }

    /// A signaling error of one of the steps, as HTTP.
    fn from_signaling(step: &str, e: SignalingError) -> Self {
        let status = match e.code {
            ErrorCode::Forbidden | ErrorCode::LimitReached => StatusCode::FORBIDDEN,
            ErrorCode::InvalidRtpParameters
            | ErrorCode::InvalidDtlsParameters
            | ErrorCode::InvalidRequest
            | ErrorCode::PayloadTooLarge => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        WhipError::new(
            status,
            format!("{step}: {} ({})", e.message, e.code.as_str()),
        )
    }
}

impl IntoResponse for WhipError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct PublishQuery {
    label: Option<String>,
}

/// `?peer=<id>` and/or `?label=<label>`: which producers a WHEP client plays.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct PlayQuery {
    peer: Option<String>,
    label: Option<String>,
}

impl Sfu {
    /// The bearer token's grant for `room` (`None` when tokens are off):
    /// 401 without a token or with one that does not verify (counted in
    /// /metrics), 403 for another room. `hint` ends the 401's message.
    pub(crate) fn room_grant(
        &self,
        headers: &HeaderMap,
        room: &RoomId,
        hint: &str,
    ) -> Result<Option<crate::auth::Grant>, WhipError> {
        let Some(verifier) = &self.inner.verifier else {
            return Ok(None);
        };
        let Some(token) = crate::auth::bearer_token(headers) else {
            return Err(WhipError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "this server needs a join token: send `Authorization: Bearer <token>`{hint}"
                ),
            ));
        };
        let grant = verifier.verify(token).map_err(|e| {
            self.inner.metrics.refused(e.reason());
            WhipError::new(StatusCode::UNAUTHORIZED, e.to_string())
        })?;
        require_room(Some(&grant), room)
            .map_err(|e| WhipError::new(StatusCode::FORBIDDEN, e.message))?;
        Ok(Some(grant))
    }

    /// [`Sfu::room_grant`], and the token must give `right`.
    fn whip_grant(
        &self,
        headers: &HeaderMap,
        room: &RoomId,
        right: Right,
    ) -> Result<Option<crate::auth::Grant>, WhipError> {
        let grant = self.room_grant(headers, room, " (in OBS: the Bearer Token field)")?;
        if let Some(grant) = &grant {
            require(Some(grant), right)
                .map_err(|e| WhipError::new(StatusCode::FORBIDDEN, e.message))?;
        }
        Ok(grant)
    }

    /// A request of a WHIP peer, through the same dispatch as a socket's,
    /// in the peer's queue.
    async fn whip_request(&self, peer: &PeerId, envelope: Value) -> Result<Value, SignalingError> {
        let request = Request::parse_limited(&envelope, usize::MAX)?;
        let queue = self.queue_of(peer).ok_or_else(|| {
            SignalingError::new(ErrorCode::PeerNotFound, "the session ended meanwhile")
        })?;
        let _turn = queue.lock().await;
        self.dispatch(peer, request).await.map(Value::Object)
    }

    /// `connectWebRtcTransport` with the DTLS fingerprint and role of the offer.
    async fn whip_connect(
        &self,
        peer: &PeerId,
        transport: TransportId,
        offer: &sdp::Offer,
    ) -> Result<Value, SignalingError> {
        let dtls = json!({
            "role": match offer.client_role {
                simplesfu_proto::types::data_structures::DtlsRole::Server => "server",
                _ => "client",
            },
            "fingerprints": [offer.fingerprint],
        });
        self.whip_request(
            peer,
            json!({"type": "connectWebRtcTransport", "data": {"transportId": transport, "dtlsParameters": dtls}}),
        )
        .await
    }

    /// `POST /whip/<room>`.
    pub(crate) async fn whip_publish(
        &self,
        room: RoomId,
        label: Option<String>,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, WhipError> {
        check_content_type(headers, "application/sdp")?;
        let grant = self.whip_grant(headers, &room, Right::Publish)?;
        let label = match label {
            Some(l) if !valid_label(&l) => {
                return Err(WhipError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "label must be 1 to {MAX_LABEL} letters, digits, spaces, '-', '_' or '.'"
                    ),
                ))
            }
            Some(l) => l,
            None => "whip".to_owned(),
        };
        self.check_session_room(client)?;
        let (offer, caps) = self.read_offer(body)?;
        let codec = |c: &_| simplesfu_engine::codec_supported(&caps, c);
        let extension = |k, u: &_| simplesfu_engine::extension_supported(&caps, k, u);
        let mut plans = sdp::plan(
            &offer,
            &sdp::RouterSupport {
                codec: &codec,
                extension: &extension,
            },
        );
        if !plans.iter().any(|p| matches!(p, sdp::Plan::Produce { .. })) {
            let reasons: Vec<String> = offer
                .media
                .iter()
                .zip(&plans)
                .filter_map(|(m, p)| match p {
                    sdp::Plan::Reject(why) => Some(format!("{}: {why}", m.media)),
                    sdp::Plan::Produce { .. } => None,
                })
                .collect();
            return Err(WhipError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "no m-line of the offer can be received: {}",
                    reasons.join("; ")
                ),
            ));
        }
        let peer = self.admit_without_socket(grant);
        let outcome = self
            .whip_setup(&peer, &room, &label, &offer, &mut plans)
            .await;
        let (transport, worker) = match outcome {
            Ok(done) => done,
            Err(error) => {
                self.remove_peer(&peer, "its WHIP offer was refused").await;
                return Err(error);
            }
        };
        for (m, p) in offer.media.iter().zip(&plans) {
            if let sdp::Plan::Reject(why) = p {
                tracing::info!(peer = %peer, media = %m.media, mid = ?m.mid, reason = %why, "WHIP m-line rejected");
            }
        }
        let answer = sdp::write_answer(&offer, &plans, &transport);
        let first_media = sdp::first_accepted(&offer, &plans);
        tracing::info!(peer = %peer, room = %room, label = %label, "WHIP publisher joined");
        Ok(self.open_session(
            Endpoint::Whip,
            NewSession {
                peer,
                room,
                worker,
                transport,
                ip: client,
                first_media,
                client_ufrag: offer.ice_ufrag.clone(),
            },
            answer,
        ))
    }

    /// The offer of a POST as text, read, and the router's capabilities to
    /// match it with.
    fn read_offer(&self, body: &[u8]) -> Result<(sdp::Offer, RtpCapabilitiesFinalized), WhipError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| WhipError::new(StatusCode::BAD_REQUEST, "the offer is not UTF-8 text"))?;
        let offer = sdp::parse_offer(text).map_err(|e| {
            WhipError::new(StatusCode::BAD_REQUEST, format!("unusable SDP offer: {e}"))
        })?;
        let caps = self
            .inner
            .workers
            .first()
            .map(|w| w.rtp_capabilities().clone())
            .ok_or_else(|| WhipError::new(StatusCode::SERVICE_UNAVAILABLE, "no media worker"))?;
        Ok((offer, caps))
    }

    /// Keep a new session under a fresh URL and answer `201 Created`.
    fn open_session(&self, endpoint: Endpoint, new: NewSession, answer: String) -> Response {
        let session_id = crate::session::new_token();
        let etag = format!("\"{}\"", &crate::session::new_token()[..16]);
        let prefix = match endpoint {
            Endpoint::Whip => "whip",
            Endpoint::Whep => "whep",
        };
        let location = format!("/{prefix}/{}/{session_id}", url_segment(new.room.as_str()));
        self.whip_sessions().sessions.insert(
            session_id,
            WhipSession {
                endpoint,
                peer: new.peer,
                room: new.room,
                worker: new.worker,
                transport_id: new.transport.id,
                transport: new.transport,
                etag: etag.clone(),
                created: Instant::now(),
                ip: new.ip,
                first_media: new.first_media,
                client_ufrag: new.client_ufrag,
            },
        );
        self.inner.metrics.request(match endpoint {
            Endpoint::Whip => "whip_publish",
            Endpoint::Whep => "whep_play",
        });
        self.created(location, etag, answer)
    }

    /// `201 Created` with the answer, the session's URL and entity tag, and
    /// the configured ICE servers as `Link` headers (RFC 9725 §4.6).
    fn created(&self, location: String, etag: String, answer: String) -> Response {
        let mut response = (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_owned()),
                (header::LOCATION, location),
                (header::ETAG, etag),
            ],
            answer,
        )
            .into_response();
        for link in &self.inner.ice_server_links {
            response.headers_mut().append(header::LINK, link.clone());
        }
        response
    }

    /// Refuse a new session when the server, or the client's address, has
    /// as many as the connection limits allow.
    fn check_session_room(&self, client: Option<IpAddr>) -> Result<(), WhipError> {
        let sessions = self.whip_sessions();
        let limits = &self.inner.limits;
        if sessions.len() >= limits.max_connections {
            return Err(WhipError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server has as many WHIP/WHEP sessions as it allows (limits.max_connections); try later",
            ));
        }
        if client.is_some_and(|ip| sessions.count_from(ip) >= limits.max_connections_per_ip) {
            return Err(WhipError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "this address has as many WHIP/WHEP sessions as it may (limits.max_connections_per_ip); end one first",
            ));
        }
        Ok(())
    }

    /// `POST /whep/<room>`: play the room's producers (or those of one
    /// peer, or with one label) to a client that sends a recvonly offer.
    pub(crate) async fn whep_play(
        &self,
        room: RoomId,
        query: PlayQuery,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, WhipError> {
        check_content_type(headers, "application/sdp")?;
        let grant = self.whip_grant(headers, &room, Right::Subscribe)?;
        self.check_session_room(client)?;
        let (offer, caps) = self.read_offer(body)?;
        let router_pt = |c: &_| simplesfu_engine::router_payload_type(&caps, c);
        let extension = |k, u: &_| simplesfu_engine::extension_supported(&caps, k, u);
        let (numbering, refused) = sdp::playback_numbering(&offer, &router_pt, &extension);
        if numbering.mids.is_empty() {
            let reasons: Vec<String> = offer
                .media
                .iter()
                .zip(&refused)
                .filter_map(|(m, why)| Some(format!("{}: {}", m.media, why.as_ref()?)))
                .collect();
            return Err(WhipError::new(
                StatusCode::BAD_REQUEST,
                format!("no m-line of the offer can play: {}", reasons.join("; ")),
            ));
        }
        // What the room has to play, in a stable order: by peer, then producer.
        let candidates: Vec<(PeerId, simplesfu_proto::ProducerId, MediaKind)> = self
            .registry()
            .available_producers(&room)
            .into_iter()
            .filter(|(peer, _)| query.peer.as_deref().is_none_or(|p| p == peer.to_string()))
            .flat_map(|(peer, producers)| {
                producers
                    .producers
                    .into_iter()
                    .filter(|(_, p)| query.label.as_deref().is_none_or(|l| l == p.label))
                    .map(move |(id, p)| (peer.clone(), id, p.kind))
            })
            .collect();
        if candidates.is_empty() {
            return Err(WhipError::new(
                StatusCode::NOT_FOUND,
                "nothing to play: no producer in this room (with that peer or label) yet",
            ));
        }
        let peer = self.admit_without_socket(grant);
        let outcome = self
            .whep_setup(&peer, &room, &offer, &numbering, refused, candidates)
            .await;
        let (transport, worker, lines) = match outcome {
            Ok(done) => done,
            Err(error) => {
                self.remove_peer(&peer, "its WHEP offer was refused").await;
                return Err(error);
            }
        };
        let answer = sdp::write_playback_answer(&offer, &lines, &numbering, &transport);
        let first_media = offer.media.iter().zip(&lines).find_map(|(m, l)| match l {
            sdp::Playback::Send { pt, rtx_pt, .. } => Some((
                match rtx_pt {
                    Some(r) => format!("{} 9 UDP/TLS/RTP/SAVPF {pt} {r}", m.media),
                    None => format!("{} 9 UDP/TLS/RTP/SAVPF {pt}", m.media),
                },
                m.mid.clone().unwrap_or_default(),
            )),
            sdp::Playback::Reject(_) => None,
        });
        tracing::info!(peer = %peer, room = %room, "WHEP player joined");
        Ok(self.open_session(
            Endpoint::Whep,
            NewSession {
                peer,
                room,
                worker,
                transport,
                ip: client,
                first_media,
                client_ufrag: offer.ice_ufrag.clone(),
            },
            answer,
        ))
    }

    /// Join, create the receive transport numbered after the offer, connect
    /// it, and give each playable m-line the next producer of its kind.
    async fn whep_setup(
        &self,
        peer: &PeerId,
        room: &RoomId,
        offer: &sdp::Offer,
        numbering: &simplesfu_engine::RemoteNumbering,
        refused: Vec<Option<String>>,
        candidates: Vec<(PeerId, simplesfu_proto::ProducerId, MediaKind)>,
    ) -> Result<(WebRtcTransportInfo, WorkerIndex, Vec<sdp::Playback>), WhipError> {
        let step = |name: &'static str| move |e| WhipError::from_signaling(name, e);
        self.whip_request(
            peer,
            json!({"type": "joinRoom", "data": {"roomId": room.as_str(), "autoConsume": false}}),
        )
        .await
        .map_err(step("joining the room"))?;
        let queue = self.queue_of(peer).ok_or_else(|| {
            WhipError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session ended meanwhile",
            )
        })?;
        let transport = {
            let _turn = queue.lock().await;
            let worker = self
                .registry()
                .check_new_transport(peer, Direction::Recv)
                .map_err(step("creating the transport"))?;
            let engine = self
                .worker(worker)
                .map_err(step("creating the transport"))?;
            let options = WebRtcTransportOptions {
                direction: Direction::Recv,
                enable_sctp: false,
                force_tcp: false,
            };
            let info = engine
                .create_numbered_transport(options, numbering.clone())
                .await
                .map_err(|e| WhipError::from_signaling("creating the transport", from_engine(e)))?;
            let recorded = self
                .registry()
                .add_transport(peer, Direction::Recv, info.id);
            if let Err(e) = recorded {
                let _ = engine.close_transport(info.id).await;
                return Err(WhipError::from_signaling("creating the transport", e));
            }
            info
        };
        self.whip_connect(peer, transport.id, offer)
            .await
            .map_err(step("connecting the transport"))?;
        let mut taken = vec![false; candidates.len()];
        let mut lines = Vec::with_capacity(offer.media.len());
        let mut sending = 0;
        for (m, why) in offer.media.iter().zip(refused) {
            if let Some(why) = why {
                lines.push(sdp::Playback::Reject(why));
                continue;
            }
            let kind = if m.media == "audio" {
                MediaKind::Audio
            } else {
                MediaKind::Video
            };
            // Every playable m-line takes one of the transport's planned
            // mids, in order: consume exactly once for it, or reject it.
            let Some(i) = (0..candidates.len()).find(|&i| !taken[i] && candidates[i].2 == kind)
            else {
                lines.push(sdp::Playback::Reject(format!(
                    "no {kind:?} producer left to play"
                )));
                continue;
            };
            taken[i] = true;
            let (producing_peer, producer, _) = &candidates[i];
            let consumer = {
                let _turn = queue.lock().await;
                self.consumer_for::<crate::registry::Media>(peer, producing_peer, *producer)
                    .await
            };
            let consumer = match consumer {
                Ok(c) => c,
                Err(e) => {
                    lines.push(sdp::Playback::Reject(format!(
                        "{} ({})",
                        e.message,
                        e.code.as_str()
                    )));
                    continue;
                }
            };
            let router_pt = consumer
                .rtp_parameters
                .codecs
                .first()
                .map(|c| c.payload_type());
            let client = numbering
                .payload_types
                .iter()
                .find(|(r, _, _)| Some(*r) == router_pt)
                .map(|&(_, client, rtx)| (client, rtx));
            let offered_here = client.filter(|(pt, _)| m.codecs.iter().any(|c| c.pt == *pt));
            let Some((pt, rtx_pt)) = offered_here else {
                let _ = self
                    .whip_request(
                        peer,
                        json!({"type": "closeConsumer", "data": {"producerId": producer}}),
                    )
                    .await;
                lines.push(sdp::Playback::Reject(
                    "the producer's codec is not among those this m-line offers".into(),
                ));
                continue;
            };
            let encoding = consumer.rtp_parameters.encodings.first();
            let ssrc = encoding.and_then(|e| e.ssrc).unwrap_or_default();
            let rtx_ssrc = encoding.and_then(|e| e.rtx.as_ref()).map(|r| r.ssrc);
            let cname = consumer
                .rtp_parameters
                .rtcp
                .cname
                .clone()
                .unwrap_or_else(|| "simplesfu".into());
            let msid = (producing_peer.to_string(), producer.to_string());
            self.whip_request(
                peer,
                json!({"type": "resumeConsumer", "data": {"producerId": producer}}),
            )
            .await
            .map_err(step("starting playback"))?;
            lines.push(sdp::Playback::Send {
                pt,
                rtx_pt: rtx_pt.filter(|_| rtx_ssrc.is_some()),
                ssrc,
                rtx_ssrc: rtx_ssrc.filter(|_| rtx_pt.is_some()),
                cname,
                msid,
            });
            sending += 1;
        }
        if sending == 0 {
            let reasons: Vec<String> = lines
                .iter()
                .filter_map(|l| match l {
                    sdp::Playback::Reject(why) => Some(why.clone()),
                    sdp::Playback::Send { .. } => None,
                })
                .collect();
            return Err(WhipError::new(
                StatusCode::NOT_FOUND,
                format!("nothing this offer can play: {}", reasons.join("; ")),
            ));
        }
        let worker = self
            .registry()
            .worker_of(peer)
            .map_err(|e| WhipError::from_signaling("placing", e))?;
        Ok((transport, worker, lines))
    }

    /// Join, create and connect the send transport, produce each m-line.
    /// An m-line the engine refuses is rejected in the answer; when none is
    /// left the whole offer is refused.
    async fn whip_setup(
        &self,
        peer: &PeerId,
        room: &RoomId,
        label: &str,
        offer: &sdp::Offer,
        plans: &mut [sdp::Plan],
    ) -> Result<(WebRtcTransportInfo, WorkerIndex), WhipError> {
        let step = |name: &'static str| move |e| WhipError::from_signaling(name, e);
        self.whip_request(
            peer,
            json!({"type": "joinRoom", "data": {"roomId": room.as_str(), "autoConsume": false}}),
        )
        .await
        .map_err(step("joining the room"))?;
        let created = self
            .whip_request(
                peer,
                json!({"type": "createWebRtcTransport", "data": {"producing": true, "consuming": false}}),
            )
            .await
            .map_err(step("creating the transport"))?;
        let transport = transport_info(&created).ok_or_else(|| {
            WhipError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the transport could not be read back",
            )
        })?;
        self.whip_connect(peer, transport.id, offer)
            .await
            .map_err(step("connecting the transport"))?;
        let mut produced = 0;
        let mut last_error = None;
        for plan in plans.iter_mut() {
            let sdp::Plan::Produce {
                kind,
                rtp_parameters,
                ..
            } = plan
            else {
                continue;
            };
            let request = json!({"type": "produce", "data": {
                "transportId": transport.id,
                "kind": kind,
                "rtpParameters": rtp_parameters,
                "appData": {"label": label},
            }});
            match self.whip_request(peer, request).await {
                Ok(_) => produced += 1,
                Err(e) => {
                    *plan = sdp::Plan::Reject(format!("{} ({})", e.message, e.code.as_str()));
                    last_error = Some(e);
                }
            }
        }
        if produced == 0 {
            let e = last_error.unwrap_or_else(|| {
                SignalingError::new(ErrorCode::InvalidRtpParameters, "nothing to produce")
            });
            return Err(WhipError::from_signaling("producing", e));
        }
        let worker = self
            .registry()
            .worker_of(peer)
            .map_err(|e| WhipError::from_signaling("placing", e))?;
        Ok((transport, worker))
    }

    /// `DELETE /whip/<room>/<session>` (and `/whep/...`).
    pub(crate) async fn whip_delete(
        &self,
        endpoint: Endpoint,
        room: RoomId,
        session: &str,
        headers: &HeaderMap,
    ) -> Result<Response, WhipError> {
        let peer = self.whip_session_peer(endpoint, &room, session)?;
        self.whip_grant(headers, &room, endpoint.right())?;
        self.whip_sessions().sessions.remove(session);
        let reason = match endpoint {
            Endpoint::Whip => "its WHIP client ended the session",
            Endpoint::Whep => "its WHEP client ended the session",
        };
        self.remove_peer(&peer, reason).await;
        Ok(StatusCode::OK.into_response())
    }

    /// `PATCH /whip/<room>/<session>` (and `/whep/...`): trickle
    /// (acknowledged) or ICE restart.
    pub(crate) async fn whip_patch(
        &self,
        endpoint: Endpoint,
        room: RoomId,
        session: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, WhipError> {
        self.whip_session_peer(endpoint, &room, session)?;
        self.whip_grant(headers, &room, endpoint.right())?;
        check_content_type(headers, "application/trickle-ice-sdpfrag")?;
        let text = std::str::from_utf8(body).map_err(|_| {
            WhipError::new(StatusCode::BAD_REQUEST, "the fragment is not UTF-8 text")
        })?;
        let (ufrag, pwd) = sdp::fragment_credentials(text);
        let if_match = headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let (worker, transport_id, etag, client_ufrag) = {
            let sessions = self.whip_sessions();
            let s = sessions.sessions.get(session).ok_or_else(unknown_session)?;
            (
                s.worker,
                s.transport_id,
                s.etag.clone(),
                s.client_ufrag.clone(),
            )
        };
        let restart = matches!((&ufrag, &pwd), (Some(u), Some(_)) if *u != client_ufrag);
        match if_match {
            None => {
                return Err(WhipError::new(
                    StatusCode::PRECONDITION_REQUIRED,
                    "a PATCH needs `If-Match` with the session's ETag (or `*` for an ICE restart)",
                ))
            }
            Some("*") if restart => {}
            Some(tag) if tag == etag => {}
            Some(_) => {
                return Err(WhipError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "`If-Match` is not the session's current ETag",
                ))
            }
        }
        if !restart {
            // ICE-lite: the client's addresses come with its checks; the
            // trickled candidates are not needed.
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let (Some(ufrag), Some(pwd)) = (ufrag, pwd) else {
            return Err(WhipError::new(
                StatusCode::BAD_REQUEST,
                "an ICE restart needs a=ice-ufrag and a=ice-pwd",
            ));
        };
        sdp::check_ice_token("a=ice-ufrag", &ufrag, 4)
            .and_then(|()| sdp::check_ice_token("a=ice-pwd", &pwd, 22))
            .map_err(|e| WhipError::new(StatusCode::BAD_REQUEST, e.0))?;
        let engine = self
            .worker(worker)
            .map_err(|e| WhipError::from_signaling("restarting ICE", e))?;
        let ice = engine.restart_ice(transport_id).await.map_err(|e| {
            WhipError::from_signaling("restarting ICE", crate::errors::from_engine(e))
        })?;
        let new_etag = format!("\"{}\"", &crate::session::new_token()[..16]);
        let fragment = {
            let mut sessions = self.whip_sessions();
            let s = sessions
                .sessions
                .get_mut(session)
                .ok_or_else(unknown_session)?;
            s.etag = new_etag.clone();
            s.client_ufrag = ufrag;
            s.transport.ice_parameters = ice.clone();
            sdp::write_restart_fragment(
                &ice.username_fragment,
                &ice.password,
                s.first_media
                    .as_ref()
                    .map(|(m, mid)| (m.as_str(), mid.as_str())),
                &s.transport,
            )
        };
        Ok((
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    "application/trickle-ice-sdpfrag".to_owned(),
                ),
                (header::ETAG, new_etag),
            ],
            fragment,
        )
            .into_response())
    }

    fn whip_session_peer(
        &self,
        endpoint: Endpoint,
        room: &RoomId,
        session: &str,
    ) -> Result<PeerId, WhipError> {
        self.whip_sessions()
            .sessions
            .get(session)
            .filter(|s| &s.room == room && s.endpoint == endpoint)
            .map(|s| s.peer.clone())
            .ok_or_else(unknown_session)
    }

    /// End the sessions whose client went silent (or never connected).
    async fn whip_sweep(&self) {
        let now = Instant::now();
        let candidates: Vec<(String, PeerId, WorkerIndex, TransportId, Instant)> = self
            .whip_sessions()
            .sessions
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    s.peer.clone(),
                    s.worker,
                    s.transport_id,
                    s.created,
                )
            })
            .collect();
        for (id, peer, worker, transport, created) in candidates {
            let Ok(engine) = self.worker(worker) else {
                continue;
            };
            let gone = match engine.last_consent(transport).await {
                Ok(Some(at)) => now.saturating_duration_since(at) > CONSENT_TIMEOUT,
                Ok(None) => now.saturating_duration_since(created) > CONSENT_TIMEOUT,
                Err(EngineError::TransportNotFound(_)) => true,
                Err(_) => false,
            };
            if gone {
                self.whip_sessions().sessions.remove(&id);
                tracing::info!(peer = %peer, "WHIP/WHEP session ended: no ICE consent for 30 s");
                self.remove_peer(&peer, "its WHIP or WHEP client went silent")
                    .await;
            }
        }
    }
}

/// Ends silent WHIP sessions every [`CONSENT_SWEEP`] while the SFU lives.
pub(crate) async fn consent_sweeps(sfu: std::sync::Weak<crate::sfu::Inner>) {
    let mut ticker = tokio::time::interval(CONSENT_SWEEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        Sfu { inner }.whip_sweep().await;
    }
}

fn unknown_session() -> WhipError {
    WhipError::new(
        StatusCode::NOT_FOUND,
        "no such WHIP session (it ended, or the URL is wrong)",
    )
}

fn check_content_type(headers: &HeaderMap, wanted: &str) -> Result<(), WhipError> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if given.is_some_and(|g| g.eq_ignore_ascii_case(wanted)) {
        Ok(())
    } else {
        Err(WhipError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the body as `Content-Type: {wanted}`"),
        ))
    }
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
}

/// A room id as one URL path segment.
fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The transport of a `createWebRtcTransport` reply.
fn transport_info(reply: &Value) -> Option<WebRtcTransportInfo> {
    Some(WebRtcTransportInfo {
        id: serde_json::from_value(reply.get("id")?.clone()).ok()?,
        ice_parameters: serde_json::from_value(reply.get("iceParameters")?.clone()).ok()?,
        ice_candidates: serde_json::from_value(reply.get("iceCandidates")?.clone()).ok()?,
        dtls_parameters: serde_json::from_value(reply.get("dtlsParameters")?.clone()).ok()?,
        sctp_parameters: None,
    })
}

/// In a cluster, a room another node serves: `307 Temporary Redirect` to
/// the same URL on that node (RFC 9725 §4.5), which the client POSTs to
/// again. `None`: this node serves the room (or will). Only for a client
/// whose token allows it: which rooms are where is for those who may join.
async fn redirect_to_room_node(
    sfu: &Sfu,
    room: &RoomId,
    right: Right,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Option<Response> {
    let cluster = sfu.inner.cluster.get()?;
    if let Err(e) = sfu.whip_grant(headers, room, right) {
        return Some(e.into_response());
    }
    let place = cluster.claim_room(room.as_str()).await.err()?;
    let message = format!(
        "room {room} is served by node {}: POST to it (Location)",
        place.node
    );
    if place.url.is_empty() {
        return Some(WhipError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response());
    }
    let location = format!(
        "{}{}",
        place.url.trim_end_matches('/'),
        uri.path_and_query().map_or(uri.path(), |p| p.as_str())
    );
    let mut response = (StatusCode::TEMPORARY_REDIRECT, message).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Some(response)
}

/// `POST /whip/{room}`.
pub(crate) async fn publish(
    State(sfu): State<Sfu>,
    Path(room): Path<String>,
    Query(query): Query<PublishQuery>,
    client: Option<axum::Extension<ClientAddr>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let room = match room_id(&room) {
        Ok(room) => room,
        Err(e) => return e.into_response(),
    };
    if let Some(redirect) = redirect_to_room_node(&sfu, &room, Right::Publish, &headers, &uri).await
    {
        return redirect;
    }
    let client = client.map(|c| c.0 .0);
    let outcome = sfu
        .whip_publish(room, query.label, client, &headers, &body)
        .await;
    respond(&sfu, outcome)
}

/// `DELETE /whip/{room}/{session}` (`WHEP` false) and
/// `DELETE /whep/{room}/{session}` (`WHEP` true).
pub(crate) async fn delete<const WHEP: bool>(
    State(sfu): State<Sfu>,
    Path((room, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let outcome = match room_id(&room) {
        Ok(room) => {
            sfu.whip_delete(Endpoint::of(WHEP), room, &session, &headers)
                .await
        }
        Err(e) => Err(e),
    };
    respond(&sfu, outcome)
}

/// `PATCH /whip/{room}/{session}` (`WHEP` false) and
/// `PATCH /whep/{room}/{session}` (`WHEP` true).
pub(crate) async fn patch<const WHEP: bool>(
    State(sfu): State<Sfu>,
    Path((room, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = match room_id(&room) {
        Ok(room) => {
            sfu.whip_patch(Endpoint::of(WHEP), room, &session, &headers, &body)
                .await
        }
        Err(e) => Err(e),
    };
    respond(&sfu, outcome)
}

/// `POST /whep/{room}`.
pub(crate) async fn play(
    State(sfu): State<Sfu>,
    Path(room): Path<String>,
    Query(query): Query<PlayQuery>,
    client: Option<axum::Extension<ClientAddr>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let room = match room_id(&room) {
        Ok(room) => room,
        Err(e) => return e.into_response(),
    };
    if let Some(redirect) =
        redirect_to_room_node(&sfu, &room, Right::Subscribe, &headers, &uri).await
    {
        return redirect;
    }
    let client = client.map(|c| c.0 .0);
    let outcome = sfu.whep_play(room, query, client, &headers, &body).await;
    respond(&sfu, outcome)
}

/// A plain `OPTIONS` (no `Access-Control-Request-Method`: not a CORS
/// preflight) of a WHIP URL is answered here, in front of the CORS layer,
/// which would take it for a preflight; everything else passes.
pub(crate) async fn plain_options(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let plain = request.method() == axum::http::Method::OPTIONS
        && !request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && (path.starts_with("/whip/") || path.starts_with("/whep/"));
    if !plain {
        return next.run(request).await;
    }
    let rest = path
        .strip_prefix("/whip/")
        .or_else(|| path.strip_prefix("/whep/"))
        .unwrap_or_default();
    match rest.split('/').count() {
        1 => options().await,
        2 => session_options().await,
        _ => next.run(request).await,
    }
}

/// `OPTIONS /whip/{room}`.
pub(crate) async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::HeaderName::from_static("accept-post"),
                "application/sdp",
            ),
            (header::ALLOW, "OPTIONS, POST"),
        ],
    )
        .into_response()
}

/// `OPTIONS /whip/{room}/{session}`.
pub(crate) async fn session_options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::HeaderName::from_static("accept-patch"),
                "application/trickle-ice-sdpfrag",
            ),
            (header::ALLOW, "OPTIONS, PATCH, DELETE"),
        ],
    )
        .into_response()
}

fn room_id(text: &str) -> Result<RoomId, WhipError> {
    serde_json::from_value::<RoomId>(json!(text))
        .map_err(|e| WhipError::new(StatusCode::BAD_REQUEST, format!("unusable room name: {e}")))
}

fn respond(sfu: &Sfu, outcome: Result<Response, WhipError>) -> Response {
    match outcome {
        Ok(response) => response,
        Err(error) => {
            sfu.inner.metrics.error(match error.status.as_u16() {
                400 => "whip_bad_request",
                401 => "whip_unauthorized",
                403 => "whip_forbidden",
                404 => "whip_not_found",
                412 | 428 => "whip_precondition",
                413 => "whip_too_large",
                415 => "whip_unsupported_media_type",
                429 => "whip_too_many",
                _ => "whip_unavailable",
            });
            tracing::debug!(status = error.status.as_u16(), message = %error.message, "WHIP request refused");
            error.into_response()
        }
    }
}
