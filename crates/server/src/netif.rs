//! This machine's network addresses: the ones a self-signed certificate
//! names, and the ones ICE candidates announce when no `rtc.announced_ip`
//! is configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// This machine's addresses that another device may reach: neither
/// loopback, link-local nor unspecified. Sorted, each once.
pub fn lan_addresses() -> Vec<IpAddr> {
    let interfaces = if_addrs::get_if_addrs().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot list the network interfaces; only loopback is announced");
        Vec::new()
    });
    reachable(interfaces.into_iter().map(|i| i.ip()))
}

fn reachable(addresses: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = addresses
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && !is_unicast_link_local(v6)
            }
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

fn is_unicast_link_local(v6: &Ipv6Addr) -> bool {
    (v6.segments()[0] & 0xffc0) == 0xfe80
}

/// What ICE candidates announce when nothing is configured: a socket bound
/// to one address is reachable there only; a socket bound to the wildcard
/// answers on every address of its family, so each of `lan` in that family,
/// then loopback (ranked last by the engine, and ignored by Firefox, which
/// is why loopback alone is not enough). A wildcard IPv4 socket receives no
/// IPv6, and a wildcard IPv6 one sees IPv4 only as mapped addresses, so one
/// family is announced, the one bound.
pub fn default_announced_ips(listen_ip: IpAddr, lan: &[IpAddr]) -> Vec<IpAddr> {
    if !listen_ip.is_unspecified() {
        return vec![listen_ip];
    }
    let (same_family, loopback): (fn(&IpAddr) -> bool, IpAddr) = match listen_ip {
        IpAddr::V4(_) => (IpAddr::is_ipv4, IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(_) => (IpAddr::is_ipv6, IpAddr::V6(Ipv6Addr::LOCALHOST)),
    };
    let mut announced: Vec<IpAddr> = lan.iter().copied().filter(same_family).collect();
    announced.push(loopback);
    announced
}

#[cfg(test)]
mod tests {
    use super::*;

    const WILDCARD4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const WILDCARD6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn only_addresses_another_device_can_reach_count_as_lan() {
        let found = reachable(
            [
                "127.0.0.1",
                "::1",
                "169.254.3.4",
                "fe80::1",
                "192.168.1.20",
                "2001:db8::5",
                "10.0.0.2",
                "192.168.1.20",
            ]
            .into_iter()
            .map(ip),
        );
        assert_eq!(
            found,
            vec![ip("10.0.0.2"), ip("192.168.1.20"), ip("2001:db8::5")]
        );
    }

    #[test]
    fn a_wildcard_socket_announces_every_address_of_its_family_then_loopback() {
        let lan = [ip("10.0.0.2"), ip("192.168.1.20"), ip("2001:db8::5")];
        assert_eq!(
            default_announced_ips(WILDCARD4, &lan),
            vec![ip("10.0.0.2"), ip("192.168.1.20"), ip("127.0.0.1")]
        );
        assert_eq!(
            default_announced_ips(WILDCARD6, &lan),
            vec![ip("2001:db8::5"), ip("::1")]
        );
        assert_eq!(
            default_announced_ips(WILDCARD4, &[]),
            vec![ip("127.0.0.1")],
            "no network: loopback still works"
        );
    }

    #[test]
    fn a_socket_bound_to_one_address_announces_that_one() {
        let lan = [ip("10.0.0.2"), ip("192.168.1.20")];
        assert_eq!(
            default_announced_ips(ip("192.168.1.20"), &lan),
            vec![ip("192.168.1.20")]
        );
        assert_eq!(
            default_announced_ips(ip("127.0.0.1"), &lan),
            vec![ip("127.0.0.1")]
        );
    }
}
