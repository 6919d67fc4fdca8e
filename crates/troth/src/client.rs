//! A small HTTP/1.1 client over one kept-alive connection, for `import --url`
//! and the benchmarks.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;

/// Where a server is: `http://HOST:PORT[/PREFIX]`.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub prefix: String,
}

impl Target {
    pub async fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url.strip_prefix("http://").with_context(|| {
            format!("{url:?}: only http:// URLs are supported (put TLS in a proxy in front of troth)")
        })?;
        let (host, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let with_port = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Target {
            addr,
            host: host.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    pub fn from_addr(addr: SocketAddr) -> Target {
        Target {
            addr,
            host: addr.to_string(),
            prefix: String::new(),
        }
    }
}

pub struct Client {
    target: Target,
    key: Option<String>,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(target: &Target, key: Option<String>) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Client {
            target: target.clone(),
            key,
            sender,
        })
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.target.prefix))
            .header(header::HOST, &self.target.host)
            .header(header::CONTENT_TYPE, content_type);
        if let Some(key) = &self.key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(request.body(Full::new(body))?).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        self.request(Method::GET, path, "application/json", Bytes::new()).await
    }

    pub async fn post_json(&mut self, path: &str, body: impl Into<Bytes>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.request(Method::POST, path, "application/json", body.into()).await
    }
}
