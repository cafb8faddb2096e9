//! An application with its own axum routes and its own socket.io events that
//! adds the SFU with one call. Run it with
//! `cargo run -p simplesfu --example attach [LISTEN_ADDRESS]` (default
//! 127.0.0.1:3001) and point a simple-mediasoup-peer-client at the address it
//! prints. tests/signaling/attach.test.mjs runs it.

use axum::routing::get;
use simplesfu::{socket_io_builder, Sfu, SfuOptions};
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use std::net::{IpAddr, Ipv4Addr};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();

    // socket.io with the SFU's limits (message sizes, send queues).
    let (layer, io) = socket_io_builder().build_layer();

    // The application's own namespace handler: a chat event of its own, and
    // the SFU's signaling on the same socket. (An application without a "/"
    // handler of its own would call `Sfu::attach(&io, options)` instead.)
    let sfu = Sfu::new(SfuOptions {
        rtc_listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtc_port: 0,
        ..SfuOptions::default()
    })?;
    let media = sfu.clone();
    // Event handlers go in a connect middleware: it runs before the client is
    // told it is connected, so no early request is lost.
    let register = async move |socket: SocketRef| {
        socket.on(
            "chat",
            async |socket: SocketRef, Data(text): Data<String>| {
                socket.broadcast().emit("chat", &text).await.ok();
            },
        );
        media.on_connect(socket);
        Ok::<(), std::convert::Infallible>(())
    };
    io.ns("/", (async |_: SocketRef| {}).with(register));

    let app = axum::Router::new()
        .route("/", get(|| async { "my app, with an SFU inside" }))
        .layer(layer);
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "attach example listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    sfu.shutdown();
    Ok(())
}
