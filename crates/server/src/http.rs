//! The HTTP side: socket.io signaling, static files and `/health`, with
//! permissive CORS so pages served from anywhere can signal (polling and
//! websocket alike).

use crate::sfu::Sfu;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use socketioxide::layer::SocketIoLayer;
use std::path::Path;
use tower_http::cors::CorsLayer;
use tower_http::services::ServeDir;

/// Largest socket.io message accepted, in bytes. Requests above the
/// protocol's own limit but below this one get a `payload_too_large` ack;
/// above this one engine.io closes the connection.
pub const MAX_SOCKET_IO_PAYLOAD: u64 = 1_000_000;

/// The whole HTTP application: `io_layer` (from
/// `SocketIo::builder().max_payload(MAX_SOCKET_IO_PAYLOAD).build_layer()`)
/// serves socket.io at `/socket.io/`, `static_dir` is served at `/` (a
/// directory's `index.html` is its index page), `GET /health` reports counts,
/// `GET /simplesfu-client.js` is the browser client's script-tag bundle.
pub fn app(sfu: Sfu, io_layer: SocketIoLayer, static_dir: &Path) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/simplesfu-client.js", get(client_bundle))
        .fallback_service(ServeDir::new(static_dir))
        .with_state(sfu)
        .layer(io_layer)
        .layer(CorsLayer::permissive())
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

async fn health(State(sfu): State<Sfu>) -> Json<serde_json::Value> {
    let stats = serde_json::to_value(sfu.stats()).unwrap_or_default();
    let mut body = serde_json::json!({ "status": "ok" });
    if let (Some(out), Some(counts)) = (body.as_object_mut(), stats.as_object()) {
        out.extend(counts.clone());
    }
    Json(body)
}
