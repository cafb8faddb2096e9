//! simplesfu: a selective forwarding unit for browsers running
//! `mediasoup-client`, with the socket.io signaling protocol of
//! `simple-mediasoup-peer-client` (event `mediasoupSignaling`).
//!
//! Run the `simplesfu` binary, or attach the SFU to your own socketioxide
//! server in one call:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use socketioxide::SocketIo;
//! let (layer, io) = SocketIo::builder().max_payload(simplesfu::MAX_SOCKET_IO_PAYLOAD).build_layer();
//! let sfu = simplesfu::Sfu::attach(&io, simplesfu::SfuOptions::default())?;
//! let app = axum::Router::<()>::new().layer(layer);
//! # let _ = (sfu, app); Ok(()) }
//! ```
//!
//! If your application already handles the default namespace, create the SFU
//! with [`Sfu::new`] and call [`Sfu::on_connect`] from your handler.

mod config;
mod errors;
mod http;
mod registry;
mod sfu;
mod signaling;

pub use config::Config;
pub use errors::SfuError;
pub use http::{app, MAX_SOCKET_IO_PAYLOAD};
pub use registry::RegistryCounts;
pub use sfu::{Sfu, SfuOptions, SfuStats};
