//! Who the client is: the TCP peer, unless the peer is a trusted proxy, in
//! which case `X-Forwarded-For` is read right to left, skipping trusted hops;
//! the first address that is not a trusted proxy is the client. A client can
//! put anything on the left of that header, so nothing left of it is read.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
}

impl ClientIpResolver {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        // Every hop from the right, across repeated headers in order.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.trim().parse::<IpAddr>().map(canonical) {
                Ok(ip) if self.is_trusted(ip) => client = ip,
                Ok(ip) => return ip,
                // Unparseable: whatever wrote it is not a proxy we trust.
                Err(_) => return client,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_the_header_says() {
        let resolver = ClientIpResolver::new(vec![]);
        assert_eq!(
            resolver.resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right_and_forged_left_entries_ignored() {
        let resolver = ClientIpResolver::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        let peer = ip("10.0.0.1");
        assert_eq!(
            resolver.resolve(peer, &headers(&["6.6.6.6, 198.51.100.7, 10.0.0.2"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolver.resolve(peer, &headers(&["6.6.6.6", "198.51.100.7"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolver.resolve(peer, &headers(&["garbage, 10.0.0.3"])),
            ip("10.0.0.3")
        );
        assert_eq!(resolver.resolve(peer, &headers(&[])), peer);
        assert_eq!(
            resolver.resolve(ip("::1"), &headers(&["2001:db8::5"])),
            ip("2001:db8::5")
        );
        assert_eq!(
            resolver.resolve(ip("::ffff:10.0.0.1"), &headers(&["192.0.2.1"])),
            ip("192.0.2.1")
        );
    }
}
