//! POSTing JSON to an `http://` URL: the SMS gateway and webhooks. One connection
//! per request (sends are rare); TLS is left to a forwarding proxy, as for troth's
//! own API.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::SendError;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `http://HOST[:PORT][/PATH]` split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    host: String,
    port: u16,
    path: String,
}

fn parse(url: &str) -> Result<Url, SendError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        SendError::Permanent(format!(
            "{url:?}: only http:// URLs are supported (put a TLS-terminating proxy in between)"
        ))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => (
            host,
            port.parse()
                .map_err(|_| SendError::Permanent(format!("{url:?}: {port:?} is not a port")))?,
        ),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(SendError::Permanent(format!("{url:?} names no host")));
    }
    Ok(Url {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// POSTs `body` as JSON with the extra headers; a 2xx answer is success.
pub async fn post_json(url: &str, headers: &[(&str, String)], body: Bytes) -> Result<(), SendError> {
    let target = parse(url)?;
    tokio::time::timeout(TIMEOUT, exchange(&target, headers, body))
        .await
        .map_err(|_| SendError::Transient(format!("POST {url} timed out")))?
}

async fn exchange(url: &Url, headers: &[(&str, String)], body: Bytes) -> Result<(), SendError> {
    let transient = |what: &str, e: &dyn std::fmt::Display| SendError::Transient(format!("{what} {}: {e}", url.host));
    let stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| transient("connecting to", &e))?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transient("HTTP handshake with", &e))?;
    let connection = tokio::spawn(connection);
    let host = if url.port == 80 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(&url.path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, concat!("troth/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| SendError::Permanent(format!("building the request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| transient("sending to", &e))?;
    let status = response.status();
    let text = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    connection.abort();
    if status.is_success() {
        return Ok(());
    }
    let excerpt: String = String::from_utf8_lossy(&text).chars().take(200).collect();
    let message = format!("{} answered {status}: {excerpt}", url.host);
    // A 4xx says the request itself is wrong, except "too many" and "too slow".
    if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
        Err(SendError::Permanent(message))
    } else {
        Err(SendError::Transient(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split() {
        assert_eq!(
            parse("http://127.0.0.1:8080/hooks/a?b=1").unwrap(),
            Url {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/hooks/a?b=1".into()
            }
        );
        assert_eq!(parse("http://gw.local").unwrap().port, 80);
        assert!(matches!(parse("https://gw.local/"), Err(SendError::Permanent(_))));
    }
}
