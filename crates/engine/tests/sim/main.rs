//! Decision tests: the router driven without sockets, on a simulated clock
//! (`harness.rs`), so what it decides about key frames, layers, sequence
//! numbers and data is checked in milliseconds, to the millisecond, with no
//! sleeps. What needs a real socket, thread or worker (GSO, ICE-TCP, pipes,
//! the worker loop) stays in the UDP scenario tests beside this folder.
//!
//! A new decision test is a file here with a `mod` line below: make a
//! [`harness::Sim`], add connected peers, produce and consume, then let
//! simulated time pass with `every` (a source that sends each frame
//! interval) or `run_until`, and assert on what the peers received
//! (`Peer::received`, `keyframe_requests`, `data`) or on what the router
//! sent (`Sim::router_sent`).

#[path = "../common/media.rs"]
mod media;

// The harness is an API for these tests and the next ones; not every test
// reads every field yet.
#[allow(dead_code)]
mod harness;

mod audio_levels;
mod bandwidth;
mod data_buffering;
mod fan_out;
mod keyframes;
mod pause_resume;
mod repair;
mod simulcast;
