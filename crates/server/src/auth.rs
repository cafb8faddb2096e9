//! Access control: join tokens (JWT, HS256, signed with a shared secret)
//! that name the one room a peer may join and what it may do there
//! ([`Rights`]). [`TokenVerifier`] checks the token a client puts in its
//! socket.io auth payload (`io(url, {auth: {token}})`); [`mint`] makes one.
//!
//! Claims: `{"room": "R", "publish": bool, "subscribe": bool, "data": bool,
//! "exp": <unix seconds>, "sub"?: "<user name>"}`; a missing right is `false`.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use simplesfu_proto::{ErrorCode, RoomId, SignalingError};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shortest secret accepted: HS256 keys shorter than its 256-bit output are guessable.
pub const MIN_SECRET_BYTES: usize = 32;

/// The shared secret. Its `Debug` never shows it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenSecret(String);

impl TokenSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        TokenSecret(secret.into())
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.0.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "auth.secret is {} bytes; use at least {MIN_SECRET_BYTES} random characters (e.g. `openssl rand -hex 32`)",
                self.0.len()
            ));
        }
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether `presented` is this secret, compared in constant time.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// What a token allows in its room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rights {
    /// Produce audio and video.
    #[serde(default)]
    pub publish: bool,
    /// Consume the room's audio and video.
    #[serde(default)]
    pub subscribe: bool,
    /// Produce and consume data channels.
    #[serde(default)]
    pub data: bool,
}

/// The claims of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The only room the token can join.
    pub room: String,
    #[serde(flatten)]
    pub rights: Rights,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The user's name, for the application; the server does not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// What a verified token lets its connection do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub room: RoomId,
    pub rights: Rights,
}

/// One thing a request needs the right to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Right {
    Publish,
    Subscribe,
    Data,
}

impl Grant {
    pub(crate) fn allows(&self, right: Right) -> bool {
        match right {
            Right::Publish => self.rights.publish,
            Right::Subscribe => self.rights.subscribe,
            Right::Data => self.rights.data,
        }
    }
}

/// Check `right` against a peer's grant (`None`: tokens are off, all allowed).
pub(crate) fn require(grant: Option<&Grant>, right: Right) -> Result<(), SignalingError> {
    match grant {
        Some(grant) if !grant.allows(right) => {
            let (what, claim) = match right {
                Right::Publish => ("produce audio or video", "publish"),
                Right::Subscribe => ("consume audio or video", "subscribe"),
                Right::Data => ("use data channels", "data"),
            };
            Err(SignalingError::new(
                ErrorCode::Forbidden,
                format!("your join token does not allow you to {what} (it needs `{claim}: true`)"),
            ))
        }
        _ => Ok(()),
    }
}

/// Check that a peer may join `room`.
pub(crate) fn require_room(grant: Option<&Grant>, room: &RoomId) -> Result<(), SignalingError> {
    match grant {
        Some(grant) if &grant.room != room => Err(SignalingError::new(
            ErrorCode::Forbidden,
            format!("your join token is for room `{}`, not `{room}`", grant.room),
        )),
        _ => Ok(()),
    }
}

/// Why a connection was refused; the `Display` text is the `connect_error`
/// message the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: this server needs a join token; connect with io(url, {{auth: {{token}}}})")]
    Missing,
    #[error("invalid join token: it has expired; ask for a new one")]
    Expired,
    /// The token's `nbf` (not before) is still in the future.
    #[error("invalid join token: it is not valid yet (its `nbf` is in the future); check the clocks or wait")]
    NotYetValid,
    #[error("invalid join token: the signature does not match this server's secret")]
    BadSignature,
    #[error("invalid join token: {0}")]
    Malformed(String),
}

impl AuthError {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::BadSignature => "bad_signature",
            AuthError::Malformed(_) => "malformed",
        }
    }
}

/// Verifies join tokens with the shared secret.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenVerifier")
    }
}

impl TokenVerifier {
    pub fn new(secret: &TokenSecret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        // A token with `nbf` is refused before that time (RFC 7519 4.1.5).
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        TokenVerifier {
            key: DecodingKey::from_secret(secret.bytes()),
            validation,
        }
    }

    /// Check the socket.io auth payload: `{token: "<jwt>"}`.
    pub fn verify_auth_payload(
        &self,
        auth: Option<&serde_json::Value>,
    ) -> Result<Grant, AuthError> {
        let token = auth
            .and_then(|a| a.get("token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty());
        self.verify(token.ok_or(AuthError::Missing)?)
    }

    /// Check a token's signature and expiry and read its grant.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm => {
                    AuthError::Malformed("it must be signed with HS256".into())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Malformed(format!("the `{claim}` claim is missing"))
                }
                ErrorKind::Json(_) => AuthError::Malformed(
                    "its claims must include a string `room` and a numeric `exp`".into(),
                ),
                _ => AuthError::Malformed("it is not a JWT".into()),
            })?;
        let room = data.claims.room.parse::<RoomId>().map_err(|_| {
            AuthError::Malformed(
                "its `room` is not a valid room id (1 to 128 printable characters)".into(),
            )
        })?;
        Ok(Grant {
            room,
            rights: data.claims.rights,
        })
    }
}

/// A signed token for `room` with `rights`, valid for `ttl` from now.
pub fn mint(
    secret: &TokenSecret,
    room: &str,
    rights: Rights,
    ttl: Duration,
    sub: Option<String>,
) -> Result<String, String> {
    room.parse::<RoomId>()
        .map_err(|_| format!("`{room}` is not a valid room id (1 to 128 printable characters)"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970".to_owned())?;
    let claims = Claims {
        room: room.to_owned(),
        rights,
        exp: (now + ttl).as_secs(),
        iat: Some(now.as_secs()),
        sub,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.bytes()),
    )
    .map_err(|e| format!("could not sign the token: {e}"))
}

/// A duration like `90s`, `30m`, `1h`, `7d`, or plain seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write 90s, 30m, 1h or 7d"))?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`: use s, m, h or d"
            ))
        }
    };
    if value == 0 {
        return Err("the ttl must be more than 0".into());
    }
    value
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// The token of an `Authorization: Bearer <token>` header (WHIP/WHEP,
/// `/cluster/rooms`), if there is a non-empty one.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret() -> TokenSecret {
        TokenSecret::new("0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_minted_token_verifies_with_its_room_and_rights() {
        let rights = Rights {
            publish: false,
            subscribe: true,
            data: true,
        };
        let token = mint(&secret(), "A", rights, Duration::from_secs(60), None).expect("mint");
        let grant = TokenVerifier::new(&secret())
            .verify_auth_payload(Some(&json!({ "token": token })))
            .expect("valid");
        assert_eq!(grant.room.as_str(), "A");
        assert_eq!(grant.rights, rights);
        assert!(require(Some(&grant), Right::Subscribe).is_ok());
        assert_eq!(
            require(Some(&grant), Right::Publish)
                .expect_err("no publish")
                .code,
            ErrorCode::Forbidden
        );
        assert!(
            require(None, Right::Publish).is_ok(),
            "tokens off: everything allowed"
        );
        let b: RoomId = "B".parse().expect("room id");
        let refused = require_room(Some(&grant), &b).expect_err("room B");
        assert!(
            refused.message.contains("`A`") && refused.message.contains("`B`"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn refusals_say_why() {
        let verifier = TokenVerifier::new(&secret());
        assert_eq!(verifier.verify_auth_payload(None), Err(AuthError::Missing));
        assert_eq!(
            verifier.verify_auth_payload(Some(&json!({ "token": "" }))),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            verifier.verify("nonsense"),
            Err(AuthError::Malformed(_))
        ));
        let other = TokenSecret::new("another secret that is long enough!!");
        let forged = mint(
            &other,
            "A",
            Rights::default(),
            Duration::from_secs(60),
            None,
        )
        .expect("mint");
        assert_eq!(verifier.verify(&forged), Err(AuthError::BadSignature));
        let old = Claims {
            room: "A".into(),
            rights: Rights::default(),
            exp: 1_000_000,
            iat: None,
            sub: None,
        };
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &old,
            &EncodingKey::from_secret(secret().bytes()),
        )
        .expect("sign");
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let later = serde_json::json!({"room": "A", "exp": now + 7200, "nbf": now + 3600});
        let early = encode(
            &Header::new(Algorithm::HS256),
            &later,
            &EncodingKey::from_secret(secret().bytes()),
        )
        .expect("sign");
        assert_eq!(
            verifier.verify(&early),
            Err(AuthError::NotYetValid),
            "nbf an hour from now"
        );
        assert!(AuthError::Missing.to_string().contains("auth: {token}"));
    }

    #[test]
    fn ttl_parses_units_and_refuses_garbage() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("1w").expect_err("unit").contains("unknown unit"));
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenSecret::new("short")
            .validate()
            .expect_err("short")
            .contains("at least 32"));
        assert!(!format!("{:?}", secret()).contains("0123"));
    }
}
