//! The host candidates a router offers: one UDP and one passive TCP candidate
//! per announced address, ranked so that browsers try UDP before TCP and
//! loopback last, and what str0m is told about them.
//!
//! The worker's sockets are usually bound to the wildcard address, so a
//! datagram does not say which of the announced addresses it was sent to.
//! str0m, though, drops a STUN request whose destination is not one of its
//! local host candidates. So str0m holds one candidate per protocol (the
//! best ranked) and every datagram is handed to it with that candidate as
//! its destination; the other addresses exist only in what the client is
//! told. Replies leave through the same socket, and the kernel picks their
//! source address from its route to the client, which is the address the
//! client wrote to as long as each interface has one address on that path.

use crate::api::EngineError;
use mediasoup_types::data_structures::{
    IceCandidate, IceCandidateTcpType, IceCandidateType, Protocol as MsProtocol,
};
use std::net::{IpAddr, SocketAddr};
use str0m::net::{Protocol, TcpType};
use str0m::Candidate;

/// RFC 8445 type preference of a host candidate (as mediasoup announces it).
const HOST_TYPE_PREFERENCE: u32 = 64;
/// Local preference of the best UDP candidate; later addresses count down.
const UDP_LOCAL_PREFERENCE: u32 = 10_000;
/// Local preference of the best TCP candidate: every TCP candidate ranks
/// below every UDP one, so browsers take TCP only when UDP fails.
const TCP_LOCAL_PREFERENCE: u32 = 5_000;
/// Addresses beyond this many share the last rank.
const MAX_RANK: usize = 1_000;

/// One announced host candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostCandidate {
    addr: SocketAddr,
    protocol: Protocol,
    priority: u32,
    foundation: String,
}

/// Every host candidate of a router, best first.
#[derive(Debug, Clone)]
pub(crate) struct HostCandidates {
    list: Vec<HostCandidate>,
}

impl HostCandidates {
    /// Candidates for `ips` (in order of preference; loopback addresses go
    /// last whatever their place) on `udp_port` and `tcp_port`.
    pub(crate) fn new(
        ips: &[IpAddr],
        udp_port: Option<u16>,
        tcp_port: Option<u16>,
    ) -> HostCandidates {
        let mut ranked: Vec<IpAddr> = Vec::with_capacity(ips.len());
        for ip in ips {
            if !ranked.contains(ip) {
                ranked.push(*ip);
            }
        }
        // Stable: the given order holds within loopback and non-loopback.
        ranked.sort_by_key(IpAddr::is_loopback);
        let mut list = Vec::with_capacity(ranked.len() * 2);
        for (protocol, port, base) in [
            (Protocol::Udp, udp_port, UDP_LOCAL_PREFERENCE),
            (Protocol::Tcp, tcp_port, TCP_LOCAL_PREFERENCE),
        ] {
            let Some(port) = port else { continue };
            for (rank, ip) in ranked.iter().enumerate() {
                let rank = rank.min(MAX_RANK) as u32;
                list.push(HostCandidate {
                    addr: SocketAddr::new(*ip, port),
                    protocol,
                    priority: priority(base - rank),
                    foundation: format!(
                        "{}{rank}",
                        if protocol == Protocol::Udp {
                            "udp"
                        } else {
                            "tcp"
                        }
                    ),
                });
            }
        }
        HostCandidates { list }
    }

    /// What a new transport announces (`tcp_only`: its client asked for
    /// `forceTcp`) and the candidates its str0m instance holds.
    pub(crate) fn for_transport(
        &self,
        tcp_only: bool,
    ) -> Result<(Vec<IceCandidate>, Vec<Candidate>), EngineError> {
        let offered: Vec<&HostCandidate> = self
            .list
            .iter()
            .filter(|c| !tcp_only || c.protocol != Protocol::Udp)
            .collect();
        if offered.is_empty() {
            return Err(EngineError::TcpUnavailable);
        }
        let mut str0m_candidates = Vec::with_capacity(2);
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            if let Some(best) = offered.iter().find(|c| c.protocol == protocol) {
                str0m_candidates.push(to_str0m(best)?);
            }
        }
        Ok((
            offered.into_iter().map(to_mediasoup).collect(),
            str0m_candidates,
        ))
    }

    /// The destination str0m is told a datagram of `protocol` was sent to:
    /// the one candidate of that protocol it holds.
    pub(crate) fn destination(&self, protocol: Protocol, fallback: SocketAddr) -> SocketAddr {
        let wanted = if protocol == Protocol::Udp {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        self.list
            .iter()
            .find(|c| c.protocol == wanted)
            .map_or(fallback, |c| c.addr)
    }
}

/// RFC 8445 section 5.1.2.1, component 1.
fn priority(local_preference: u32) -> u32 {
    (HOST_TYPE_PREFERENCE << 24) + (local_preference << 8) + (256 - 1)
}

fn to_str0m(c: &HostCandidate) -> Result<Candidate, EngineError> {
    let built = match c.protocol {
        Protocol::Udp => Candidate::host(c.addr, "udp"),
        _ => Candidate::builder()
            .tcp()
            .host(c.addr)
            .tcptype(TcpType::Passive)
            .build(),
    };
    built.map_err(|e| EngineError::Internal(format!("bad announced address: {e}")))
}

fn to_mediasoup(c: &HostCandidate) -> IceCandidate {
    let udp = c.protocol == Protocol::Udp;
    IceCandidate {
        foundation: c.foundation.clone(),
        priority: c.priority,
        address: c.addr.ip().to_string(),
        protocol: if udp {
            MsProtocol::Udp
        } else {
            MsProtocol::Tcp
        },
        port: c.addr.port(),
        r#type: IceCandidateType::Host,
        tcp_type: (!udp).then_some(IceCandidateTcpType::Passive),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 20));
    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

    fn addresses(candidates: &[IceCandidate]) -> Vec<(String, MsProtocol, u16)> {
        candidates
            .iter()
            .map(|c| (c.address.clone(), c.protocol, c.port))
            .collect()
    }

    #[test]
    fn every_address_gets_udp_and_tcp_with_loopback_last_and_tcp_below_udp() {
        let hosts = HostCandidates::new(&[LOOPBACK, LAN, V6, LAN], Some(40000), Some(40001));
        let (offered, str0m) = hosts.for_transport(false).expect("candidates");
        assert_eq!(
            addresses(&offered),
            vec![
                ("192.168.1.20".into(), MsProtocol::Udp, 40000),
                ("2001:db8::1".into(), MsProtocol::Udp, 40000),
                ("127.0.0.1".into(), MsProtocol::Udp, 40000),
                ("192.168.1.20".into(), MsProtocol::Tcp, 40001),
                ("2001:db8::1".into(), MsProtocol::Tcp, 40001),
                ("127.0.0.1".into(), MsProtocol::Tcp, 40001),
            ],
            "a repeated address is announced once"
        );
        assert!(
            offered.windows(2).all(|w| w[0].priority > w[1].priority),
            "strictly by preference: {offered:?}"
        );
        let foundations: std::collections::HashSet<_> =
            offered.iter().map(|c| &c.foundation).collect();
        assert_eq!(
            foundations.len(),
            offered.len(),
            "one foundation per base address and protocol"
        );
        assert_eq!(
            offered[0].priority, 1_076_302_079,
            "the best UDP candidate keeps mediasoup's usual priority"
        );
        assert_eq!(str0m.len(), 2, "str0m holds one candidate per protocol");
        assert_eq!(
            hosts.destination(Protocol::Udp, SocketAddr::from(([0, 0, 0, 0], 1))),
            SocketAddr::new(LAN, 40000)
        );
        assert_eq!(
            hosts.destination(Protocol::Tcp, SocketAddr::from(([0, 0, 0, 0], 1))),
            SocketAddr::new(LAN, 40001)
        );
    }

    #[test]
    fn force_tcp_offers_only_tcp_and_is_refused_without_it() {
        let hosts = HostCandidates::new(&[LAN, LOOPBACK], Some(40000), Some(40000));
        let (offered, str0m) = hosts.for_transport(true).expect("tcp candidates");
        assert!(offered
            .iter()
            .all(|c| c.protocol == MsProtocol::Tcp
                && c.tcp_type == Some(IceCandidateTcpType::Passive)));
        assert_eq!(offered.len(), 2);
        assert_eq!(str0m.len(), 1);
        let udp_only = HostCandidates::new(&[LAN], Some(40000), None);
        assert!(matches!(
            udp_only.for_transport(true),
            Err(EngineError::TcpUnavailable)
        ));
        assert_eq!(udp_only.for_transport(false).expect("udp").0.len(), 1);
    }
}
