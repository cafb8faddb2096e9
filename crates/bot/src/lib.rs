//! simplesfu-bot: synthetic WebRTC peers (str0m on the client side) that
//! speak simplesfu's protocol v1 (or play a room over WHEP) or Janus's
//! VideoRoom API, publish stamped synthetic media and measure what arrives;
//! plus the benchmark harness that runs scenarios against both servers and
//! writes the report.

pub mod bench;
pub mod cpucap;
pub mod floor;
pub mod http;
pub mod janus;
pub mod link;
pub mod load;
pub mod media;
pub mod payload;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod sfu;
pub mod signaling;
pub mod speakers;
pub mod stats;
pub mod transport;
pub mod whep;
