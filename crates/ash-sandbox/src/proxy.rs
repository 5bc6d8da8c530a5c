//! The host side of `network = allow`: an HTTP proxy on a Unix socket (the sandbox reaches it
//! through a forwarder on its own loopback) that lets a connection through only when its
//! destination is on the allow list. It speaks `CONNECT host:port` (TLS and anything else
//! tunnelled; the TLS server name must match the host) and plain HTTP with an absolute URI
//! (the `Host` header must match). Names resolve on the host; a domain rule never reaches a
//! loopback, private or link-local address, and cloud metadata addresses are refused always.
//! A domain rule never leads to one of this host's own addresses either. Each plain-HTTP
//! connection carries exactly one request (its `Host` must be single and agree with the URI);
//! a CONNECT tunnel that starts a TLS handshake must show its whole ClientHello, however it is
//! split across writes, with the allowed server name. Every decision is recorded as a
//! [`Connection`] (the first [`MAX_RECORDED`]; the rest are counted) and logged (the first
//! [`MAX_LOGGED`] per run; then one line says how many more).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::policy::{HostPattern, HostRule, is_metadata, parse_ip_host};

/// Largest request head (request line and headers) the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// Connections served at once; more wait until one ends.
const MAX_CONNECTIONS: usize = 128;
/// Time allowed for the client's request head and for the upstream connect.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Decisions kept for the caller per run; later ones are only counted.
pub(crate) const MAX_RECORDED: usize = 1000;
/// Decisions written to the log per run; later ones are only counted.
const MAX_LOGGED: usize = 100;
/// Largest TLS record (16 KiB of data and its 5-byte header) read for the server name.
const MAX_TLS_RECORD: usize = 16 * 1024 + 5;

/// One decision of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The host the process asked for (as sent, lowercased).
    pub host: String,
    /// The port.
    pub port: u16,
    /// Whether it was let through.
    pub allowed: bool,
    /// The rule that allowed it, or why it was refused.
    pub reason: String,
}

/// The decisions of one run: the first [`MAX_RECORDED`], and how many more there were.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    kept: Vec<Connection>,
    seen: usize,
}

impl Decisions {
    fn record(&mut self, connection: Connection) {
        self.seen += 1;
        if self.seen <= MAX_LOGGED {
            if connection.allowed {
                tracing::info!(host = %connection.host, port = connection.port, reason = %connection.reason, "sandbox connection allowed");
            } else {
                tracing::warn!(host = %connection.host, port = connection.port, reason = %connection.reason, "sandbox connection denied");
            }
        } else if self.seen == MAX_LOGGED + 1 {
            tracing::warn!("more sandbox connection decisions in this run are counted, not logged");
        }
        if self.kept.len() < MAX_RECORDED {
            self.kept.push(connection);
        }
    }
}

/// A running proxy; [`Proxy::stop`] ends it and returns its decisions.
pub(crate) struct Proxy {
    path: PathBuf,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    log: Arc<Mutex<Decisions>>,
}

impl Proxy {
    /// Listens on `path` (which must not exist) and serves until stopped.
    pub(crate) fn start(path: PathBuf, rules: Vec<HostRule>) -> std::io::Result<Self> {
        let listener = UnixListener::bind(&path)?;
        let cancel = CancellationToken::new();
        let log = Arc::new(Mutex::new(Decisions::default()));
        let policy = Arc::new(Policy { rules, own: own_addresses() });
        let task = tokio::spawn(serve(listener, policy, Arc::clone(&log), cancel.clone()));
        Ok(Self { path, cancel, task, log })
    }

    /// The socket's host path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, ends open tunnels, removes the socket, and returns the decisions kept
    /// and how many more there were.
    pub(crate) async fn stop(self) -> (Vec<Connection>, u64) {
        self.cancel.cancel();
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
        let log = self.log.lock().map(|mut log| std::mem::take(&mut *log)).unwrap_or_default();
        let omitted = log.seen.saturating_sub(log.kept.len());
        (log.kept, u64::try_from(omitted).unwrap_or(u64::MAX))
    }
}

/// The rules, and this host's own addresses (which no domain rule may lead to).
struct Policy {
    rules: Vec<HostRule>,
    own: Vec<IpAddr>,
}

/// The addresses of this host's interfaces.
fn own_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    interfaces
        .filter_map(|i| i.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect()
}

async fn serve(
    listener: UnixListener,
    policy: Arc<Policy>,
    log: Arc<Mutex<Decisions>>,
    cancel: CancellationToken,
) {
    // Tunnels live in this set; dropping it (when the proxy stops) aborts them.
    let mut tunnels = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = tunnels.join_next(), if !tunnels.is_empty() => {}
            accepted = listener.accept(), if tunnels.len() < MAX_CONNECTIONS => {
                let Ok((stream, _)) = accepted else { continue };
                tunnels.spawn(handle(stream, Arc::clone(&policy), Arc::clone(&log)));
            }
        }
    }
}

/// What a client asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub connect: bool,
    pub host: String,
    pub port: u16,
    /// For plain HTTP: the head rewritten to origin form, to send upstream.
    pub upstream_head: Vec<u8>,
    /// For plain HTTP: the body's length (`Content-Length`, 0 without one).
    pub body_len: u64,
}

/// Why a request was refused before any rule was consulted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadRequest(pub &'static str);

async fn handle(mut client: UnixStream, policy: Arc<Policy>, log: Arc<Mutex<Decisions>>) {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(STEP_TIMEOUT, read_head(&mut client, &mut head)).await;
    let request = match read {
        Ok(Ok(end)) => parse_request(&head[..end]).map(|r| (r, head[end..].to_vec())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BadRequest("timed out reading the request")),
    };
    let (request, rest) = match request {
        Ok(r) => r,
        Err(BadRequest(why)) => {
            let _ = client.write_all(response(400, why).as_bytes()).await;
            return;
        }
    };
    let decision = decide(&policy, &request.host, request.port).await;
    let record = |allowed: bool, reason: String| {
        if let Ok(mut log) = log.lock() {
            log.record(Connection {
                host: request.host.clone(),
                port: request.port,
                allowed,
                reason,
            });
        }
    };
    let (addr, rule) = match decision {
        Ok(found) => found,
        Err(reason) => {
            let body =
                format!("ash sandbox: {}:{} is not allowed: {reason}", request.host, request.port);
            record(false, reason);
            let _ = client.write_all(response(403, &body).as_bytes()).await;
            return;
        }
    };
    // A tunnel's first bytes are read before connecting: a TLS ClientHello must name the host
    // that was allowed.
    let mut first = rest;
    if request.connect {
        if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
            return;
        }
        match tokio::time::timeout(STEP_TIMEOUT, read_first_record(&mut client, &mut first)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        // A domain rule is a name, and a name is only proven by TLS: the tunnel must start a
        // handshake naming exactly that host. (An IP rule grants the address itself.)
        let domain = parse_ip_host(&request.host).is_none();
        match (first.first() == Some(&0x16)).then(|| server_name(&first)) {
            Some(Ok(Some(sni))) => {
                let sni = sni.to_ascii_lowercase();
                if domain && sni != request.host {
                    record(
                        false,
                        format!(
                            "TLS server name `{}` does not match the CONNECT host",
                            sni.escape_debug().take(255).collect::<String>()
                        ),
                    );
                    return;
                }
            }
            Some(Ok(None)) if domain => {
                record(false, "the TLS ClientHello names no server".to_owned());
                return;
            }
            Some(Err(why)) => {
                record(false, format!("the TLS ClientHello cannot be read: {why}"));
                return;
            }
            None if domain => {
                record(false, "a tunnel to a domain must start a TLS handshake".to_owned());
                return;
            }
            Some(Ok(None)) | None => {}
        }
    }
    let upstream = match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => {
            record(false, format!("allowed by {rule}, but connecting to {addr} failed: {e}"));
            if !request.connect {
                let _ = client
                    .write_all(response(502, "ash sandbox: upstream connect failed").as_bytes())
                    .await;
            }
            return;
        }
        Err(_) => {
            record(false, format!("allowed by {rule}, but connecting to {addr} timed out"));
            if !request.connect {
                let _ = client
                    .write_all(response(504, "ash sandbox: upstream connect timed out").as_bytes())
                    .await;
            }
            return;
        }
    };
    let mut upstream = upstream;
    record(true, format!("allowed by {rule}"));
    if request.connect {
        if upstream.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // Plain HTTP: exactly one request goes upstream (its head, then `Content-Length` bytes of
    // body); anything the client sends after it is never forwarded, so a second request on
    // the connection cannot skip the checks.
    if upstream.write_all(&request.upstream_head).await.is_err() {
        return;
    }
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let body = async {
        let len = usize::try_from(request.body_len).unwrap_or(usize::MAX);
        let early = first.len().min(len);
        upstream_write.write_all(&first[..early]).await?;
        let remaining = (len - early) as u64;
        tokio::io::copy(&mut (&mut client_read).take(remaining), &mut upstream_write).await?;
        // Nothing more goes upstream on this connection.
        upstream_write.shutdown().await
    };
    let answer = tokio::io::copy(&mut upstream_read, &mut client_write);
    let _ = tokio::join!(body, answer);
}

/// Reads into `first` until it holds one whole TLS record (when it starts like one), or any
/// bytes at all otherwise.
async fn read_first_record(client: &mut UnixStream, first: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let want = match first.as_slice() {
            [] => 1,
            [0x16, _, _, hi, lo, ..] => {
                (5 + usize::from(u16::from_be_bytes([*hi, *lo]))).min(MAX_TLS_RECORD)
            }
            [0x16, ..] => 5,
            _ => return Ok(()),
        };
        if first.len() >= want {
            return Ok(());
        }
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        first.extend_from_slice(&buf[..n]);
    }
}

/// Reads until the end of the head; returns the index just past `\r\n\r\n`.
async fn read_head(client: &mut UnixStream, head: &mut Vec<u8>) -> Result<usize, BadRequest> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
        if head.len() > MAX_HEAD {
            return Err(BadRequest("the request head is larger than 16 KiB"));
        }
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => {
                return Err(BadRequest("the connection closed before the request ended"));
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

fn response(status: u16, body: &str) -> String {
    let reason = match status {
        400 => "Bad Request",
        501 => "Not Implemented",
        403 => "Forbidden",
        502 => "Bad Gateway",
        _ => "Gateway Timeout",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        body.len() + 1
    )
}

/// Parses a proxy request head (`CONNECT host:port` or `METHOD http://host[:port]/path`).
pub(crate) fn parse_request(head: &[u8]) -> Result<Request, BadRequest> {
    let text =
        std::str::from_utf8(head).map_err(|_| BadRequest("the request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(BadRequest("only HTTP/1.x proxy requests are supported"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(BadRequest("malformed method"));
    }
    let lines: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    // A bare LF or another control character would read differently upstream.
    if lines.iter().any(|l| l.bytes().any(|b| b.is_ascii_control() && b != b'\t')) {
        return Err(BadRequest("control characters in a header"));
    }
    let headers: Vec<(&str, &str)> =
        lines.iter().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
    if method == "CONNECT" {
        let (host, port) = split_authority(target, None)?;
        return Ok(Request { connect: true, host, port, upstream_head: Vec::new(), body_len: 0 });
    }
    let Some(rest) = target.strip_prefix("http://") else {
        return Err(BadRequest(
            "plain HTTP requests must use an absolute http:// URI; use CONNECT for https",
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(BadRequest("credentials in the URI are not allowed"));
    }
    let (host, port) = split_authority(authority, Some(80))?;
    let named =
        |wanted: &'static str| headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(wanted));
    if named("host").count() > 1 {
        return Err(BadRequest("more than one Host header"));
    }
    if let Some((_, value)) = named("host").next() {
        let (h, p) = split_authority(value, Some(80))?;
        if h != host || p != port {
            return Err(BadRequest("the Host header does not match the request URI"));
        }
    }
    if named("transfer-encoding").next().is_some() {
        return Err(BadRequest(
            "request bodies must have a Content-Length through the sandbox proxy (no Transfer-Encoding)",
        ));
    }
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    let mut lengths = named("content-length")
        .map(|(_, v)| if digits(v) { v.parse::<u64>().map_err(|_| ()) } else { Err(()) });
    let body_len = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(Ok(len)), None) => len,
        _ => return Err(BadRequest("malformed or repeated Content-Length")),
    };
    let mut upstream_head = format!("{method} {path} {version}\r\n").into_bytes();
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("proxy-connection")
            || name.eq_ignore_ascii_case("proxy-authorization")
            || name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("keep-alive")
            || name.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        upstream_head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if body_len > 0 {
        upstream_head.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
    }
    // One request per connection: the upstream closes after answering it.
    upstream_head.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Request { connect: false, host, port, upstream_head, body_len })
}

fn split_authority(
    authority: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), BadRequest> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or(BadRequest("malformed IPv6 authority"))?;
        (format!("[{ip}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => {
            p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(BadRequest("malformed port"))?
        }
        (None, Some(d)) => d,
        (None, None) => return Err(BadRequest("CONNECT needs host:port")),
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty()
        || host.len() > 253
        || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b))
    {
        return Err(BadRequest("malformed host"));
    }
    Ok((host, port))
}

/// Decides where a request may go: the address to connect to and the rule, or why not.
async fn decide(policy: &Policy, host: &str, port: u16) -> Result<(SocketAddr, String), String> {
    let Some(rule) = policy.rules.iter().find(|r| r.matches(host, port)) else {
        return Err("not on the network allow list".into());
    };
    if let Some(ip) = parse_ip_host(host) {
        if is_metadata(ip) {
            return Err("cloud metadata addresses are always blocked".into());
        }
        return Ok((SocketAddr::new(ip, port), rule.to_string()));
    }
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(format!("cannot resolve: {e}")),
            Err(_) => return Err("resolving timed out".into()),
        };
    debug_assert!(!matches!(rule.host, HostPattern::Ip(_)));
    addrs
        .iter()
        .find(|a| is_public(a.ip()) && !policy.own.contains(&a.ip()))
        .map(|a| (*a, rule.to_string()))
        .ok_or_else(|| {
            "resolves only to loopback, private, link-local, metadata or this host's own addresses"
                .into()
        })
}

/// Whether a domain rule may lead to `ip`: not loopback, private, link-local, shared,
/// unspecified, multicast or metadata.
fn is_public(ip: IpAddr) -> bool {
    if is_metadata(ip) || ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // Unique local, link-local, and the translation prefixes that embed an IPv4
            // address (NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16).
            let translated = (s[0] == 0x64 && s[1] == 0xff9b) || s[0] == 0x2002;
            !((s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 || translated)
                && v6.to_ipv4_mapped().is_none_or(|v4| is_public(IpAddr::V4(v4)))
        }
    }
}

/// The server name of a TLS ClientHello at the start of `bytes`: `Ok(None)` when it has none,
/// `Err` when the record is malformed or incomplete.
pub(crate) fn server_name(bytes: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader(bytes);
    if r.u8()? != 0x16 {
        return Err("not a TLS handshake");
    }
    r.take(2)?;
    let record = r.u16()?;
    let mut r = Reader(r.take(usize::from(record))?);
    if r.u8()? != 0x01 {
        return Err("not a ClientHello");
    }
    let len = r.u24()?;
    let mut r = Reader(r.take(len)?);
    r.take(2 + 32)?;
    let sid = r.u8()?;
    r.take(usize::from(sid))?;
    let suites = r.u16()?;
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    r.take(usize::from(compression))?;
    if r.0.is_empty() {
        return Ok(None);
    }
    let ext_len = r.u16()?;
    let mut exts = Reader(r.take(usize::from(ext_len))?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let len = exts.u16()?;
        let mut data = Reader(exts.take(usize::from(len))?);
        if kind != 0 {
            continue;
        }
        let list = data.u16()?;
        let mut list = Reader(data.take(usize::from(list))?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let len = list.u16()?;
            let name = list.take(usize::from(len))?;
            if name_type == 0 {
                return std::str::from_utf8(name)
                    .map(|s| Some(s.to_owned()))
                    .map_err(|_| "server name is not UTF-8");
            }
        }
        return Ok(None);
    }
    Ok(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated ClientHello");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Result<usize, &'static str> {
        self.take(3).map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Result<(bool, String, u16, String), BadRequest>;

    fn req(head: &str) -> Parsed {
        parse_request(head.as_bytes()).map(|r| {
            (r.connect, r.host, r.port, String::from_utf8_lossy(&r.upstream_head).into_owned())
        })
    }

    #[test]
    fn proxy_requests_parse_or_name_what_is_wrong() {
        let cases: Vec<(&str, Parsed)> = vec![
            (
                "CONNECT api.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok((true, "api.example.com".into(), 443, String::new())),
            ),
            (
                "CONNECT [::1]:8080 HTTP/1.1\r\n\r\n",
                Ok((true, "[::1]".into(), 8080, String::new())),
            ),
            (
                "GET http://Example.com/a?b HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\n\r\n",
                Ok((
                    false,
                    "example.com".into(),
                    80,
                    "GET /a?b HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n".into(),
                )),
            ),
            (
                "GET http://127.0.0.1:9000 HTTP/1.0\r\n\r\n",
                Ok((
                    false,
                    "127.0.0.1".into(),
                    9000,
                    "GET / HTTP/1.0\r\nConnection: close\r\n\r\n".into(),
                )),
            ),
            (
                "GET http://a.com/ HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
                Err(BadRequest("more than one Host header")),
            ),
            (
                "POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(BadRequest(
                    "request bodies must have a Content-Length through the sandbox proxy (no Transfer-Encoding)",
                )),
            ),
            (
                "GET http://a.com/ HTTP/1.1\r\nX: y\nHost: evil\r\n\r\n",
                Err(BadRequest("control characters in a header")),
            ),
            (
                "POST http://a.com/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                Err(BadRequest("malformed or repeated Content-Length")),
            ),
            (
                "POST http://a.com/x HTTP/1.1\r\nHost: a.com\r\nContent-Length: 0005\r\n\r\n",
                Ok((
                    false,
                    "a.com".into(),
                    80,
                    "POST /x HTTP/1.1\r\nHost: a.com\r\nContent-Length: 5\r\nConnection: close\r\n\r\n".into(),
                )),
            ),
            (
                "POST http://a.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Err(BadRequest("malformed or repeated Content-Length")),
            ),
            ("CONNECT example.com HTTP/1.1\r\n\r\n", Err(BadRequest("CONNECT needs host:port"))),
            ("CONNECT example.com:0 HTTP/1.1\r\n\r\n", Err(BadRequest("malformed port"))),
            ("CONNECT example.com:99999 HTTP/1.1\r\n\r\n", Err(BadRequest("malformed port"))),
            (
                "GET /relative HTTP/1.1\r\n\r\n",
                Err(BadRequest(
                    "plain HTTP requests must use an absolute http:// URI; use CONNECT for https",
                )),
            ),
            (
                "GET http://a.com/ HTTP/1.1\r\nHost: b.com\r\n\r\n",
                Err(BadRequest("the Host header does not match the request URI")),
            ),
            (
                "GET http://user:pw@a.com/ HTTP/1.1\r\n\r\n",
                Err(BadRequest("credentials in the URI are not allowed")),
            ),
            ("GET http://a b/ HTTP/1.1\r\n\r\n", Err(BadRequest("malformed request line"))),
            (
                "CONNECT a.com:443 SPDY/3\r\n\r\n",
                Err(BadRequest("only HTTP/1.x proxy requests are supported")),
            ),
            ("get http://a.com/ HTTP/1.1\r\n\r\n", Err(BadRequest("malformed method"))),
            ("CONNECT a\u{0}b.com:443 HTTP/1.1\r\n\r\n", Err(BadRequest("malformed host"))),
            ("", Err(BadRequest("malformed request line"))),
        ];
        for (head, expected) in cases {
            assert_eq!(req(head), expected, "{head:?}");
        }
        assert_eq!(
            parse_request(&[0xff, 0xfe]).map(|r| r.host),
            Err(BadRequest("the request head is not UTF-8"))
        );
    }

    use super::tests_support::client_hello;

    #[test]
    fn the_server_name_is_read_from_a_client_hello_and_garbage_is_an_error() {
        assert_eq!(
            server_name(&client_hello(Some("api.example.com"))),
            Ok(Some("api.example.com".into()))
        );
        assert_eq!(server_name(&client_hello(None)), Ok(None));
        let full = client_hello(Some("a.example"));
        for cut in [1, 5, 10, full.len() - 1] {
            assert!(server_name(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(server_name(b"GET / HTTP/1.1"), Err("not a TLS handshake"));
        assert_eq!(server_name(&[0x16, 3, 1, 0, 1, 2]), Err("not a ClientHello"));
    }

    #[test]
    fn domain_rules_never_lead_to_internal_addresses() {
        for (ip, public) in [
            ("8.8.8.8", true),
            ("2606:4700::1111", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("192.168.0.1", false),
            ("172.16.0.1", false),
            ("100.64.0.1", false),
            ("169.254.169.254", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("fd00:ec2::254", false),
            ("64:ff9b::a00:5", false),
            ("64:ff9b:1::1", false),
            ("2002:a00:5::1", false),
        ] {
            assert_eq!(is_public(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))), public, "{ip}");
        }
    }
}

#[cfg(test)]
mod split_tests {
    use tokio::io::AsyncWriteExt as _;

    use super::{read_first_record, server_name};

    #[tokio::test]
    async fn a_client_hello_split_across_writes_is_read_whole() {
        let hello = super::tests_support::client_hello(Some("api.example.com"));
        let (mut client, mut proxy) = tokio::net::UnixStream::pair().unwrap();
        let pieces: Vec<Vec<u8>> = vec![
            hello[..1].to_vec(),
            hello[1..4].to_vec(),
            hello[4..20].to_vec(),
            hello[20..].to_vec(),
        ];
        let writer = tokio::spawn(async move {
            for piece in pieces {
                client.write_all(&piece).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let mut first = Vec::new();
        read_first_record(&mut proxy, &mut first).await.unwrap();
        assert_eq!(first, hello);
        assert_eq!(server_name(&first), Ok(Some("api.example.com".to_owned())));
        drop(writer.await.unwrap());
    }
}

#[cfg(test)]
mod tests_support {
    /// A minimal TLS ClientHello record with an optional server name.
    pub(super) fn client_hello(name: Option<&str>) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = name {
            let n = name.as_bytes();
            let mut sni = Vec::new();
            sni.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
            sni.push(0);
            sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
            sni.extend_from_slice(n);
            exts.extend_from_slice(&[0, 0]);
            exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
            exts.extend_from_slice(&sni);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }
}
