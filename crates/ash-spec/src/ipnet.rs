//! IP addresses and CIDR ranges for the inbound allow list.
//!
//! Owns parsing (`10.0.0.0/8`, `::1`, a bare address is a single-host range), normalisation
//! (host bits cleared, IPv4-mapped IPv6 treated as IPv4) and membership, and the rule for which
//! URLs count as this machine (`tls_or_loopback`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let (addr_text, prefix_text) = match input.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (input, None),
        };
        let addr: IpAddr = addr_text
            .trim()
            .parse()
            .map_err(|_| format!("`{addr_text}` is not an IPv4 or IPv6 address"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("prefix `/{p}` must be a number from 0 to {max}")),
            },
        };
        Ok(Self { addr: mask(addr, prefix), prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// Whether `url` is `https://`, or `http://` to a loopback host (`127.0.0.0/8`, `::1`,
/// `localhost`): the URLs access-control keys may be fetched from.
pub fn tls_or_loopback(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // User info would make the host the part after `@`: `http://127.0.0.1:80@evil.example/`.
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if prefix == 0 { 0 } else { bits & (u32::MAX << (32 - u32::from(prefix))) };
            IpAddr::V4(Ipv4Addr::from(kept))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept =
                if prefix == 0 { 0 } else { bits & (u128::MAX << (128 - u32::from(prefix))) };
            IpAddr::V6(Ipv6Addr::from(kept))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_or_loopback_urls_pass() {
        let cases = [
            ("https://idp.example.com/jwks", true),
            ("http://127.0.0.1:8080/jwks", true),
            ("http://127.9.9.9/jwks", true),
            ("http://[::1]:8080/jwks", true),
            ("http://LOCALHOST/jwks", true),
            ("http://idp.example.com/jwks", false),
            ("http://127.0.0.1@evil.example/jwks", false),
            ("http://127.0.0.1:80@evil.example/jwks", false),
            ("http://[::1]@evil.example/jwks", false),
            ("http://localhost:x@evil.example/jwks", false),
            ("http://127.0.0.1.evil.example/jwks", false),
            ("http://[::ffff:10.0.0.1]/jwks", false),
            ("http://10.0.0.1/jwks", false),
            ("ftp://127.0.0.1/jwks", false),
            ("file:///etc/passwd", false),
        ];
        for (url, want) in cases {
            assert_eq!(tls_or_loopback(url), want, "{url}");
        }
    }

    #[test]
    fn parse_normalise_and_match() {
        let net = IpNet::parse("10.1.2.3/8").unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.9".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(IpNet::parse("127.0.0.1").unwrap().to_string(), "127.0.0.1");
        assert_eq!(IpNet::parse("::ffff:127.0.0.1").unwrap().to_string(), "127.0.0.1");
        assert!(IpNet::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert_eq!(
            IpNet::parse("1.2.3.4/33").unwrap_err(),
            "prefix `/33` must be a number from 0 to 32"
        );
        assert_eq!(
            IpNet::parse("localhost").unwrap_err(),
            "`localhost` is not an IPv4 or IPv6 address"
        );
    }
}
