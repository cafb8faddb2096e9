//! The server's configuration: one struct, filled from command-line flags and
//! `SIMPLESFU_*` environment variables (flags win), with defaults that run a
//! local server out of the box.

use crate::sfu::SfuOptions;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// simplesfu: a selective forwarding unit for mediasoup-client, with
/// socket.io signaling (the protocol of simple-mediasoup-peer-client).
#[derive(Debug, Clone, Parser)]
#[command(name = "simplesfu", version, about, long_about = None)]
pub struct Config {
    /// Address of the HTTP server (socket.io signaling, examples, /health).
    /// Port 0 picks a free port; the chosen address is printed on stdout.
    #[arg(long, env = "SIMPLESFU_HTTP_LISTEN", default_value = "0.0.0.0:3000")]
    pub http_listen: SocketAddr,

    /// Address the media (UDP) sockets bind to.
    #[arg(long, env = "SIMPLESFU_RTC_LISTEN_IP", default_value = "0.0.0.0")]
    pub rtc_listen_ip: IpAddr,

    /// UDP port of the first media worker; worker i uses port + i.
    /// 0 lets the system pick free ports.
    #[arg(long, env = "SIMPLESFU_RTC_PORT", default_value_t = 40000)]
    pub rtc_port: u16,

    /// Address announced to browsers in ICE candidates (your public address
    /// behind NAT). Default: the RTC listen address, or 127.0.0.1 when that
    /// is 0.0.0.0 or ::.
    #[arg(long, env = "SIMPLESFU_ANNOUNCED_IP")]
    pub announced_ip: Option<IpAddr>,

    /// Number of media worker threads, each with its own UDP port (worker i
    /// uses rtc-port + i). Default: one per core. New peers go to the
    /// least-loaded worker; consumers on another worker than their producer
    /// get its packets through a pipe between the two.
    #[arg(long, env = "SIMPLESFU_WORKERS", default_value_t = crate::sfu::default_workers())]
    pub workers: usize,

    /// Offer ICE over UDP (the normal path for media). Turn it off only to
    /// force ICE over TCP.
    #[arg(long, env = "SIMPLESFU_ICE_UDP", default_value_t = true, action = clap::ArgAction::Set)]
    pub ice_udp: bool,

    /// Offer ICE over TCP (passive candidates on the same port numbers as
    /// UDP) for networks that block UDP. Browsers use it only when UDP fails.
    #[arg(long, env = "SIMPLESFU_ICE_TCP", default_value_t = true, action = clap::ArgAction::Set)]
    pub ice_tcp: bool,

    /// Log level or filter (error, warn, info, debug, trace, or tracing
    /// directives). Directives in RUST_LOG are added after it. Logs go to stderr.
    #[arg(long, env = "SIMPLESFU_LOG", default_value = "info")]
    pub log_level: String,

    /// Resend availableProducers to every room this often, in milliseconds,
    /// besides sending it on every change. 0 disables the periodic resend.
    #[arg(long, env = "SIMPLESFU_AVAILABLE_PRODUCERS_INTERVAL_MS", default_value_t = 1000)]
    pub available_producers_interval_ms: u64,

    /// Directory of static files served over HTTP (examples, client bundle).
    /// Default: ./examples if it exists, else the repository's examples/.
    #[arg(long, env = "SIMPLESFU_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
}

impl Default for Config {
    /// The defaults, without reading flags or the environment.
    fn default() -> Self {
        Config::parse_from_defaults()
    }
}

impl Config {
    fn parse_from_defaults() -> Self {
        Config {
            http_listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            rtc_listen_ip: IpAddr::from([0, 0, 0, 0]),
            rtc_port: 40000,
            announced_ip: None,
            workers: crate::sfu::default_workers(),
            ice_udp: true,
            ice_tcp: true,
            log_level: "info".into(),
            available_producers_interval_ms: 1000,
            static_dir: None,
        }
    }

    /// The media side of this configuration.
    pub fn sfu_options(&self) -> SfuOptions {
        SfuOptions {
            workers: self.workers,
            rtc_listen_ip: self.rtc_listen_ip,
            rtc_port: self.rtc_port,
            announced_ip: self.announced_ip,
            ice_udp: self.ice_udp,
            ice_tcp: self.ice_tcp,
            available_producers_interval: (self.available_producers_interval_ms > 0)
                .then(|| Duration::from_millis(self.available_producers_interval_ms)),
        }
    }

    /// The static directory to serve.
    pub fn static_dir(&self) -> PathBuf {
        if let Some(dir) = &self.static_dir {
            return dir.clone();
        }
        let local = PathBuf::from("examples");
        if local.is_dir() {
            return local;
        }
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"))
    }

    /// The tracing filter: `--log-level`, then RUST_LOG's directives.
    pub fn log_filter(&self) -> String {
        match std::env::var("RUST_LOG") {
            Ok(extra) if !extra.trim().is_empty() => format!("{},{}", self.log_level, extra),
            _ => self.log_level.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_defaults_match_default() {
        let parsed = Config::try_parse_from(["simplesfu"]).expect("no flags parse");
        let default = Config::default();
        // Environment variables of the test runner may override some fields;
        // compare the ones CI never sets.
        assert_eq!(parsed.workers, default.workers);
        assert_eq!(parsed.available_producers_interval_ms, default.available_producers_interval_ms);
        assert_eq!(
            default.sfu_options().available_producers_interval,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn flags_parse_and_zero_interval_disables_resend() {
        let c = Config::try_parse_from([
            "simplesfu",
            "--http-listen",
            "127.0.0.1:0",
            "--rtc-listen-ip",
            "127.0.0.1",
            "--rtc-port",
            "0",
            "--available-producers-interval-ms",
            "0",
        ])
        .expect("valid flags");
        assert_eq!(c.http_listen.port(), 0);
        let options = c.sfu_options();
        assert_eq!(options.available_producers_interval, None);
        assert_eq!(options.effective_announced_ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn unspecified_listen_ip_announces_loopback() {
        let options = Config::default().sfu_options();
        assert_eq!(options.effective_announced_ip(), IpAddr::from([127, 0, 0, 1]));
        let c = Config::try_parse_from(["simplesfu", "--announced-ip", "203.0.113.7"]).expect("valid");
        assert_eq!(c.sfu_options().effective_announced_ip(), IpAddr::from([203, 0, 113, 7]));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::try_parse_from(["simplesfu", "--rtc-port", "70000"]).is_err());
        assert!(Config::try_parse_from(["simplesfu", "--http-listen", "nope"]).is_err());
        assert!(Config::try_parse_from(["simplesfu", "--no-such-flag"]).is_err());
    }
}
