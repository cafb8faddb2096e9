//! socket.io extractors that bound what a client sends before it is parsed.
//! socketioxide hands handlers the raw text of a message and parses it only
//! when an extractor asks; these look at its length first, so an oversized
//! connect payload or request costs a length check, not a JSON tree many
//! times its size.

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::TryData;
use socketioxide::handler::{FromConnectParts, FromMessageParts};
use socketioxide::socket::Socket;
use std::convert::Infallible;
use std::sync::Arc;

/// Largest socket.io connect (auth) payload, in bytes of JSON. A join token
/// and a resume claim need a few hundred bytes.
pub const MAX_AUTH_BYTES: usize = 4096;

/// Bytes a request message may carry beyond the request itself: the event
/// name and the array around it.
const ENVELOPE_BYTES: usize = 64;

/// The auth payload of a connecting socket, parsed only when it is at most
/// [`MAX_AUTH_BYTES`]; `Err` holds the size of one that is larger.
pub struct BoundedAuth(pub Result<Option<Value>, usize>);

impl<A: Adapter> FromConnectParts<A> for BoundedAuth {
    type Error = Infallible;
    fn from_connect_parts(
        socket: &Arc<Socket<A>>,
        auth: &Option<socketioxide_core::Value>,
    ) -> Result<Self, Infallible> {
        let size = auth.as_ref().map_or(0, socketioxide_core::Value::len);
        if size > MAX_AUTH_BYTES {
            return Ok(BoundedAuth(Err(size)));
        }
        let TryData(parsed) = TryData::<Value>::from_connect_parts(socket, auth)?;
        Ok(BoundedAuth(Ok(parsed.ok())))
    }
}

/// The largest request a socket may send, in bytes of JSON: set in the
/// socket's extensions when it becomes a peer.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimit(pub usize);

/// A request's JSON, parsed only when its message is within the socket's
/// [`RequestLimit`]; `Err` holds the size of one that is larger. A message
/// that is not JSON is `Ok(Value::Null)`, which the protocol refuses with a
/// coded error like any other bad request.
pub struct BoundedRequest(pub Result<Value, usize>);

impl<A: Adapter> FromMessageParts<A> for BoundedRequest {
    type Error = Infallible;
    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        message: &mut socketioxide_core::Value,
        ack: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let limit = socket
            .extensions
            .get::<RequestLimit>()
            .map_or(simplesfu_proto::MAX_REQUEST_BYTES, |l| l.0);
        let size = message.len();
        if size > limit.saturating_add(ENVELOPE_BYTES) {
            return Ok(BoundedRequest(Err(size)));
        }
        let TryData(parsed) = TryData::<Value>::from_message_parts(socket, message, ack)?;
        Ok(BoundedRequest(Ok(parsed.unwrap_or(Value::Null))))
    }
}
