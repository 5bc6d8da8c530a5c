//! Which address a request comes from, for the IP allow list.
//!
//! Owns the rule: the socket peer is the client, unless the peer is a trusted proxy named in
//! `[network] trusted_proxies`; then the one header `[network] forwarded_header` names is read
//! from the right (the hop nearest to ash) and the first address that is not itself a trusted
//! proxy is the client. Other forwarding headers are never read: a header the proxy does not
//! manage arrives as the client wrote it. Without trusted proxies, no header changes the answer.

use std::net::{IpAddr, SocketAddr};

use ash_spec::{ForwardedHeader, IpNet};
use axum::http::HeaderMap;

/// Why the client address could not be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ForwardedError {
    #[error("a trusted proxy sent a forwarding header that does not parse")]
    Malformed,
}

/// The client's address: the peer, or what trusted proxies say it is. IPv4-mapped IPv6
/// addresses come back as IPv4.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: SocketAddr,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> Result<IpAddr, ForwardedError> {
    let peer = unmap(peer.ip());
    if !trusted.iter().any(|net| net.contains(peer)) {
        return Ok(peer);
    }
    if !headers.contains_key(header.as_str()) {
        return Ok(peer);
    }
    let hops = match header {
        ForwardedHeader::Forwarded => forwarded_hops(headers)?,
        ForwardedHeader::XForwardedFor | ForwardedHeader::XRealIp => {
            list_hops(headers, header.as_str())?
        }
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !trusted.iter().any(|net| net.contains(hop)) {
            break;
        }
    }
    Ok(client)
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Every value of `name`, in order, as comma-separated addresses.
fn list_hops(headers: &HeaderMap, name: &str) -> Result<Vec<IpAddr>, ForwardedError> {
    let mut out = Vec::new();
    for value in headers.get_all(name) {
        let text = value.to_str().map_err(|_| ForwardedError::Malformed)?;
        for item in text.split(',') {
            out.push(address(item.trim()).ok_or(ForwardedError::Malformed)?);
        }
    }
    Ok(out)
}

/// The `for=` of every element of every `Forwarded` header, in order.
fn forwarded_hops(headers: &HeaderMap) -> Result<Vec<IpAddr>, ForwardedError> {
    let mut out = Vec::new();
    for value in headers.get_all("forwarded") {
        let text = value.to_str().map_err(|_| ForwardedError::Malformed)?;
        for element in text.split(',') {
            let found = element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
            });
            // An element without `for=`, or with `unknown` or an obfuscated name, hides the
            // client: refuse rather than guess.
            let ip = found.and_then(address).ok_or(ForwardedError::Malformed)?;
            out.push(ip);
        }
    }
    Ok(out)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
fn address(text: &str) -> Option<IpAddr> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside.parse().ok().map(unmap);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(unmap(ip));
    }
    let (host, port) = text.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[expect(clippy::type_complexity, reason = "a table of cases")]
    #[test]
    #[rustfmt::skip]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxies = [IpNet::parse("10.0.0.0/8").unwrap()];
        let proxy: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:203.0.113.9]:5000".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        use ForwardedHeader::{Forwarded, XForwardedFor, XRealIp};
        let cases: Vec<(
            SocketAddr,
            &[IpNet],
            ForwardedHeader,
            Vec<(&'static str, &str)>,
            Result<IpAddr, ForwardedError>,
        )> = vec![
            (stranger, &proxies, XForwardedFor, vec![("x-forwarded-for", "127.0.0.1")], Ok(ip("203.0.113.9"))),
            (mapped, &proxies, XForwardedFor, vec![], Ok(ip("203.0.113.9"))),
            (proxy, &[], XForwardedFor, vec![("x-forwarded-for", "127.0.0.1")], Ok(ip("10.0.0.2"))),
            (proxy, &proxies, XForwardedFor, vec![], Ok(ip("10.0.0.2"))),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "198.51.100.1")], Ok(ip("198.51.100.1"))),
            // The client may write any left part; only the hop the proxy added counts.
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "127.0.0.1, 198.51.100.1")], Ok(ip("198.51.100.1"))),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "198.51.100.1, 10.0.0.7")], Ok(ip("198.51.100.1"))),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "127.0.0.1"), ("x-forwarded-for", "198.51.100.1")], Ok(ip("198.51.100.1"))),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "10.0.0.5, 10.0.0.7")], Ok(ip("10.0.0.5"))),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "[2001:db8::1]:443")], Ok(ip("2001:db8::1"))),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "198.51.100.1:8080")], Ok(ip("198.51.100.1"))),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "nonsense")], Err(ForwardedError::Malformed)),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "")], Err(ForwardedError::Malformed)),
            (proxy, &proxies, XForwardedFor, vec![("x-forwarded-for", "fe80::1%eth0")], Err(ForwardedError::Malformed)),
            // Headers the proxy does not manage pass through from the client: never read.
            (proxy, &proxies, XForwardedFor, vec![("forwarded", "for=198.51.100.7"), ("x-forwarded-for", "203.0.113.9")], Ok(ip("203.0.113.9"))),
            (proxy, &proxies, XForwardedFor, vec![("x-real-ip", "198.51.100.7")], Ok(ip("10.0.0.2"))),
            (proxy, &proxies, XRealIp, vec![("x-real-ip", "198.51.100.3"), ("x-forwarded-for", "198.51.100.7")], Ok(ip("198.51.100.3"))),
            (proxy, &proxies, Forwarded, vec![("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8::2]:4711\"")], Ok(ip("2001:db8::2"))),
            (proxy, &proxies, Forwarded, vec![("forwarded", "for=192.0.2.60"), ("x-forwarded-for", "198.51.100.1")], Ok(ip("192.0.2.60"))),
            (proxy, &proxies, Forwarded, vec![("x-forwarded-for", "198.51.100.1")], Ok(ip("10.0.0.2"))),
            (proxy, &proxies, Forwarded, vec![("forwarded", "for=unknown")], Err(ForwardedError::Malformed)),
            (proxy, &proxies, Forwarded, vec![("forwarded", "proto=https")], Err(ForwardedError::Malformed)),
            (proxy, &proxies, Forwarded, vec![("forwarded", "For=\"::ffff:192.0.2.1\"")], Ok(ip("192.0.2.1"))),
        ];
        for (peer, trusted, header, pairs, want) in cases {
            assert_eq!(
                client_ip(&headers(&pairs), peer, trusted, header),
                want,
                "{peer} {header:?} {pairs:?}"
            );
        }
    }
}
