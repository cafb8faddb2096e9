//! Typed ids. Server-made ids are UUIDs; peer and room ids come from clients
//! and are bounded, printable strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// The string is not a UUID (server-made ids are UUIDs).
    #[error("not a valid id: expected a UUID")]
    NotUuid,
    /// Empty, longer than 128 bytes, or containing control characters.
    #[error("not a valid id: must be 1 to 128 printable characters")]
    BadText,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdParseError::NotUuid)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdParseError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    };
}

uuid_id!(
    /// A WebRTC transport (one per direction per peer).
    TransportId
);
uuid_id!(
    /// A producer: one track a peer sends.
    ProducerId
);
uuid_id!(
    /// A consumer: one producer forwarded to one peer.
    ConsumerId
);
uuid_id!(
    /// A data producer: one data channel a peer sends on.
    DataProducerId
);
uuid_id!(
    /// A data consumer: one data producer forwarded to one peer.
    DataConsumerId
);

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id as the client sent it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
                    return Err(IdParseError::BadText);
                }
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdParseError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

text_id!(
    /// A peer: a random id the server gives each new session. Never the
    /// socket.io/engine.io session id: that one is the credential of a
    /// long-polling connection, and every room member learns peer ids.
    PeerId
);

impl PeerId {
    /// A fresh, unguessable peer id (a random UUID).
    pub fn random() -> Self {
        PeerId(Uuid::new_v4().hyphenated().to_string())
    }
}
text_id!(
    /// A room, named by the application.
    RoomId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_round_trip_and_reject_garbage() {
        let id = ProducerId::new();
        let parsed: ProducerId = id.to_string().parse().expect("own ids parse");
        assert_eq!(id, parsed);
        assert_eq!("nope".parse::<ProducerId>(), Err(IdParseError::NotUuid));
        let json = serde_json::to_string(&id).expect("serializes");
        assert_eq!(json, format!("\"{id}\""));
    }

    #[test]
    fn random_peer_ids_are_valid_and_differ() {
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_ne!(a, b);
        assert_eq!(a.as_str().parse::<PeerId>(), Ok(a.clone()));
    }

    #[test]
    fn text_ids_are_bounded() {
        assert!("room-1".parse::<RoomId>().is_ok());
        assert_eq!("".parse::<RoomId>(), Err(IdParseError::BadText));
        assert_eq!("a\nb".parse::<RoomId>(), Err(IdParseError::BadText));
        assert_eq!(
            "x".repeat(129).parse::<RoomId>(),
            Err(IdParseError::BadText)
        );
    }
}
