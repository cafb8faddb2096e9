//! The server's configuration: one serde struct ([`Config`]) with defaults
//! that run a local server out of the box, filled in three layers: a TOML
//! file (`--config PATH` or `SIMPLESFU_CONFIG`), then `SIMPLESFU_*`
//! environment variables, then command-line flags ([`Cli`]); each layer
//! overrides the one before. `simplesfu.example.toml` at the repository root
//! lists every option with its default.

use crate::auth::{parse_ttl, Rights, TokenSecret};
use crate::limits::Limits;
use crate::sfu::SfuOptions;
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the configuration cannot be used. The message names the file, the key
/// or the option to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a wrongly typed value;
    /// the message names the key and its line.
    #[error("invalid configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The options contradict each other or a value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Every option of the server. Missing keys take their defaults; unknown keys
/// are refused (a typo must not silently fall back to a default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Log level or tracing filter (error, warn, info, debug, trace, or
    /// directives); RUST_LOG's directives are added after it.
    pub log_level: String,
    /// Resend `availableProducers` to every room this often, in
    /// milliseconds, besides on every change; 0 turns the resend off.
    pub available_producers_interval_ms: u64,
    /// How long the peer of a client that announced session resume waits
    /// for it after its socket drops, in milliseconds; 0 turns resume off.
    pub resume_grace_ms: u64,
    pub http: HttpConfig,
    pub rtc: RtcConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub cluster: ClusterConfig,
}

/// Several nodes coordinated through Redis (docs/CLUSTER.md). Without
/// `redis_url` (the default) the server is a single node, as always.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[:password@]host:port[/db]`. Set: this server is a node of
    /// the cluster that shares this Redis (and `prefix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// This node's id, unique in the cluster (1-64 of `A-Z a-z 0-9 . _ -`).
    /// Default: the host name and a random suffix, new at every start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Where clients and the other nodes reach this node's HTTP server.
    /// Default: the address it listens on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_url: Option<String>,
    /// Prefix of every Redis key, so that clusters can share one Redis.
    pub prefix: String,
    /// How often the node refreshes its registration, in milliseconds.
    pub heartbeat_ms: u64,
    /// How long a registration outlives the node's last heartbeat, in
    /// milliseconds: a node that stops (crash, network) is dropped by the
    /// others after at most this plus one heartbeat.
    pub node_ttl_ms: u64,
    /// The secret the nodes share (at least 32 characters; from the file
    /// or `SIMPLESFU_CLUSTER_SECRET`, never a flag). Set: rooms span nodes
    /// (peers of one room on several nodes see and hear each other through
    /// links between the nodes, whose messages are signed with it and
    /// whose ICE credentials derive from it). Unset: a room lives on one
    /// node (`room_on_another_node` elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Peers this node takes before a room it serves is pointed elsewhere
    /// for its new peers (`GET /cluster/rooms/<room>`, rooms across nodes
    /// only): a room stays on the node that holds it while that node has
    /// room, then grows onto the least loaded node (one that has the room's
    /// peers first). Default: 250 per media worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_peers: Option<u64>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(crate::cluster::redacted_url),
            )
            .field("node_id", &self.node_id)
            .field("node_url", &self.node_url)
            .field("prefix", &self.prefix)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("node_ttl_ms", &self.node_ttl_ms)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("capacity_peers", &self.capacity_peers)
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            node_id: None,
            node_url: None,
            prefix: "simplesfu".into(),
            heartbeat_ms: 1000,
            node_ttl_ms: 5000,
            secret: None,
            capacity_peers: None,
        }
    }
}

impl ClusterConfig {
    fn validate(&self) -> Result<(), String> {
        let Some(url) = &self.redis_url else {
            return Ok(());
        };
        if !url.starts_with("redis://") {
            return Err(format!(
                "cluster.redis_url {} must start with redis:// (TLS to Redis is not supported: keep Redis on a private network)",
                crate::cluster::redacted_url(url)
            ));
        }
        if let Some(id) = &self.node_id {
            if !crate::cluster::valid_node_id(id) {
                return Err(format!(
                    "cluster.node_id `{id}`: use 1 to 64 of A-Z a-z 0-9 . _ -"
                ));
            }
        }
        if !crate::cluster::valid_node_id(&self.prefix) {
            return Err(format!(
                "cluster.prefix `{}`: use 1 to 64 of A-Z a-z 0-9 . _ -",
                self.prefix
            ));
        }
        if !(100..=10_000).contains(&self.heartbeat_ms) {
            return Err(format!(
                "cluster.heartbeat_ms is {}; use 100 to 10000",
                self.heartbeat_ms
            ));
        }
        // 0 in a node's hash means "not published" (a node of an older
        // version) and counts as no limit: as a setting it would read as
        // a node that never fills up.
        if self.capacity_peers == Some(0) {
            return Err(
                "cluster.capacity_peers is 0; use 1 or more (peers this node takes before a room grows onto other nodes), or leave it unset for 250 per media worker"
                    .into(),
            );
        }
        if self
            .secret
            .as_ref()
            .is_some_and(|s| s.chars().count() < 32 || s.len() > 1024)
        {
            return Err(
                "cluster.secret must be 32 to 1024 characters (e.g. `openssl rand -hex 32`)".into(),
            );
        }
        if self.node_ttl_ms < 2 * self.heartbeat_ms || self.node_ttl_ms > 60_000 {
            return Err(format!(
                "cluster.node_ttl_ms is {}; use at least twice heartbeat_ms ({}) and at most 60000",
                self.node_ttl_ms,
                2 * self.heartbeat_ms
            ));
        }
        Ok(())
    }

    /// The options of `Cluster::start`, when a Redis URL is set;
    /// `listening` is the URL the HTTP server listens on.
    pub fn options(&self, listening: &str) -> Option<crate::cluster::ClusterOptions> {
        Some(crate::cluster::ClusterOptions {
            redis_url: self.redis_url.clone()?,
            node_id: self
                .node_id
                .clone()
                .unwrap_or_else(crate::cluster::generated_node_id),
            node_url: self
                .node_url
                .clone()
                .unwrap_or_else(|| listening.to_owned()),
            prefix: self.prefix.clone(),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            node_ttl: Duration::from_millis(self.node_ttl_ms),
            secret: self.secret.clone(),
            capacity_peers: self.capacity_peers,
        })
    }
}

/// The HTTP server: signaling, static files, `/health`, `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP(S) server; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory of static files served at `/`. Default: the example pages
    /// built into the binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_dir: Option<PathBuf>,
    /// Origins (`https://app.example.com`) whose pages may signal, besides
    /// this server's own pages. Empty: any origin when access tokens are
    /// off, only this server's own pages when they are on. `["*"]` allows
    /// any origin explicitly.
    pub cors_origins: Vec<String>,
}

/// The media side: UDP sockets of the workers and what ICE candidates say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtcConfig {
    /// Address the media sockets bind to.
    pub listen_ip: IpAddr,
    /// UDP port of worker 0; worker i uses port + i. 0 picks free ports.
    pub port: u16,
    /// Addresses put in ICE candidates (your public addresses behind NAT),
    /// IPv4 and IPv6: one address or a list. Default (empty): the listen
    /// address, or when that is 0.0.0.0 / :: every address of this machine
    /// in that family plus loopback.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub announced_ip: Vec<IpAddr>,
    /// Media worker threads. Default: one per core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Offer ICE over UDP (the normal path for media).
    pub ice_udp: bool,
    /// Offer ICE over TCP (passive candidates on the same port numbers as
    /// UDP) for networks that block UDP.
    pub ice_tcp: bool,
    /// Estimate each viewer's bandwidth and send it the simulcast and
    /// temporal layers that fit (on by default, see docs/ENGINE.md
    /// "Bandwidth allocation"). Off: the best layer for everyone (about 9%
    /// less CPU per forwarded packet; viewers on slow links freeze).
    pub bandwidth_estimation: bool,
    /// STUN and TURN servers told to WHIP and WHEP clients (`Link` headers
    /// of their answers, RFC 9725 §4.6), for clients behind NATs that the
    /// server's own candidates do not get through. Not used by socket.io
    /// clients, whose pages configure their own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ice_servers: Vec<IceServer>,
}

/// A STUN or TURN server (as `RTCIceServer` has them).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:...`.
    pub urls: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl std::fmt::Debug for IceServer {
    // The credential is a secret: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl IceServer {
    /// Refuse what a `Link` header could not carry, or what is not an ICE
    /// server URL.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let scheme_ok = ["stun:", "stuns:", "turn:", "turns:"]
            .iter()
            .any(|s| self.urls.starts_with(s));
        let clean = |text: &str| {
            !text.is_empty()
                && text.len() <= 256
                && text
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '<' | '>' | '\\'))
        };
        if !scheme_ok || !clean(&self.urls) {
            return Err(format!(
                "rtc.ice_servers: `{}` is not a stun:, stuns:, turn: or turns: URL of at most 256 visible characters",
                self.urls
            ));
        }
        let turn = self.urls.starts_with("turn");
        match (&self.username, &self.credential) {
            (Some(u), Some(c)) if clean(u) && clean(c) => Ok(()),
            (None, None) if !turn => Ok(()),
            (None, None) => Err(format!(
                "rtc.ice_servers: the TURN server `{}` needs a username and a credential",
                self.urls
            )),
            _ => Err(format!(
                "rtc.ice_servers: `{}`: give both username and credential, each 1 to 256 visible characters without quotes",
                self.urls
            )),
        }
    }

    /// The `Link` header value (RFC 9725 §4.6).
    pub(crate) fn link(&self) -> String {
        match (&self.username, &self.credential) {
            (Some(u), Some(c)) => format!(
                "<{}>; rel=\"ice-server\"; username=\"{u}\"; credential=\"{c}\"; credential-type=\"password\"",
                self.urls
            ),
            _ => format!("<{}>; rel=\"ice-server\"", self.urls),
        }
    }
}

/// HTTPS/WSS. Without a certificate the server speaks plain HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Development: generate a self-signed certificate for localhost and
    /// this machine's LAN addresses at start.
    pub self_signed: bool,
}

/// Access control with signed join tokens (JWT, HS256).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared secret that signs join tokens. Set: every connection needs a
    /// valid token. Unset (default): anyone may connect and do anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<TokenSecret>,
    /// Bearer token that `GET /metrics` requires (`Authorization: Bearer
    /// <token>`). Unset (default): /metrics is open, as on a private network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<TokenSecret>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            available_producers_interval_ms: 1000,
            resume_grace_ms: 15_000,
            http: HttpConfig::default(),
            rtc: RtcConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            static_dir: None,
            cors_origins: Vec::new(),
        }
    }
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            listen_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 40000,
            announced_ip: Vec::new(),
            workers: None,
            ice_udp: true,
            ice_tcp: true,
            bandwidth_estimation: true,
            ice_servers: Vec::new(),
        }
    }
}

/// `announced_ip = "203.0.113.7"` as well as `announced_ip = ["203.0.113.7", "2001:db8::7"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "an IP address or a list of IP addresses")]
    enum OneOrMany {
        One(IpAddr),
        Many(Vec<IpAddr>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(ip) => vec![ip],
        OneOrMany::Many(ips) => ips,
    })
}

/// Which pages may signal (see [`HttpConfig::cors_origins`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    /// Pages served by this server (the `Origin` names the `Host` asked for).
    SameOrigin,
    /// These origins and this server's own pages.
    List(Vec<String>),
}

impl Config {
    /// Parse a TOML document. An unknown key is an error that names it.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Read and parse a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text, path)
    }

    /// Refuse contradictory or out-of-range settings before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) | (None, Some(_)) => {
                return invalid(
                    "tls.cert and tls.key (--tls-cert/--tls-key) go together: set both or neither"
                        .into(),
                )
            }
            (Some(_), Some(_)) if self.tls.self_signed => {
                return invalid(
                    "tls.self_signed cannot be combined with tls.cert/tls.key: choose one".into(),
                )
            }
            _ => {}
        }
        if !self.rtc.ice_udp && !self.rtc.ice_tcp {
            return invalid(
                "rtc.ice_udp and rtc.ice_tcp are both off: media needs at least one".into(),
            );
        }
        if let Some(workers) = self.rtc.workers {
            if workers == 0 || workers > crate::sfu::MAX_WORKERS {
                return invalid(format!(
                    "rtc.workers is {workers}; use 1 to {} (default: one per core)",
                    crate::sfu::MAX_WORKERS
                ));
            }
        }
        if let Some(secret) = &self.auth.secret {
            secret.validate().map_err(ConfigError::Invalid)?;
        }
        self.limits.validate().map_err(ConfigError::Invalid)?;
        self.cluster.validate().map_err(ConfigError::Invalid)?;
        for server in &self.rtc.ice_servers {
            server.validate().map_err(ConfigError::Invalid)?;
        }
        for origin in &self.http.cors_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return invalid(format!(
                    "http.cors_origins entry `{origin}` is not an origin: write it as the browser sends it, e.g. https://app.example.com"
                ));
            }
        }
        Ok(())
    }

    /// The media side of this configuration.
    pub fn sfu_options(&self) -> SfuOptions {
        SfuOptions {
            workers: self.rtc.workers.unwrap_or_else(crate::sfu::default_workers),
            rtc_listen_ip: self.rtc.listen_ip,
            rtc_port: self.rtc.port,
            announced_ips: self.rtc.announced_ip.clone(),
            ice_udp: self.rtc.ice_udp,
            ice_tcp: self.rtc.ice_tcp,
            bandwidth_estimation: self.rtc.bandwidth_estimation,
            available_producers_interval: (self.available_producers_interval_ms > 0)
                .then(|| Duration::from_millis(self.available_producers_interval_ms)),
            token_secret: self.auth.secret.clone(),
            metrics_token: self.auth.metrics_token.clone(),
            limits: self.limits.clone(),
            resume_grace: Duration::from_millis(self.resume_grace_ms),
            ice_servers: self.rtc.ice_servers.clone(),
        }
    }

    /// Which pages may signal: the configured list, else any origin without
    /// tokens and this server's own origin with them (an open CORS policy
    /// would let any site's page use a token it obtained).
    pub fn allowed_origins(&self) -> AllowedOrigins {
        let origins = &self.http.cors_origins;
        if origins.iter().any(|o| o == "*") {
            AllowedOrigins::Any
        } else if !origins.is_empty() {
            AllowedOrigins::List(origins.clone())
        } else if self.auth.secret.is_some() {
            AllowedOrigins::SameOrigin
        } else {
            AllowedOrigins::Any
        }
    }

    /// The static directory to serve; `None`: the built-in examples.
    pub fn static_dir(&self) -> Option<&Path> {
        self.http.static_dir.as_deref()
    }

    /// The tracing filter: `log_level`, then RUST_LOG's directives.
    /// The bounds of the HTTP front door.
    pub fn serve_limits(&self) -> crate::serve::ServeLimits {
        crate::serve::ServeLimits {
            max_connections: self.limits.max_connections,
            max_connections_per_ip: self.limits.max_connections_per_ip,
            header_read_timeout: Duration::from_millis(self.limits.header_read_timeout_ms),
        }
    }

    /// The tracing filter: `log_level`, then RUST_LOG's directives, and
    /// the socket.io and WebSocket crates held at `info` when the default
    /// level is `debug` or `trace` and no directive names them: at debug
    /// they log connect payloads and raw messages, which carry join and
    /// resume tokens.
    pub fn log_filter(&self) -> String {
        let filter = match std::env::var("RUST_LOG") {
            Ok(extra) if !extra.trim().is_empty() => format!("{},{}", self.log_level, extra),
            _ => self.log_level.clone(),
        };
        with_quiet_transport_logs(&filter)
    }
}

/// Crates whose debug and trace logs show what clients send, tokens included.
const CHATTY_TRANSPORT_CRATES: [&str; 4] = [
    "socketioxide",
    "engineioxide",
    "tungstenite",
    "tokio_tungstenite",
];

fn with_quiet_transport_logs(filter: &str) -> String {
    // The last directive without a target is the default level.
    let default = filter
        .split(',')
        .map(str::trim)
        .rfind(|d| !d.is_empty() && !d.contains('='));
    if !matches!(
        default.map(str::to_ascii_lowercase).as_deref(),
        Some("debug" | "trace")
    ) {
        return filter.to_owned();
    }
    let mut out = filter.to_owned();
    for krate in CHATTY_TRANSPORT_CRATES {
        let named = filter
            .split(',')
            .any(|d| d.trim().split(['=', '[', ':']).next() == Some(krate));
        if !named {
            out.push_str(&format!(",{krate}=info"));
        }
    }
    out
}

/// simplesfu: a selective forwarding unit for mediasoup-client, with
/// socket.io signaling (the protocol of simple-mediasoup-peer-client).
///
/// Options come from a TOML file (--config), then SIMPLESFU_* environment
/// variables, then these flags, each overriding the one before. The token
/// secret is read from the file or SIMPLESFU_AUTH_SECRET only, so that it
/// never shows in a process list.
#[derive(Debug, Clone, Parser)]
#[command(name = "simplesfu", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// TOML configuration file (see simplesfu.example.toml).
    #[arg(long, env = "SIMPLESFU_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: Overrides,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print a signed join token (needs auth.secret in the configuration
    /// file or SIMPLESFU_AUTH_SECRET).
    Token(TokenArgs),
}

/// `simplesfu token`: what the token allows.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The only room the token can join.
    #[arg(long)]
    pub room: String,
    /// May produce audio and video.
    #[arg(long)]
    pub publish: bool,
    /// May consume the room's audio and video.
    #[arg(long)]
    pub subscribe: bool,
    /// May produce and consume data channels.
    #[arg(long)]
    pub data: bool,
    /// How long the token is valid for: 90s, 30m, 1h, 7d (or seconds).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Optional name of the user, put in the token's `sub` claim.
    #[arg(long)]
    pub name: Option<String>,
}

impl TokenArgs {
    pub fn rights(&self) -> Rights {
        Rights {
            publish: self.publish,
            subscribe: self.subscribe,
            data: self.data,
        }
    }
}

/// Flags, each also readable from its environment variable. Unset flags
/// leave the file's (or the default) value alone.
#[derive(Debug, Clone, Default, Args)]
pub struct Overrides {
    /// Address of the HTTP(S) server (signaling, examples, /health, /metrics).
    /// Port 0 picks a free port; the chosen address is printed on stdout.
    /// [default: 0.0.0.0:3000]
    #[arg(long, env = "SIMPLESFU_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// Address the media (UDP) sockets bind to. [default: 0.0.0.0]
    #[arg(long, env = "SIMPLESFU_RTC_LISTEN_IP")]
    pub rtc_listen_ip: Option<IpAddr>,

    /// UDP port of the first media worker; worker i uses port + i.
    /// 0 lets the system pick free ports. [default: 40000]
    #[arg(long, env = "SIMPLESFU_RTC_PORT")]
    pub rtc_port: Option<u16>,

    /// Addresses announced to browsers in ICE candidates (your public
    /// addresses behind NAT), IPv4 and IPv6: comma-separated or the flag
    /// repeated. Default: the RTC listen address, or when that is 0.0.0.0
    /// or :: every address of this machine in that family plus loopback.
    #[arg(long, env = "SIMPLESFU_ANNOUNCED_IP", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub announced_ip: Option<Vec<IpAddr>>,

    /// Number of media worker threads, each with its own UDP port (worker i
    /// uses rtc-port + i). [default: one per core]
    #[arg(long, env = "SIMPLESFU_WORKERS")]
    pub workers: Option<usize>,

    /// Offer ICE over UDP (the normal path for media). Turn it off only to
    /// force ICE over TCP. [default: true]
    #[arg(long, env = "SIMPLESFU_ICE_UDP", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub ice_udp: Option<bool>,

    /// Offer ICE over TCP (passive candidates on the same port numbers as
    /// UDP) for networks that block UDP. Browsers use it only when UDP fails.
    /// [default: true]
    #[arg(long, env = "SIMPLESFU_ICE_TCP", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub ice_tcp: Option<bool>,

    /// Estimate each viewer's bandwidth and send it the layers that fit;
    /// `false` sends everyone the best layer (a little less CPU; viewers on
    /// slow links freeze). [default: true]
    #[arg(long, env = "SIMPLESFU_BANDWIDTH_ESTIMATION", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub bandwidth_estimation: Option<bool>,

    /// Log level or filter (error, warn, info, debug, trace, or tracing
    /// directives). Directives in RUST_LOG are added after it. Logs go to
    /// stderr. [default: info]
    #[arg(long, env = "SIMPLESFU_LOG")]
    pub log_level: Option<String>,

    /// Resend availableProducers to every room this often, in milliseconds,
    /// besides sending it on every change. 0 disables the periodic resend.
    /// [default: 1000]
    #[arg(long, env = "SIMPLESFU_AVAILABLE_PRODUCERS_INTERVAL_MS")]
    pub available_producers_interval_ms: Option<u64>,

    /// How long a peer whose client announced session resume is kept after
    /// its socket drops, in milliseconds; 0 cleans up at once. [default: 15000]
    #[arg(long, env = "SIMPLESFU_RESUME_GRACE_MS")]
    pub resume_grace_ms: Option<u64>,

    /// Directory of static files served over HTTP instead of the example
    /// pages built into the binary (e.g. `examples` to edit them live).
    #[arg(long, env = "SIMPLESFU_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Origins whose pages may signal, comma-separated
    /// (https://app.example.com), or * for any. Default: any origin without
    /// tokens, this server's own origin with tokens.
    #[arg(long, env = "SIMPLESFU_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,

    /// PEM certificate chain: serve HTTPS/WSS (with --tls-key).
    #[arg(long, env = "SIMPLESFU_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "SIMPLESFU_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS/WSS with a self-signed certificate generated at start for
    /// localhost and this machine's LAN addresses (development: lets a phone
    /// on the same network open the examples).
    #[arg(long, env = "SIMPLESFU_TLS_SELF_SIGNED", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_self_signed: Option<bool>,

    /// Most peers in one room. [default: 500]
    #[arg(long, env = "SIMPLESFU_MAX_PEERS_PER_ROOM")]
    pub max_peers_per_room: Option<usize>,

    /// Most producers (media and data) of one peer. [default: 32]
    #[arg(long, env = "SIMPLESFU_MAX_PRODUCERS_PER_PEER")]
    pub max_producers_per_peer: Option<usize>,

    /// Sustained signaling requests per second allowed per connection.
    /// [default: 50]
    #[arg(long, env = "SIMPLESFU_REQUESTS_PER_SECOND")]
    pub requests_per_second: Option<u32>,

    /// Requests a connection may send at once above the sustained rate.
    /// [default: 200]
    #[arg(long, env = "SIMPLESFU_REQUEST_BURST")]
    pub request_burst: Option<u32>,

    /// Largest signaling request, in bytes of JSON. [default: 65536]
    #[arg(long, env = "SIMPLESFU_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Open HTTP/WebSocket connections at most. [default: 10000]
    #[arg(long, env = "SIMPLESFU_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Open HTTP/WebSocket connections from one IP address at most (raise
    /// it behind a reverse proxy). [default: 256]
    #[arg(long, env = "SIMPLESFU_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,

    /// Milliseconds a client gets to send request headers; idle keep-alive
    /// connections are closed after it. [default: 10000]
    #[arg(long, env = "SIMPLESFU_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,

    /// Redis of the cluster this server is a node of
    /// (`redis://[:password@]host:port`; with a password, prefer the
    /// environment variable or the file to the command line).
    /// [default: none, a single node]
    #[arg(long, env = "SIMPLESFU_CLUSTER_REDIS_URL")]
    pub cluster_redis_url: Option<String>,

    /// This node's id in the cluster. [default: host name and a random suffix]
    #[arg(long, env = "SIMPLESFU_CLUSTER_NODE_ID")]
    pub cluster_node_id: Option<String>,

    /// Where clients and other nodes reach this node's HTTP server.
    /// [default: the address it listens on]
    #[arg(long, env = "SIMPLESFU_CLUSTER_NODE_URL")]
    pub cluster_node_url: Option<String>,

    /// Peers this node takes before a room it serves grows onto other
    /// nodes (rooms across nodes). [default: 250 per media worker]
    #[arg(long, env = "SIMPLESFU_CLUSTER_CAPACITY_PEERS")]
    pub cluster_capacity_peers: Option<u64>,
}

/// The one option without a flag: a secret on a command line is visible to
/// every user of the machine.
const SECRET_ENV: &str = "SIMPLESFU_AUTH_SECRET";
/// Likewise the bearer token of /metrics.
const METRICS_TOKEN_ENV: &str = "SIMPLESFU_METRICS_TOKEN";
/// Likewise the secret the nodes of a cluster share.
const CLUSTER_SECRET_ENV: &str = "SIMPLESFU_CLUSTER_SECRET";

impl Cli {
    /// The configuration: defaults, then the file, then the environment and
    /// flags; validated.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let secret = std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty());
        self.overrides.apply(&mut config, secret);
        if let Some(token) = std::env::var(METRICS_TOKEN_ENV)
            .ok()
            .filter(|s| !s.is_empty())
        {
            config.auth.metrics_token = Some(TokenSecret::new(token));
        }
        if let Some(secret) = std::env::var(CLUSTER_SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty())
        {
            config.cluster.secret = Some(secret);
        }
        config.validate()?;
        Ok(config)
    }
}

impl Overrides {
    /// Put every set flag (or its environment variable) into `config`.
    pub fn apply(&self, config: &mut Config, secret_from_env: Option<String>) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        set(&mut config.http.listen, &self.http_listen);
        set(&mut config.rtc.listen_ip, &self.rtc_listen_ip);
        set(&mut config.rtc.port, &self.rtc_port);
        if let Some(ips) = &self.announced_ip {
            config.rtc.announced_ip = ips.clone();
        }
        if self.workers.is_some() {
            config.rtc.workers = self.workers;
        }
        set(&mut config.rtc.ice_udp, &self.ice_udp);
        set(&mut config.rtc.ice_tcp, &self.ice_tcp);
        set(
            &mut config.rtc.bandwidth_estimation,
            &self.bandwidth_estimation,
        );
        set(&mut config.log_level, &self.log_level);
        set(
            &mut config.available_producers_interval_ms,
            &self.available_producers_interval_ms,
        );
        set(&mut config.resume_grace_ms, &self.resume_grace_ms);
        if self.static_dir.is_some() {
            config.http.static_dir = self.static_dir.clone();
        }
        if let Some(origins) = &self.cors_origins {
            config.http.cors_origins = origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect();
        }
        if self.tls_cert.is_some() {
            config.tls.cert = self.tls_cert.clone();
        }
        if self.tls_key.is_some() {
            config.tls.key = self.tls_key.clone();
        }
        set(&mut config.tls.self_signed, &self.tls_self_signed);
        set(&mut config.limits.peers_per_room, &self.max_peers_per_room);
        set(
            &mut config.limits.producers_per_peer,
            &self.max_producers_per_peer,
        );
        set(
            &mut config.limits.requests_per_second,
            &self.requests_per_second,
        );
        set(&mut config.limits.request_burst, &self.request_burst);
        set(
            &mut config.limits.max_request_bytes,
            &self.max_request_bytes,
        );
        set(&mut config.limits.max_connections, &self.max_connections);
        set(
            &mut config.limits.max_connections_per_ip,
            &self.max_connections_per_ip,
        );
        set(
            &mut config.limits.header_read_timeout_ms,
            &self.header_read_timeout_ms,
        );
        if self.cluster_redis_url.is_some() {
            config.cluster.redis_url = self.cluster_redis_url.clone();
        }
        if self.cluster_node_id.is_some() {
            config.cluster.node_id = self.cluster_node_id.clone();
        }
        if self.cluster_node_url.is_some() {
            config.cluster.node_url = self.cluster_node_url.clone();
        }
        if self.cluster_capacity_peers.is_some() {
            config.cluster.capacity_peers = self.cluster_capacity_peers;
        }
        if let Some(secret) = secret_from_env {
            config.auth.secret = Some(TokenSecret::new(secret));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_logs_keep_socket_io_at_info_unless_named() {
        assert_eq!(with_quiet_transport_logs("info"), "info");
        assert_eq!(
            with_quiet_transport_logs("warn,simplesfu=debug"),
            "warn,simplesfu=debug"
        );
        let debug = with_quiet_transport_logs("debug");
        assert!(
            debug.contains(",socketioxide=info") && debug.contains(",engineioxide=info"),
            "{debug}"
        );
        let named = with_quiet_transport_logs("debug,socketioxide=trace");
        assert!(
            !named.contains("socketioxide=info") && named.contains("engineioxide=info"),
            "{named}"
        );
        tracing_subscriber::EnvFilter::try_new(&debug).expect("still a valid filter");
    }

    const SAMPLE: &str = include_str!("../../../simplesfu.example.toml");

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("simplesfu").chain(args.iter().copied()))
            .expect("valid flags")
    }

    /// Flags only, ignoring the test runner's environment.
    fn from_flags(args: &[&str]) -> Config {
        let mut config = Config::default();
        cli(args).overrides.apply(&mut config, None);
        config
    }

    #[test]
    fn the_sample_file_parses_and_lists_every_option() {
        let sample = Config::from_toml_str(SAMPLE, Path::new("simplesfu.example.toml"))
            .expect("the sample parses");
        sample.validate().expect("the sample is valid");
        // The sample shows the defaults (optional keys are commented out).
        assert_eq!(sample, Config::default());
        // Every option appears in it, set or commented out.
        let mut everything = Config::default();
        everything.http.static_dir = Some("x".into());
        everything.rtc.announced_ip = vec![IpAddr::from([1, 2, 3, 4])];
        everything.rtc.workers = Some(1);
        everything.rtc.ice_servers = vec![IceServer {
            urls: "stun:stun.example.com".into(),
            username: None,
            credential: None,
        }];
        everything.tls.cert = Some("c".into());
        everything.tls.key = Some("k".into());
        everything.auth.secret = Some(TokenSecret::new("s".repeat(32)));
        everything.cluster.redis_url = Some("redis://r:6379".into());
        everything.cluster.node_id = Some("n".into());
        everything.cluster.node_url = Some("http://n".into());
        let table = toml::Table::try_from(&everything).expect("config serializes");
        let mut missing = Vec::new();
        for (key, value) in &table {
            let nested: Vec<String> = match value.as_table() {
                Some(section) => {
                    assert!(
                        SAMPLE.contains(&format!("[{key}]")),
                        "section [{key}] missing from the sample"
                    );
                    section.keys().cloned().collect()
                }
                None => vec![key.clone()],
            };
            for k in nested {
                let set = format!("\n{k} = ");
                let commented = format!("\n# {k} = ");
                if !SAMPLE.contains(&set) && !SAMPLE.contains(&commented) {
                    missing.push(k);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "options missing from simplesfu.example.toml: {missing:?}"
        );
    }

    #[test]
    fn cluster_settings_are_checked_and_the_redis_password_stays_out_of_debug() {
        let config = Config::from_toml_str(
            "[cluster]\nredis_url = \"redis://:hunter2@10.0.0.5:6379\"\nnode_id = \"sfu-1\"\n",
            Path::new("x.toml"),
        )
        .expect("parses");
        config.validate().expect("valid");
        assert!(!format!("{config:?}").contains("hunter2"));
        let options = config
            .cluster
            .options("http://127.0.0.1:3000")
            .expect("a cluster");
        assert_eq!(options.node_id, "sfu-1");
        assert_eq!(
            options.node_url, "http://127.0.0.1:3000",
            "default: where it listens"
        );
        assert!(!format!("{options:?}").contains("hunter2"));
        let mut with_secret = config.clone();
        with_secret.cluster.secret = Some("s".repeat(40));
        with_secret.validate().expect("a long enough secret");
        assert!(
            !format!("{with_secret:?}").contains(&"s".repeat(40)),
            "the secret stays out of debug output"
        );
        assert_eq!(
            with_secret
                .cluster
                .options("http://x")
                .and_then(|o| o.secret),
            Some("s".repeat(40))
        );
        assert!(
            Config::default().cluster.options("http://x").is_none(),
            "no Redis, no cluster"
        );
        let flags = from_flags(&[
            "--cluster-redis-url",
            "redis://127.0.0.1:6379",
            "--cluster-node-id",
            "b",
        ]);
        assert_eq!(
            flags.cluster.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        assert_eq!(flags.cluster.node_id.as_deref(), Some("b"));
        for (toml, what) in [
            ("redis_url = \"rediss://:pw@h:1\"", "redis://"),
            (
                "redis_url = \"redis://h:1\"\nnode_id = \"a b\"",
                "cluster.node_id",
            ),
            (
                "redis_url = \"redis://h:1\"\nprefix = \"\"",
                "cluster.prefix",
            ),
            (
                "redis_url = \"redis://h:1\"\nheartbeat_ms = 10",
                "cluster.heartbeat_ms",
            ),
            (
                "redis_url = \"redis://h:1\"\nnode_ttl_ms = 1500",
                "cluster.node_ttl_ms",
            ),
            (
                "redis_url = \"redis://h:1\"\nsecret = \"short\"",
                "cluster.secret",
            ),
            (
                "redis_url = \"redis://h:1\"\ncapacity_peers = 0",
                "cluster.capacity_peers",
            ),
        ] {
            let config =
                Config::from_toml_str(&format!("[cluster]\n{toml}\n"), Path::new("x.toml"))
                    .expect("parses");
            let error = config.validate().expect_err(toml).to_string();
            assert!(error.contains(what), "{toml}: {error}");
            assert!(!error.contains("pw@"), "{error}");
        }
    }

    #[test]
    fn ice_servers_become_link_headers_and_bad_ones_are_refused() {
        let config = Config::from_toml_str(
            "[rtc]\nice_servers = [{ urls = \"stun:stun.example.com:3478\" }, \
             { urls = \"turn:turn.example.com:3478?transport=udp\", username = \"u\", credential = \"p\" }]\n",
            Path::new("x.toml"),
        )
        .expect("parses");
        config.validate().expect("valid");
        let links: Vec<String> = config.rtc.ice_servers.iter().map(IceServer::link).collect();
        assert_eq!(
            links,
            [
                "<stun:stun.example.com:3478>; rel=\"ice-server\"",
                "<turn:turn.example.com:3478?transport=udp>; rel=\"ice-server\"; username=\"u\"; credential=\"p\"; credential-type=\"password\"",
            ]
        );
        assert!(
            !format!("{:?}", config.rtc.ice_servers).contains("\"p\""),
            "the credential stays out of Debug (logs)"
        );
        for bad in [
            "{ urls = \"http://example.com\" }",
            "{ urls = \"turn:t.example.com\" }",
            "{ urls = \"stun:a>b\" }",
            "{ urls = \"turn:t.example.com\", username = \"u\", credential = \"a\\\"b\" }",
        ] {
            let config = Config::from_toml_str(
                &format!("[rtc]\nice_servers = [{bad}]\n"),
                Path::new("x.toml"),
            )
            .expect("parses");
            let error = config.validate().expect_err(bad).to_string();
            assert!(error.contains("rtc.ice_servers"), "{bad}: {error}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let error = Config::from_toml_str("[limits]\npeers_per_rom = 3\n", Path::new("x.toml"))
            .expect_err("a typo");
        let message = error.to_string();
        assert!(message.contains("peers_per_rom"), "{message}");
        assert!(message.contains("x.toml"), "{message}");
        let error = Config::from_toml_str("colour = 1\n", Path::new("x.toml"))
            .expect_err("unknown top-level key");
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let c = Config::from_toml_str("[rtc]\nport = 50000\n", Path::new("x.toml")).expect("valid");
        assert_eq!(c.rtc.port, 50000);
        assert_eq!(c.http, HttpConfig::default());
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn flags_override_the_file_and_unset_flags_do_not() {
        let mut config = Config::from_toml_str(
            "log_level = \"debug\"\n[rtc]\nport = 50000\nworkers = 3\n[limits]\npeers_per_room = 7\n",
            Path::new("x.toml"),
        )
        .expect("valid");
        cli(&["--rtc-port", "0", "--max-peers-per-room", "9"])
            .overrides
            .apply(&mut config, None);
        assert_eq!(config.rtc.port, 0);
        assert_eq!(config.limits.peers_per_room, 9);
        assert_eq!(
            config.rtc.workers,
            Some(3),
            "not given on the command line: the file's value stays"
        );
        assert_eq!(config.log_level, "debug");
    }

    #[test]
    fn the_secret_comes_from_the_environment_over_the_file() {
        let mut config = Config::from_toml_str(
            &format!("[auth]\nsecret = \"{}\"\n", "f".repeat(32)),
            Path::new("x.toml"),
        )
        .expect("valid");
        cli(&[]).overrides.apply(&mut config, Some("e".repeat(32)));
        assert_eq!(config.auth.secret, Some(TokenSecret::new("e".repeat(32))));
        assert!(
            !format!("{config:?}").contains("eeee"),
            "Debug must not print the secret"
        );
    }

    #[test]
    fn existing_flags_keep_working() {
        let c = from_flags(&[
            "--http-listen",
            "127.0.0.1:0",
            "--rtc-listen-ip",
            "127.0.0.1",
            "--rtc-port",
            "0",
            "--workers",
            "2",
            "--log-level",
            "warn",
            "--available-producers-interval-ms",
            "0",
            "--static-dir",
            "/tmp",
        ]);
        assert_eq!(c.http.listen.port(), 0);
        assert_eq!(c.rtc.workers, Some(2));
        let options = c.sfu_options();
        assert_eq!(options.available_producers_interval, None);
        assert_eq!(
            options.effective_announced_ips(),
            vec![IpAddr::from([127, 0, 0, 1])],
            "the listen address"
        );
        assert_eq!(c.static_dir(), Some(Path::new("/tmp")));
        assert_eq!(
            Config::default().static_dir(),
            None,
            "the built-in examples"
        );
    }

    #[test]
    fn defaults_resend_every_second_and_announce_every_ipv4_address_and_loopback() {
        let options = Config::default().sfu_options();
        assert_eq!(
            options.available_producers_interval,
            Some(Duration::from_secs(1))
        );
        let announced = options.effective_announced_ips();
        assert!(
            announced.iter().all(IpAddr::is_ipv4),
            "a 0.0.0.0 socket hears IPv4 only: {announced:?}"
        );
        assert_eq!(
            announced.last(),
            Some(&IpAddr::from([127, 0, 0, 1])),
            "loopback too, last"
        );
        assert_eq!(
            announced[..announced.len() - 1],
            crate::netif::lan_addresses()
                .into_iter()
                .filter(IpAddr::is_ipv4)
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn announced_addresses_are_one_or_many_in_every_layer() {
        let v4 = IpAddr::from([203, 0, 113, 7]);
        let v6: IpAddr = "2001:db8::7".parse().expect("ip");
        let one = Config::from_toml_str(
            "[rtc]\nannounced_ip = \"203.0.113.7\"\n",
            Path::new("x.toml"),
        )
        .expect("one");
        assert_eq!(one.rtc.announced_ip, vec![v4]);
        let many = Config::from_toml_str(
            "[rtc]\nannounced_ip = [\"203.0.113.7\", \"2001:db8::7\"]\n",
            Path::new("x.toml"),
        )
        .expect("a list");
        assert_eq!(many.sfu_options().effective_announced_ips(), vec![v4, v6]);
        let bad = Config::from_toml_str(
            "[rtc]\nannounced_ip = \"example.com\"\n",
            Path::new("x.toml"),
        )
        .expect_err("not an IP");
        assert!(bad.to_string().contains("IP address"), "{bad}");
        assert_eq!(
            from_flags(&["--announced-ip", "203.0.113.7"])
                .rtc
                .announced_ip,
            vec![v4]
        );
        assert_eq!(
            from_flags(&["--announced-ip", "203.0.113.7,2001:db8::7"])
                .rtc
                .announced_ip,
            vec![v4, v6]
        );
        assert_eq!(
            from_flags(&[
                "--announced-ip",
                "203.0.113.7",
                "--announced-ip",
                "2001:db8::7"
            ])
            .rtc
            .announced_ip,
            vec![v4, v6]
        );
        let mut from_file = many.clone();
        cli(&[]).overrides.apply(&mut from_file, None);
        assert_eq!(
            from_file.rtc.announced_ip,
            vec![v4, v6],
            "no flag: the file's list stays"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("simplesfu").chain(args.iter().copied()))
        };
        assert!(parse(&["--rtc-port", "70000"]).is_err());
        assert!(parse(&["--http-listen", "nope"]).is_err());
        assert!(parse(&["--no-such-flag"]).is_err());
        let half_tls = from_flags(&["--tls-cert", "cert.pem"]);
        assert!(half_tls
            .validate()
            .expect_err("cert without key")
            .to_string()
            .contains("tls.key"));
        let zero_workers = from_flags(&["--workers", "0"]);
        assert!(zero_workers
            .validate()
            .expect_err("0 workers")
            .to_string()
            .contains("rtc.workers"));
        let bad_origin = from_flags(&["--cors-origins", "app.example.com"]);
        assert!(bad_origin
            .validate()
            .expect_err("not an origin")
            .to_string()
            .contains("app.example.com"));
    }

    #[test]
    fn cors_is_open_without_tokens_and_same_origin_with_them() {
        assert_eq!(Config::default().allowed_origins(), AllowedOrigins::Any);
        let mut c = Config::default();
        c.auth.secret = Some(TokenSecret::new("s".repeat(32)));
        assert_eq!(c.allowed_origins(), AllowedOrigins::SameOrigin);
        c.http.cors_origins = vec!["https://a.example".into(), "https://b.example".into()];
        assert_eq!(
            c.allowed_origins(),
            AllowedOrigins::List(c.http.cors_origins.clone())
        );
        let c = from_flags(&["--cors-origins", "*"]);
        assert_eq!(c.allowed_origins(), AllowedOrigins::Any);
    }

    #[test]
    fn switches_take_an_optional_value() {
        assert!(from_flags(&["--tls-self-signed"]).tls.self_signed);
        assert!(!from_flags(&["--tls-self-signed=false"]).tls.self_signed);
        assert!(!from_flags(&[]).tls.self_signed);
        assert!(
            !from_flags(&["--ice-udp", "false"]).rtc.ice_udp,
            "the e2e tests force TCP this way"
        );
        assert!(from_flags(&["--ice-udp", "false"]).rtc.ice_tcp);
        assert!(from_flags(&["--ice-tcp=false", "--ice-udp", "false"])
            .validate()
            .is_err());
        assert!(
            from_flags(&[]).rtc.bandwidth_estimation,
            "estimation is on by default"
        );
        assert!(
            from_flags(&[]).sfu_options().bandwidth_estimation,
            "and reaches the SFU's options"
        );
        let off = from_flags(&["--bandwidth-estimation=false"]);
        assert!(
            !off.rtc.bandwidth_estimation && !off.sfu_options().bandwidth_estimation,
            "the operator can switch it off"
        );
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value() {
        // Wrappers append to a base command line (the tests do).
        assert_eq!(
            from_flags(&["--log-level", "warn", "--log-level", "info"]).log_level,
            "info"
        );
    }

    #[test]
    fn token_subcommand_parses_rights_and_ttl() {
        let c = cli(&[
            "token",
            "--room",
            "R",
            "--publish",
            "--subscribe",
            "--ttl",
            "1h",
        ]);
        let Some(Command::Token(args)) = c.command else {
            panic!("token subcommand expected")
        };
        assert_eq!(args.room, "R");
        assert_eq!(
            args.rights(),
            Rights {
                publish: true,
                subscribe: true,
                data: false
            }
        );
        assert_eq!(args.ttl, Duration::from_secs(3600));
    }
}
