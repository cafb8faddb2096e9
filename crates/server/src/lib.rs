//! simplesfu: a selective forwarding unit for browsers running
//! `mediasoup-client`, with the socket.io signaling protocol of
//! `simple-mediasoup-peer-client` (event `mediasoupSignaling`).
//!
//! Run the `simplesfu` binary, or attach the SFU to your own socketioxide
//! server in one call:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! // socket.io with the SFU's limits on message sizes and send queues.
//! let (layer, io) = simplesfu::socket_io_builder().build_layer();
//! let sfu = simplesfu::Sfu::attach(&io, simplesfu::SfuOptions::default())?;
//! let app = axum::Router::<()>::new().layer(layer);
//! # let _ = (sfu, app); Ok(()) }
//! ```
//!
//! If your application already handles the default namespace, create the SFU
//! with [`Sfu::new`] and call [`Sfu::on_connect`] from your handler.

mod auth;
pub mod cluster;
mod config;
mod embedded;
mod errors;
mod extract;
mod http;
mod limits;
mod metrics;
mod netif;
mod panics;
mod registry;
mod serve;
mod session;
mod sfu;
mod signaling;
pub mod span;
mod speaker;
pub mod tls;
mod whip;

pub use auth::{mint, parse_ttl, AuthError, Claims, Grant, Rights, TokenSecret, TokenVerifier};
pub use config::{
    AllowedOrigins, AuthConfig, Cli, ClusterConfig, Command, Config, ConfigError, HttpConfig,
    IceServer, Overrides, RtcConfig, TlsConfig, TokenArgs,
};
pub use errors::SfuError;
pub use extract::{BoundedAuth, BoundedRequest, RequestLimit, MAX_AUTH_BYTES};
pub use http::{app, socket_io_builder, MAX_SOCKET_IO_PAYLOAD, SOCKET_IO_BUFFER_PACKETS};
pub use limits::Limits;
pub use panics::log_panics;
pub use registry::RegistryCounts;
pub use serve::{serve, ServeLimits, TLS_HANDSHAKE_TIMEOUT};
pub use session::ResumeError;
pub use sfu::{AuthPayloadTooLarge, Sfu, SfuOptions, SfuStats};
