//! The ack envelope: `{success: true, ...fields}` or `{error: {code, message}}`.

use serde::Serialize;
use serde_json::{Map, Value};

/// Every error code a client can see in an error ack. The string forms are
/// part of the protocol: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is not `{type, data}` or its data has missing or wrongly typed fields.
    InvalidRequest,
    /// The request type is not one this server knows.
    UnknownRequest,
    /// The request is larger than the server accepts.
    PayloadTooLarge,
    /// The peer must join a room first.
    NotInRoom,
    /// The transport id is unknown or belongs to another peer.
    TransportNotFound,
    /// The peer already has a transport for that direction.
    TransportAlreadyExists,
    /// The request needs a connected transport (call `connectWebRtcTransport` first).
    TransportNotConnected,
    /// `connectWebRtcTransport` was already called for this transport.
    TransportAlreadyConnected,
    /// The transport has the wrong direction for the request (e.g. producing on the receive transport).
    WrongTransportDirection,
    /// DTLS parameters are unusable (no supported fingerprint, bad role).
    InvalidDtlsParameters,
    /// RTP parameters are unusable (unsupported codec, missing encodings, bad ids).
    InvalidRtpParameters,
    /// SCTP stream parameters are unusable (bad or duplicate stream id).
    InvalidSctpParameters,
    /// The peer id is unknown.
    PeerNotFound,
    /// The producer or data producer id is unknown.
    ProducerNotFound,
    /// The producer belongs to a peer outside the requester's room.
    ProducerNotInRoom,
    /// The peer has no consumer for that producer.
    ConsumerNotFound,
    /// Preferred layers the producer does not send (a spatial layer at or
    /// above its number of encodings, a temporal layer above 2, or any for audio).
    LayersOutOfRange,
    /// The peer has no receive transport to consume on.
    NoReceiveTransport,
    /// A per-peer or per-room limit was reached.
    LimitReached,
    /// The peer's join token does not allow the request (another room, or
    /// producing with a subscribe-only token).
    Forbidden,
    /// `joinRoom` on a node of a cluster while another node serves that
    /// room: connect to that node (the message names it; `GET
    /// /cluster/rooms/<room>` on any node too).
    RoomOnAnotherNode,
    /// Something failed inside the server; the request changed nothing.
    InternalError,
}

impl ErrorCode {
    /// The wire form, e.g. `transport_not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnknownRequest => "unknown_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::NotInRoom => "not_in_room",
            Self::TransportNotFound => "transport_not_found",
            Self::TransportAlreadyExists => "transport_already_exists",
            Self::TransportNotConnected => "transport_not_connected",
            Self::TransportAlreadyConnected => "transport_already_connected",
            Self::WrongTransportDirection => "wrong_transport_direction",
            Self::InvalidDtlsParameters => "invalid_dtls_parameters",
            Self::InvalidRtpParameters => "invalid_rtp_parameters",
            Self::InvalidSctpParameters => "invalid_sctp_parameters",
            Self::PeerNotFound => "peer_not_found",
            Self::ProducerNotFound => "producer_not_found",
            Self::ProducerNotInRoom => "producer_not_in_room",
            Self::ConsumerNotFound => "consumer_not_found",
            Self::LayersOutOfRange => "layers_out_of_range",
            Self::NoReceiveTransport => "no_receive_transport",
            Self::LimitReached => "limit_reached",
            Self::Forbidden => "forbidden",
            Self::RoomOnAnotherNode => "room_on_another_node",
            Self::InternalError => "internal_error",
        }
    }
}

/// An error that reaches a client: a stable code and a message that says what
/// went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct SignalingError {
    /// The stable, machine-readable code.
    pub code: ErrorCode,
    /// Human text for the developer reading the console.
    pub message: String,
}

impl SignalingError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The ack body: `{error: {code, message}}`.
    pub fn to_ack(&self) -> Value {
        serde_json::json!({ "error": { "code": self.code.as_str(), "message": self.message } })
    }
}

/// The ack body of a success: `{success: true}` plus the given fields.
pub fn success_ack(fields: Map<String, Value>) -> Value {
    let mut body = fields;
    body.insert("success".into(), Value::Bool(true));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_ack_has_code_and_message() {
        let err = SignalingError::new(ErrorCode::TransportNotFound, "no such transport");
        assert_eq!(
            err.to_ack(),
            serde_json::json!({"error": {"code": "transport_not_found", "message": "no such transport"}})
        );
    }

    #[test]
    fn code_strings_match_serde() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::ProducerNotInRoom,
            ErrorCode::NoReceiveTransport,
        ] {
            assert_eq!(
                serde_json::to_value(code).expect("serializes"),
                Value::String(code.as_str().into())
            );
        }
    }
}
