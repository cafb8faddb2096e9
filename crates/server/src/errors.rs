//! Errors of the SFU library ([`SfuError`]) and the translation of engine
//! errors into the coded errors a client sees.

use simplesfu_engine::EngineError;
use simplesfu_proto::{ErrorCode, SignalingError};

/// Why the SFU could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// `Sfu::new`/`Sfu::attach` was called outside a tokio runtime; the SFU
    /// spawns its background tasks on the current runtime.
    #[error("simplesfu must be started inside a tokio runtime")]
    NoRuntime,
    /// The worker count is 0 or above `MAX_WORKERS`.
    #[error("{0} media workers requested; use 1 to 256 (default: one per core)")]
    UnsupportedWorkerCount(usize),
    /// The UDP socket of a media worker could not be bound.
    #[error("media worker {index} could not bind UDP port {port}: {source}")]
    WorkerSpawn {
        index: usize,
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

/// The error a client sees for an engine failure. Internal details (str0m
/// messages) stay in the log; the client gets the code and a short text.
pub(crate) fn from_engine(error: EngineError) -> SignalingError {
    let code = match &error {
        EngineError::TransportNotFound(_) => ErrorCode::TransportNotFound,
        EngineError::WrongDirection(_) => ErrorCode::WrongTransportDirection,
        EngineError::AlreadyConnected(_) => ErrorCode::TransportAlreadyConnected,
        EngineError::NotConnected(_) => ErrorCode::TransportNotConnected,
        EngineError::InvalidDtlsParameters(_) => ErrorCode::InvalidDtlsParameters,
        EngineError::InvalidRtpParameters(_) => ErrorCode::InvalidRtpParameters,
        EngineError::InvalidSctpParameters(_) => ErrorCode::InvalidSctpParameters,
        EngineError::ProducerNotFound(_) | EngineError::DataProducerNotFound(_) => {
            ErrorCode::ProducerNotFound
        }
        EngineError::ConsumerNotFound(_) | EngineError::DataConsumerNotFound(_) => {
            ErrorCode::ConsumerNotFound
        }
        EngineError::TooManyProducers { .. } => ErrorCode::LimitReached,
        EngineError::LayersOutOfRange { .. } => ErrorCode::LayersOutOfRange,
        EngineError::InvalidPriority(_) => ErrorCode::InvalidRequest,
        EngineError::TcpUnavailable => ErrorCode::InvalidRequest,
        EngineError::NoMediaSlot(..) => ErrorCode::LimitReached,
        EngineError::WorkerGone | EngineError::Internal(_) => ErrorCode::InternalError,
        _ => ErrorCode::InternalError,
    };
    if code == ErrorCode::InternalError {
        tracing::warn!(%error, "media engine failure");
        SignalingError::new(
            code,
            "the media engine failed; the request changed nothing (see server logs)",
        )
    } else {
        SignalingError::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simplesfu_proto::{ProducerId, TransportId};

    #[test]
    fn engine_errors_keep_their_meaning_and_hide_internals() {
        let t = TransportId::new();
        assert_eq!(
            from_engine(EngineError::NotConnected(t)).code,
            ErrorCode::TransportNotConnected
        );
        assert_eq!(
            from_engine(EngineError::WrongDirection(t)).code,
            ErrorCode::WrongTransportDirection
        );
        assert_eq!(
            from_engine(EngineError::ProducerNotFound(ProducerId::new())).code,
            ErrorCode::ProducerNotFound
        );
        let full = from_engine(EngineError::TooManyProducers {
            transport: t,
            limit: 64,
        });
        assert_eq!(full.code, ErrorCode::LimitReached);
        assert!(
            full.message.contains("create a new send transport"),
            "{}",
            full.message
        );
        let internal = from_engine(EngineError::Internal("str0m: secret detail".into()));
        assert_eq!(internal.code, ErrorCode::InternalError);
        assert!(!internal.message.contains("secret"));
    }
}
