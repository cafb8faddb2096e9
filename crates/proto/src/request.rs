//! Requests (client to server): `emit("mediasoupSignaling", {type, data}, ack)`.
//!
//! [`Request::parse`] turns the raw JSON into a typed request or a
//! [`SignalingError`] whose message names the offending field.

use crate::ack::{ErrorCode, SignalingError};
use crate::ids::{DataProducerId, PeerId, ProducerId, RoomId, TransportId};
use mediasoup_types::data_structures::DtlsParameters;
use mediasoup_types::rtp_parameters::{MediaKind, RtpParameters};
use mediasoup_types::sctp_parameters::SctpStreamParameters;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// Requests larger than this (as JSON text) are refused with `payload_too_large`.
/// Real RTP parameters of a simulcast producer are a few KiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Longest `label` (of `produce`'s appData and of `produceData`) and
/// `protocol`, in bytes. Each producer's label is sent to every member of
/// its room (`availableProducers`, `createConsumer`), so it stays small.
pub const MAX_LABEL_BYTES: usize = 256;

/// Largest `appData` of `produceData`, in bytes of JSON; it too is sent to
/// every member of the room.
pub const MAX_APP_DATA_BYTES: usize = 1024;

/// `joinRoom` / `leaveRoom`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoom {
    /// Numbers are accepted too and taken as their decimal text.
    #[serde(deserialize_with = "room_id_from_string_or_number")]
    pub room_id: RoomId,
    /// Extension (`joinRoom` only): `false` means the server creates no
    /// consumers for this peer unless it asks (broadcast producers excepted).
    #[serde(default)]
    pub auto_consume: Option<bool>,
}

fn room_id_from_string_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<RoomId, D::Error> {
    let raw = Value::deserialize(d)?;
    let text = match raw {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => return Err(serde::de::Error::custom("roomId must be a string")),
    };
    text.parse().map_err(serde::de::Error::custom)
}

/// `createWebRtcTransport`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebRtcTransport {
    #[serde(default)]
    pub force_tcp: bool,
    #[serde(default)]
    pub producing: bool,
    #[serde(default)]
    pub consuming: bool,
    /// `{numStreams: {OS, MIS}}`; its presence asks for SCTP (data channels).
    #[serde(default)]
    pub sctp_capabilities: Option<Value>,
}

/// `connectWebRtcTransport`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectWebRtcTransport {
    pub transport_id: TransportId,
    pub dtls_parameters: DtlsParameters,
}

/// `appData` of `produce` as the published client sends it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProduceAppData {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub broadcast: bool,
}

/// `produce`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Produce {
    pub transport_id: TransportId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    #[serde(default)]
    pub app_data: ProduceAppData,
}

/// `produceData`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProduceData {
    pub transport_id: TransportId,
    pub sctp_stream_parameters: SctpStreamParameters,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub app_data: Value,
}

/// `createConsumer` / `createDataConsumer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateConsumerRequest<Id> {
    pub producing_peer_id: PeerId,
    pub producer_id: Id,
}

/// `pauseConsumer`, `resumeConsumer`, `closeConsumer`, `closeProducer`,
/// `pauseProducer`, `resumeProducer`: all address the producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerRef {
    pub producer_id: ProducerId,
}

/// **ext** `restartIce`: the transport to give new ICE parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportRef {
    pub transport_id: TransportId,
}

/// **ext** `subscribeAudioLevels`: whether this peer wants `audioLevels` pushes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeAudioLevels {
    pub enabled: bool,
}

/// **ext** `setConsumerPreferredLayers`: the highest layers the peer wants
/// of a producer it consumes (a thumbnail asks for the low one); the
/// bandwidth allocation never goes above them. No `temporalLayer`: all.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetConsumerPreferredLayers {
    pub producer_id: ProducerId,
    pub spatial_layer: u8,
    #[serde(default)]
    pub temporal_layer: Option<u8>,
}

/// **ext** `setConsumerPriority`: the consumer's weight, 1..=255, when the
/// peer's bandwidth is split (higher goes up first and faster).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetConsumerPriority {
    pub producer_id: ProducerId,
    #[serde(deserialize_with = "priority")]
    pub priority: u8,
}

/// An integer 1..=255, refused with a message that names the field.
fn priority<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let value = Value::deserialize(d)?;
    value
        .as_u64()
        .and_then(|p| u8::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`priority` must be an integer 1..=255, not {value}"
            ))
        })
}

/// A parsed, validated request.
#[derive(Debug, Clone)]
pub enum Request {
    JoinRoom(JoinRoom),
    /// The room named by the client, when it names one usably. The server
    /// leaves the peer's current room whatever it says: the published client
    /// sends `{roomId: {roomId: "<old>"}}` here.
    LeaveRoom(Option<RoomId>),
    GetRouterRtpCapabilities,
    CreateWebRtcTransport(CreateWebRtcTransport),
    ConnectWebRtcTransport(ConnectWebRtcTransport),
    Produce(Box<Produce>),
    ProduceData(ProduceData),
    CreateConsumer(CreateConsumerRequest<ProducerId>),
    CreateDataConsumer(CreateConsumerRequest<DataProducerId>),
    PauseConsumer(ProducerRef),
    ResumeConsumer(ProducerRef),
    CloseConsumer(ProducerRef),
    CloseProducer(ProducerRef),
    /// Extension: pause a producer of one's own (no packets reach any consumer).
    PauseProducer(ProducerRef),
    /// Extension: resume a producer of one's own.
    ResumeProducer(ProducerRef),
    /// Extension: new ICE parameters for one's own transport (ICE restart).
    RestartIce(TransportRef),
    /// Extension: start or stop `audioLevels` pushes.
    SubscribeAudioLevels(SubscribeAudioLevels),
    /// Extension: cap the layers of one's consumer.
    SetConsumerPreferredLayers(SetConsumerPreferredLayers),
    /// Extension: weight one's consumer in the bandwidth allocation.
    SetConsumerPriority(SetConsumerPriority),
}

/// The request types, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    JoinRoom,
    LeaveRoom,
    GetRouterRtpCapabilities,
    CreateWebRtcTransport,
    ConnectWebRtcTransport,
    Produce,
    ProduceData,
    CreateConsumer,
    CreateDataConsumer,
    PauseConsumer,
    ResumeConsumer,
    CloseConsumer,
    CloseProducer,
    PauseProducer,
    ResumeProducer,
    RestartIce,
    SubscribeAudioLevels,
    SetConsumerPreferredLayers,
    SetConsumerPriority,
}

impl RequestType {
    /// Every request type, in protocol order.
    pub const ALL: [RequestType; 19] = [
        Self::JoinRoom,
        Self::LeaveRoom,
        Self::GetRouterRtpCapabilities,
        Self::CreateWebRtcTransport,
        Self::ConnectWebRtcTransport,
        Self::Produce,
        Self::ProduceData,
        Self::CreateConsumer,
        Self::CreateDataConsumer,
        Self::PauseConsumer,
        Self::ResumeConsumer,
        Self::CloseConsumer,
        Self::CloseProducer,
        Self::PauseProducer,
        Self::ResumeProducer,
        Self::RestartIce,
        Self::SubscribeAudioLevels,
        Self::SetConsumerPreferredLayers,
        Self::SetConsumerPriority,
    ];

    /// The wire name, e.g. `createWebRtcTransport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JoinRoom => "joinRoom",
            Self::LeaveRoom => "leaveRoom",
            Self::GetRouterRtpCapabilities => "getRouterRtpCapabilities",
            Self::CreateWebRtcTransport => "createWebRtcTransport",
            Self::ConnectWebRtcTransport => "connectWebRtcTransport",
            Self::Produce => "produce",
            Self::ProduceData => "produceData",
            Self::CreateConsumer => "createConsumer",
            Self::CreateDataConsumer => "createDataConsumer",
            Self::PauseConsumer => "pauseConsumer",
            Self::ResumeConsumer => "resumeConsumer",
            Self::CloseConsumer => "closeConsumer",
            Self::CloseProducer => "closeProducer",
            Self::PauseProducer => "pauseProducer",
            Self::ResumeProducer => "resumeProducer",
            Self::RestartIce => "restartIce",
            Self::SubscribeAudioLevels => "subscribeAudioLevels",
            Self::SetConsumerPreferredLayers => "setConsumerPreferredLayers",
            Self::SetConsumerPriority => "setConsumerPriority",
        }
    }

    fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl Request {
    /// Parse `{type, data}`. Every failure is a [`SignalingError`] that says
    /// which part of the request is wrong; nothing is partially accepted.
    pub fn parse(envelope: &Value) -> Result<Request, SignalingError> {
        Request::parse_limited(envelope, MAX_REQUEST_BYTES)
    }

    /// [`Request::parse`] with a server's own size limit instead of
    /// [`MAX_REQUEST_BYTES`].
    pub fn parse_limited(envelope: &Value, max_bytes: usize) -> Result<Request, SignalingError> {
        let size = serde_json::to_vec(envelope)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > max_bytes {
            return Err(SignalingError::new(
                ErrorCode::PayloadTooLarge,
                format!("request is {size} bytes; the limit is {max_bytes}"),
            ));
        }
        let Value::Object(map) = envelope else {
            return Err(SignalingError::new(
                ErrorCode::InvalidRequest,
                "a request must be an object {type, data}",
            ));
        };
        let Some(Value::String(name)) = map.get("type") else {
            return Err(SignalingError::new(
                ErrorCode::InvalidRequest,
                "a request needs a string field `type`",
            ));
        };
        let Some(kind) = RequestType::from_wire(name) else {
            let shown: String = name.chars().take(64).collect();
            return Err(SignalingError::new(
                ErrorCode::UnknownRequest,
                format!("unknown request type `{shown}`"),
            ));
        };
        let data = map.get("data").cloned().unwrap_or(Value::Null);
        Ok(match kind {
            RequestType::JoinRoom => Request::JoinRoom(data_of(kind, data)?),
            RequestType::LeaveRoom => {
                Request::LeaveRoom(data_of::<JoinRoom>(kind, data).ok().map(|j| j.room_id))
            }
            RequestType::GetRouterRtpCapabilities => Request::GetRouterRtpCapabilities,
            RequestType::CreateWebRtcTransport => {
                let data = if data.is_null() {
                    Value::Object(Default::default())
                } else {
                    data
                };
                Request::CreateWebRtcTransport(data_of(kind, data)?)
            }
            RequestType::ConnectWebRtcTransport => {
                Request::ConnectWebRtcTransport(data_of(kind, data)?)
            }
            RequestType::Produce => {
                let produce = parse_produce(data)?;
                bounded(
                    "appData.label",
                    produce.app_data.label.as_deref().unwrap_or_default(),
                    MAX_LABEL_BYTES,
                )?;
                Request::Produce(Box::new(produce))
            }
            RequestType::ProduceData => {
                let produce: ProduceData = data_of(kind, data)?;
                bounded("label", &produce.label, MAX_LABEL_BYTES)?;
                bounded("protocol", &produce.protocol, MAX_LABEL_BYTES)?;
                let app_data = serde_json::to_string(&produce.app_data)
                    .map(|s| s.len())
                    .unwrap_or(usize::MAX);
                if app_data > MAX_APP_DATA_BYTES {
                    return Err(SignalingError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("`appData` is {app_data} bytes of JSON; the most is {MAX_APP_DATA_BYTES}"),
                    ));
                }
                Request::ProduceData(produce)
            }
            RequestType::CreateConsumer => Request::CreateConsumer(data_of(kind, data)?),
            RequestType::CreateDataConsumer => Request::CreateDataConsumer(data_of(kind, data)?),
            RequestType::PauseConsumer => Request::PauseConsumer(data_of(kind, data)?),
            RequestType::ResumeConsumer => Request::ResumeConsumer(data_of(kind, data)?),
            RequestType::CloseConsumer => Request::CloseConsumer(data_of(kind, data)?),
            RequestType::CloseProducer => Request::CloseProducer(data_of(kind, data)?),
            RequestType::PauseProducer => Request::PauseProducer(data_of(kind, data)?),
            RequestType::ResumeProducer => Request::ResumeProducer(data_of(kind, data)?),
            RequestType::RestartIce => Request::RestartIce(data_of(kind, data)?),
            RequestType::SubscribeAudioLevels => {
                Request::SubscribeAudioLevels(data_of(kind, data)?)
            }
            RequestType::SetConsumerPreferredLayers => {
                Request::SetConsumerPreferredLayers(data_of(kind, data)?)
            }
            RequestType::SetConsumerPriority => Request::SetConsumerPriority(data_of(kind, data)?),
        })
    }

    /// The type of this request.
    pub fn request_type(&self) -> RequestType {
        match self {
            Request::JoinRoom(_) => RequestType::JoinRoom,
            Request::LeaveRoom(_) => RequestType::LeaveRoom,
            Request::GetRouterRtpCapabilities => RequestType::GetRouterRtpCapabilities,
            Request::CreateWebRtcTransport(_) => RequestType::CreateWebRtcTransport,
            Request::ConnectWebRtcTransport(_) => RequestType::ConnectWebRtcTransport,
            Request::Produce(_) => RequestType::Produce,
            Request::ProduceData(_) => RequestType::ProduceData,
            Request::CreateConsumer(_) => RequestType::CreateConsumer,
            Request::CreateDataConsumer(_) => RequestType::CreateDataConsumer,
            Request::PauseConsumer(_) => RequestType::PauseConsumer,
            Request::ResumeConsumer(_) => RequestType::ResumeConsumer,
            Request::CloseConsumer(_) => RequestType::CloseConsumer,
            Request::CloseProducer(_) => RequestType::CloseProducer,
            Request::PauseProducer(_) => RequestType::PauseProducer,
            Request::ResumeProducer(_) => RequestType::ResumeProducer,
            Request::RestartIce(_) => RequestType::RestartIce,
            Request::SubscribeAudioLevels(_) => RequestType::SubscribeAudioLevels,
            Request::SetConsumerPreferredLayers(_) => RequestType::SetConsumerPreferredLayers,
            Request::SetConsumerPriority(_) => RequestType::SetConsumerPriority,
        }
    }
}

/// Refuse a text field longer than `max` bytes with `payload_too_large`.
fn bounded(field: &str, text: &str, max: usize) -> Result<(), SignalingError> {
    if text.len() > max {
        return Err(SignalingError::new(
            ErrorCode::PayloadTooLarge,
            format!("`{field}` is {} bytes; the most is {max}", text.len()),
        ));
    }
    Ok(())
}

fn data_of<T: DeserializeOwned>(kind: RequestType, data: Value) -> Result<T, SignalingError> {
    serde_json::from_value(data).map_err(|e| {
        SignalingError::new(
            ErrorCode::InvalidRequest,
            format!("bad `data` for {}: {e}", kind.as_str()),
        )
    })
}

/// `produce` is parsed in two steps so that unusable RTP parameters get their
/// own code (`invalid_rtp_parameters`) rather than the generic one.
fn parse_produce(mut data: Value) -> Result<Produce, SignalingError> {
    let rtp = match data.as_object_mut().and_then(|m| m.remove("rtpParameters")) {
        Some(rtp) => rtp,
        None => {
            return Err(SignalingError::new(
                ErrorCode::InvalidRequest,
                "bad `data` for produce: missing field `rtpParameters`",
            ))
        }
    };
    let rtp_parameters: RtpParameters = serde_json::from_value(rtp).map_err(|e| {
        SignalingError::new(
            ErrorCode::InvalidRtpParameters,
            format!("unusable rtpParameters: {e}"),
        )
    })?;
    if let Some(map) = data.as_object_mut() {
        map.insert(
            "rtpParameters".into(),
            serde_json::to_value(&rtp_parameters).unwrap_or(Value::Null),
        );
    }
    data_of(RequestType::Produce, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code_of(v: Value) -> ErrorCode {
        Request::parse(&v).expect_err("should be refused").code
    }

    #[test]
    fn parses_join_room_with_string_or_number() {
        let r =
            Request::parse(&json!({"type": "joinRoom", "data": {"roomId": "abc"}})).expect("valid");
        assert!(matches!(r, Request::JoinRoom(j) if j.room_id.as_str() == "abc"));
        let r = Request::parse(&json!({"type": "joinRoom", "data": {"roomId": 7}})).expect("valid");
        assert!(matches!(r, Request::JoinRoom(j) if j.room_id.as_str() == "7"));
    }

    #[test]
    fn restart_ice_names_a_transport() {
        let id = TransportId::new();
        let r =
            Request::parse(&json!({"type": "restartIce", "data": {"transportId": id.to_string()}}))
                .expect("valid");
        assert!(matches!(r, Request::RestartIce(t) if t.transport_id == id));
        assert_eq!(
            code_of(json!({"type": "restartIce", "data": {"transportId": "nope"}})),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(json!({"type": "restartIce"})),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn leave_room_accepts_the_published_clients_nested_room_id() {
        let r =
            Request::parse(&json!({"type": "leaveRoom", "data": {"roomId": {"roomId": "old"}}}))
                .expect("valid");
        assert!(matches!(r, Request::LeaveRoom(None)));
        let r = Request::parse(&json!({"type": "leaveRoom", "data": {"roomId": "old"}}))
            .expect("valid");
        assert!(matches!(r, Request::LeaveRoom(Some(id)) if id.as_str() == "old"));
    }

    #[test]
    fn refuses_malformed_requests_with_codes() {
        assert_eq!(code_of(json!("hello")), ErrorCode::InvalidRequest);
        assert_eq!(code_of(json!({"data": {}})), ErrorCode::InvalidRequest);
        assert_eq!(code_of(json!({"type": "fly"})), ErrorCode::UnknownRequest);
        assert_eq!(
            code_of(json!({"type": "joinRoom", "data": {}})),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(json!({"type": "joinRoom", "data": {"roomId": {}}})),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(
                json!({"type": "connectWebRtcTransport", "data": {"transportId": "x", "dtlsParameters": {}}})
            ),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(json!({"type": "closeProducer", "data": {"producerId": 12}})),
            ErrorCode::InvalidRequest
        );
        let huge = "x".repeat(MAX_REQUEST_BYTES + 1);
        assert_eq!(
            code_of(json!({"type": "joinRoom", "data": {"roomId": huge}})),
            ErrorCode::PayloadTooLarge
        );
    }

    #[test]
    fn labels_protocols_and_app_data_that_every_member_receives_are_small() {
        let transport = TransportId::new().to_string();
        let stream = json!({"streamId": 1, "ordered": true});
        let long = "x".repeat(MAX_LABEL_BYTES + 1);
        let data = |label: &str, protocol: &str, app: Value| json!({"type": "produceData", "data": {"transportId": transport, "sctpStreamParameters": stream, "label": label, "protocol": protocol, "appData": app}});
        assert!(
            Request::parse(&data(&"x".repeat(MAX_LABEL_BYTES), "chat", json!({"a": 1}))).is_ok()
        );
        assert_eq!(
            code_of(data(&long, "", Value::Null)),
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            code_of(data("chat", &long, Value::Null)),
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            code_of(data(
                "chat",
                "",
                json!({"blob": "y".repeat(MAX_APP_DATA_BYTES)})
            )),
            ErrorCode::PayloadTooLarge
        );
        let mut produce = json!({"type": "produce", "data": {"transportId": transport, "kind": "audio",
            "rtpParameters": {"mid": "0", "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []}],
                "headerExtensions": [], "encodings": [{"ssrc": 1}], "rtcp": {"cname": "c", "reducedSize": true}},
            "appData": {"label": long}}});
        assert_eq!(code_of(produce.clone()), ErrorCode::PayloadTooLarge);
        produce["data"]["appData"]["label"] = json!("mic");
        assert!(
            Request::parse(&produce).is_ok(),
            "{:?}",
            Request::parse(&produce).err()
        );
    }

    #[test]
    fn subscribe_audio_levels_takes_a_boolean() {
        let r = Request::parse(&json!({"type": "subscribeAudioLevels", "data": {"enabled": true}}))
            .expect("valid");
        assert!(matches!(
            r,
            Request::SubscribeAudioLevels(SubscribeAudioLevels { enabled: true })
        ));
        for bad in [
            json!({"enabled": "yes"}),
            json!({}),
            json!(null),
            json!({"enabled": 1}),
        ] {
            assert_eq!(
                code_of(json!({"type": "subscribeAudioLevels", "data": bad})),
                ErrorCode::InvalidRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn create_transport_accepts_missing_data() {
        let r = Request::parse(&json!({"type": "createWebRtcTransport"})).expect("valid");
        assert!(matches!(r, Request::CreateWebRtcTransport(c) if !c.producing && !c.consuming));
    }

    #[test]
    fn produce_with_bad_codec_is_invalid_rtp_parameters() {
        let req = json!({"type": "produce", "data": {
            "transportId": TransportId::new().to_string(),
            "kind": "video",
            "rtpParameters": {"codecs": [{"mimeType": "video/NOPE", "payloadType": 96, "clockRate": 90000}],
                              "headerExtensions": [], "encodings": [{"ssrc": 1}], "rtcp": {"reducedSize": true}}
        }});
        assert_eq!(code_of(req), ErrorCode::InvalidRtpParameters);
    }
}
