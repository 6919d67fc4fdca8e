//! A small HTTP/1.1 client for tests: one connection per request, JSON in and out.
//! It talks to chromedriver and to the troth server under test.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;

/// A reply: status and body text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// No request of a test should take longer; a hung server fails the test instead.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends one request to an `http://host:port/path` URL. A `body` is sent as JSON.
pub async fn request(method: &str, url: &str, body: Option<&serde_json::Value>) -> Result<Reply, String> {
    request_with(method, url, &[], body).await
}

/// [`request`] with extra headers (`("authorization", "Bearer …")`).
pub async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Result<Reply, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, send(method, url, headers, body))
        .await
        .map_err(|_| format!("{method} {url}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("{method} {url}: {e}"))
}

pub async fn get(url: &str) -> Reply {
    request("GET", url, None).await.unwrap_or_else(|e| panic!("{e}"))
}

pub async fn post_json(url: &str, body: &serde_json::Value) -> Reply {
    request("POST", url, Some(body)).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes())?)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(bytes))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
