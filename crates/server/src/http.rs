//! The HTTP side: socket.io signaling, static files and `/health`, with
//! permissive CORS so pages served from anywhere can signal (polling and
//! websocket alike).

use crate::sfu::Sfu;
use axum::extract::State;
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
/// directory's `index.html` is its index page), `GET /health` reports counts.
pub fn app(sfu: Sfu, io_layer: SocketIoLayer, static_dir: &Path) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback_service(ServeDir::new(static_dir))
        .with_state(sfu)
        .layer(io_layer)
        .layer(CorsLayer::permissive())
}

async fn health(State(sfu): State<Sfu>) -> Json<serde_json::Value> {
    let stats = serde_json::to_value(sfu.stats()).unwrap_or_default();
    let mut body = serde_json::json!({ "status": "ok" });
    if let (Some(out), Some(counts)) = (body.as_object_mut(), stats.as_object()) {
        out.extend(counts.clone());
    }
    Json(body)
}
