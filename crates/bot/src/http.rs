//! A minimal HTTP/1.1 client for the bot's WHEP exchanges: one request per
//! TCP connection (`Connection: close`), the whole response read, then its
//! status, headers and body (by `Content-Length`, chunked, or up to the
//! close). A viewer sends two requests in its life (POST the offer, DELETE
//! the session), so no connection reuse and no HTTP library. The request
//! writing, response parsing and `Location` resolution are pure and tested
//! here.

use anyhow::{anyhow, bail, Context};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read, in bytes (an SDP answer is a few kB).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An `http://` URL split for a request: `host:port` to connect to and the
/// path (with its query) to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub authority: String,
    pub path: String,
}

impl HttpUrl {
    /// `http://host:port/path?query` (the path defaults to `/`; a fragment
    /// is dropped). Only plain HTTP: the bot runs beside the server.
    pub fn parse(url: &str) -> anyhow::Result<HttpUrl> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("`{url}` is not an http:// URL"))?;
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("`{url}` has no usable host");
        }
        Ok(HttpUrl {
            authority: authority.to_string(),
            path,
        })
    }

    /// The same server, another path (an absolute path with its query).
    pub fn with_path(&self, path: &str) -> HttpUrl {
        HttpUrl {
            authority: self.authority.clone(),
            path: path.to_string(),
        }
    }

    /// Where a `Location` header of a response to this URL points (RFC 9110
    /// §10.2.2, resolved as RFC 3986 §5.2 says): an absolute `http://` URL,
    /// an absolute path on this server, or a path relative to this URL's
    /// directory (`..` and `.` segments removed).
    pub fn resolve(&self, location: &str) -> anyhow::Result<HttpUrl> {
        let location = location.trim();
        if location.is_empty() {
            bail!("empty Location");
        }
        if location.starts_with("http://") {
            return HttpUrl::parse(location);
        }
        if location.contains("://") {
            bail!("Location `{location}` is not on plain HTTP");
        }
        if let Some(rest) = location.strip_prefix("//") {
            return HttpUrl::parse(&format!("http://{rest}"));
        }
        let location = location.split('#').next().unwrap_or_default();
        let (location, query) = match location.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (location, None),
        };
        let joined = if location.starts_with('/') {
            location.to_string()
        } else if location.is_empty() {
            self.path.split('?').next().unwrap_or("/").to_string()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        let mut path = remove_dot_segments(&joined);
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        Ok(self.with_path(&path))
    }
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *s {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Percent-encode one path segment (everything but RFC 3986's unreserved
/// characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Names as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, for errors and SDP.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// "404 Not Found: <body>" for an error message (the body shortened).
    pub fn describe(&self) -> String {
        let text = self.text();
        let text = text.trim();
        let short: String = text.chars().take(300).collect();
        if short.is_empty() {
            format!("{} {}", self.status, self.reason)
        } else {
            format!("{} {}: {short}", self.status, self.reason)
        }
    }
}

/// The bytes of one request; `Host`, `Content-Length` and `Connection:
/// close` are added.
pub fn write_request(
    method: &str,
    url: &HttpUrl,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        url.path, url.authority
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parse a whole response as read up to the close.
pub fn parse_response(bytes: &[u8]) -> anyhow::Result<Response> {
    let end = find(bytes, b"\r\n\r\n").ok_or_else(|| {
        anyhow!(
            "incomplete HTTP response ({} bytes, no end of headers)",
            bytes.len()
        )
    })?;
    let head = std::str::from_utf8(&bytes[..end]).context("HTTP headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x response: `{status_line}`");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| anyhow!("bad HTTP status line `{status_line}`"))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("bad HTTP header line `{line}`"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    let rest = &bytes[end + 4..];
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    response.body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| anyhow!("bad Content-Length `{length}`"))?;
        if rest.len() < length {
            bail!("the HTTP body ended after {} of {length} bytes", rest.len());
        }
        rest[..length].to_vec()
    } else if matches!(status, 100..=199 | 204 | 304) {
        Vec::new()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

/// The body of a chunked transfer (trailers ignored).
fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).context("chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| anyhow!("bad chunk size `{size_text}`"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            bail!("truncated chunk of {size} bytes");
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Send one request and read the whole response, within `timeout`.
pub async fn request(
    method: &str,
    url: &HttpUrl,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(&url.authority)
            .await
            .with_context(|| format!("could not connect to {}", url.authority))?;
        stream
            .write_all(&write_request(method, url, headers, body))
            .await
            .context("could not send the request")?;
        let mut bytes = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .context("could not read the response")?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            bail!("the response is larger than {MAX_RESPONSE_BYTES} bytes");
        }
        parse_response(&bytes)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("{method} {} took longer than {timeout:?}", url.path))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        HttpUrl::parse(s).expect("valid URL")
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            url("http://127.0.0.1:3000"),
            HttpUrl {
                authority: "127.0.0.1:3000".into(),
                path: "/".into()
            }
        );
        assert_eq!(
            url("http://h:1/whep/r?label=x#frag").path,
            "/whep/r?label=x"
        );
        assert_eq!(url("http://h:1?x=1").path, "/?x=1");
        assert!(HttpUrl::parse("https://h/").is_err(), "plain HTTP only");
        assert!(HttpUrl::parse("http:///path").is_err());
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        let post = url("http://127.0.0.1:3000/whep/bench-0?label=video");
        assert_eq!(
            post.resolve("/whep/bench-0/abc").expect("absolute path"),
            url("http://127.0.0.1:3000/whep/bench-0/abc")
        );
        assert_eq!(
            post.resolve("bench-0/abc").expect("relative"),
            url("http://127.0.0.1:3000/whep/bench-0/abc"),
            "relative to the POST's directory, its query dropped"
        );
        assert_eq!(
            post.resolve("../session/1?x=2#f").expect("dot segments"),
            url("http://127.0.0.1:3000/session/1?x=2")
        );
        assert_eq!(
            post.resolve("http://10.0.0.1:8080/s/1")
                .expect("absolute URL"),
            url("http://10.0.0.1:8080/s/1")
        );
        assert_eq!(
            post.resolve("//other:1/s").expect("network path"),
            url("http://other:1/s")
        );
        assert!(post.resolve("https://h/s").is_err());
        assert!(post.resolve("  ").is_err());
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("bench-0"), "bench-0");
        assert_eq!(encode_segment("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn requests_carry_host_length_and_close() {
        let req = write_request(
            "POST",
            &url("http://127.0.0.1:3000/whep/r"),
            &[("Content-Type", "application/sdp")],
            b"v=0\r\n",
        );
        assert_eq!(
            String::from_utf8(req).expect("text"),
            "POST /whep/r HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\nConnection: close\r\n\r\nv=0\r\n"
        );
        let delete = write_request("DELETE", &url("http://h:1/whep/r/s"), &[], b"");
        assert!(!String::from_utf8(delete)
            .expect("text")
            .contains("Content-Length"));
    }

    #[test]
    fn responses_parse_by_length_chunks_or_close() {
        let r = parse_response(
            b"HTTP/1.1 201 Created\r\ncontent-type: application/sdp\r\nLocation: /whep/r/s\r\nETag: \"x\"\r\ncontent-length: 5\r\n\r\nv=0\r\nEXTRA",
        )
        .expect("parsed");
        assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
        assert_eq!(r.header("location"), Some("/whep/r/s"));
        assert_eq!(r.header("ETAG"), Some("\"x\""));
        assert_eq!(r.body, b"v=0\r\n", "exactly Content-Length bytes");
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!(chunked.body, b"hello world");
        let closed =
            parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nnothing to play").expect("close");
        assert_eq!(closed.describe(), "404 Not Found: nothing to play");
        let empty = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").expect("no body");
        assert_eq!(empty.describe(), "204 No Content");
    }

    #[test]
    fn broken_responses_are_errors() {
        assert!(parse_response(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\nv=0").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
                .is_err()
        );
    }
}
