//! The HTTP side: socket.io signaling, static files, `/health` and
//! `/metrics`, with the CORS policy of the configuration: any origin, a list,
//! or this server's own. Since WebSockets are not subject to CORS, socket.io
//! requests whose `Origin` the policy refuses are refused here too.

use crate::config::AllowedOrigins;
use crate::sfu::Sfu;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use socketioxide::layer::SocketIoLayer;
use std::path::Path;
use std::sync::Arc;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;

/// Largest socket.io message accepted, in bytes. Requests above the
/// protocol's own limit but below this one get a `payload_too_large` ack;
/// above this one engine.io closes the connection.
pub const MAX_SOCKET_IO_PAYLOAD: u64 = 1_000_000;

/// Packets socket.io may queue for one connection (`max_buffer_size`).
/// Every request is acked, and a client that sends a burst of requests gets
/// a burst of acks: with socketioxide's default of 128, a flood of 2000
/// requests lost about 200 acks (found by the hostile-client suite); with
/// 4096, floods of 30000 lose none (the writer drains during the burst). Not
/// more: a client that stops reading keeps up to this many pushes queued
/// (e.g. `availableProducers` of a big room every second) until its
/// heartbeat times out.
pub const SOCKET_IO_BUFFER_PACKETS: usize = 4096;

/// engine.io heartbeat: a ping this often, and a connection whose pong is
/// this late is closed. A client that stops reading fills its send queue;
/// the ping then cannot be queued and engine.io closes the connection, so
/// this is also how long such a client can hold its queue (socketioxide's
/// defaults are 25 s and 20 s).
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// See [`HEARTBEAT_INTERVAL`].
pub const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A socket.io builder with the limits the SFU relies on: messages over
/// [`MAX_SOCKET_IO_PAYLOAD`] close the connection, over HTTP long-polling
/// and WebSocket alike (engine.io's own WebSocket default is 64 MiB, read
/// and parsed before any authentication), and each connection may queue
/// [`SOCKET_IO_BUFFER_PACKETS`] packets. Add your own settings, then
/// `build_layer()`.
pub fn socket_io_builder() -> socketioxide::SocketIoBuilder {
    let max_message = usize::try_from(MAX_SOCKET_IO_PAYLOAD).unwrap_or(usize::MAX);
    socketioxide::SocketIo::builder()
        .ping_interval(HEARTBEAT_INTERVAL)
        .ping_timeout(HEARTBEAT_TIMEOUT)
        .max_payload(MAX_SOCKET_IO_PAYLOAD)
        .ws_max_message_size(max_message)
        .ws_max_frame_size(max_message)
        .max_buffer_size(SOCKET_IO_BUFFER_PACKETS)
}

/// The whole HTTP application: `io_layer` (from
/// [`socket_io_builder`]`().build_layer()`)
/// serves socket.io at `/socket.io/`, `static_dir` is served at `/` (a
/// directory's `index.html` is its index page; `None`: the example pages
/// built into the binary), `GET /health` reports counts,
/// `GET /metrics` is the Prometheus page, `GET /simplesfu-client.js` is the
/// browser client's script-tag bundle. `origins` says which pages may signal.
pub fn app(
    sfu: Sfu,
    io_layer: SocketIoLayer,
    static_dir: Option<&Path>,
    origins: AllowedOrigins,
) -> Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/cluster/rooms/{room}", get(cluster_room))
        .route("/metrics", get(metrics))
        .route("/simplesfu-client.js", get(client_bundle))
        .route(
            "/whip/{room}",
            post(crate::whip::publish).options(crate::whip::options),
        )
        .route(
            "/whip/{room}/{session}",
            axum::routing::delete(crate::whip::delete::<false>)
                .patch(crate::whip::patch::<false>)
                .options(crate::whip::session_options),
        )
        .route(
            "/whep/{room}",
            post(crate::whip::play).options(crate::whip::options),
        )
        .route(
            "/whep/{room}/{session}",
            axum::routing::delete(crate::whip::delete::<true>)
                .patch(crate::whip::patch::<true>)
                .options(crate::whip::session_options),
        )
        // An SDP offer is a few KB; refused with 413 above this.
        .layer(DefaultBodyLimit::max(crate::whip::sdp::MAX_OFFER_BYTES));
    let router = match static_dir {
        Some(dir) => router.fallback_service(ServeDir::new(dir)),
        None => router.fallback(get(crate::embedded::serve)),
    };
    let router = router.with_state(sfu).layer(io_layer);
    // Outside the CORS layer, which takes every OPTIONS for a preflight.
    let whip_options = axum::middleware::from_fn(crate::whip::plain_options);
    if origins == AllowedOrigins::Any {
        return router
            .layer(CorsLayer::permissive().expose_headers([
                header::LOCATION,
                header::ETAG,
                header::LINK,
            ]))
            .layer(whip_options);
    }
    let origins = Arc::new(origins);
    let guard = origins.clone();
    let allow = AllowOrigin::predicate(move |origin, parts| origins.allows(origin, &parts.headers));
    router
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let guard = guard.clone();
                async move { refuse_foreign_signaling(&guard, request, next).await }
            },
        ))
        .layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods(AllowMethods::mirror_request())
                .allow_headers(AllowHeaders::mirror_request())
                // What a browser WHIP client reads of the answer.
                .expose_headers([header::LOCATION, header::ETAG, header::LINK]),
        )
        .layer(whip_options)
}

impl AllowedOrigins {
    /// Whether a page from `origin` may call this server, whose requests
    /// carry `headers` (their `Host` is this server's name as the page saw it).
    pub fn allows(&self, origin: &HeaderValue, headers: &HeaderMap) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        // This server's own pages (the examples) may always signal.
        let same = host.is_some_and(|host| same_authority(origin, host));
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::SameOrigin => same,
            AllowedOrigins::List(list) => {
                same || list
                    .iter()
                    .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
            }
        }
    }
}

/// `https://example.com:443` names the same server as Host `example.com`.
fn same_authority(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let strip = |a: &str| {
        a.strip_suffix(default_port)
            .map(str::to_owned)
            .unwrap_or_else(|| a.to_owned())
    };
    strip(authority).eq_ignore_ascii_case(&strip(host))
}

/// Browsers send `Origin` on socket.io requests (polling and the WebSocket
/// upgrade alike); one the policy refuses gets a 403 that says what to set.
/// Clients that are not browsers send none and pass.
async fn refuse_foreign_signaling(
    origins: &AllowedOrigins,
    request: Request,
    next: Next,
) -> Response {
    let is_signaling = request.uri().path().starts_with("/socket.io");
    if let (true, Some(origin)) = (is_signaling, request.headers().get(header::ORIGIN)) {
        if !origins.allows(origin, request.headers()) {
            tracing::info!("signaling refused for a page of another origin");
            let message = "this page's origin may not use this server: add it to http.cors_origins (--cors-origins)";
            return (StatusCode::FORBIDDEN, message).into_response();
        }
    }
    next.run(request).await
}

/// The script-tag bundle of `client/` (committed, checked against its sources
/// by `npm run check:client-bundle`), built into the binary so that pages
/// need no Node.js anywhere.
const CLIENT_BUNDLE: &str = include_str!("../../../client/bundle/simplesfu-client.js");

async fn client_bundle() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CLIENT_BUNDLE,
    )
}

async fn metrics(State(sfu): State<Sfu>, headers: HeaderMap) -> Response {
    if let Some(token) = &sfu.inner.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| token.matches(p.trim())) {
            let message = "/metrics needs `Authorization: Bearer <token>` with the token of auth.metrics_token (SIMPLESFU_METRICS_TOKEN)";
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                message,
            )
                .into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&sfu).await,
    )
        .into_response()
}

/// `GET /cluster/rooms/{room}`: the node that serves a room, or the one
/// to open it on (the least loaded), for a load balancer or an app that
/// sends each room's clients to its node.
async fn cluster_room(
    State(sfu): State<Sfu>,
    axum::extract::Path(room): axum::extract::Path<String>,
    headers: HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(cluster) = sfu.inner.cluster.get().cloned() else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "this server is a single node, not part of a cluster ([cluster] redis_url)",
        )
            .into_response();
    };
    let Ok(room) = room.parse::<simplesfu_proto::RoomId>() else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "a room id is 1 to 128 printable characters",
        )
            .into_response();
    };
    // Which rooms exist is for those who may join them.
    if let Err(e) = sfu.room_grant(&headers, &room, " with a token of the room") {
        return e.into_response();
    }
    Json(cluster.place_of(room.as_str()).await).into_response()
}

async fn health(State(sfu): State<Sfu>) -> Json<serde_json::Value> {
    let stats = serde_json::to_value(sfu.stats()).unwrap_or_default();
    let mut body = serde_json::json!({ "status": "ok" });
    if let (Some(out), Some(counts)) = (body.as_object_mut(), stats.as_object()) {
        out.extend(counts.clone());
        if let Some(cluster) = sfu.cluster() {
            out.insert(
                "cluster".into(),
                serde_json::to_value(cluster).unwrap_or_default(),
            );
        }
    }
    Json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(h).expect("header"));
        headers
    }

    #[test]
    fn same_origin_compares_the_origin_with_the_host_asked_for() {
        let same = AllowedOrigins::SameOrigin;
        let origin = |o: &str| HeaderValue::from_str(o).expect("header");
        assert!(same.allows(
            &origin("https://sfu.example:8443"),
            &host("sfu.example:8443")
        ));
        assert!(same.allows(&origin("https://sfu.example"), &host("sfu.example:443")));
        assert!(!same.allows(&origin("https://evil.example"), &host("sfu.example")));
        assert!(!same.allows(&origin("https://sfu.example"), &HeaderMap::new()));
        let list = AllowedOrigins::List(vec!["https://app.example".into()]);
        assert!(list.allows(&origin("https://app.example"), &host("sfu.example")));
        assert!(
            list.allows(&origin("https://sfu.example"), &host("sfu.example")),
            "and this server's own pages"
        );
        assert!(!list.allows(&origin("https://evil.example"), &host("sfu.example")));
    }
}
