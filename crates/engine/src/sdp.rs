//! Synthesized SDP offers that describe a client's send transport to str0m.
