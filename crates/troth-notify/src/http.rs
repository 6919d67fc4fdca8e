//! POSTing JSON to the SMS gateway and to webhooks, over `http://` or `https://`,
//! with one reqwest client for both. Proxies come from the environment as curl
//! reads them (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).

use std::time::Duration;

use reqwest::{StatusCode, Url, redirect};

use crate::tls::CaFile;
use crate::{ConfigError, SendError};

/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a refusal's body goes into `last_error`.
const EXCERPT: usize = 200;

/// Checks a URL troth will POST to: `http://` or `https://` with a host.
pub fn check_url(url: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::HttpUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!("{}:// is not http:// or https://", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host".into()));
    }
    Ok(parsed)
}

/// The HTTP channel shared by the SMS gateway and webhooks.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    /// Why `https://` cannot work on this machine, when it cannot.
    no_roots: Option<String>,
}

impl HttpClient {
    pub fn new(ca: Option<&CaFile>) -> Result<HttpClient, ConfigError> {
        let (tls, no_roots) = crate::tls::client_config(ca);
        if let Some(reason) = &no_roots {
            tracing::warn!("https:// webhooks and SMS gateways will fail: {reason}");
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A redirected POST turns into a GET in most clients' hands and the
            // signature would be shown to a host nobody configured: a 3xx is an
            // answer to report, not to follow.
            .redirect(redirect::Policy::none())
            .user_agent(concat!("troth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Tls(format!("the HTTP client: {}", crate::describe(&e))))?;
        Ok(HttpClient { client, no_roots })
    }

    /// POSTs `body` as JSON with the extra headers; a 2xx answer is success.
    pub async fn post_json(&self, url: &str, headers: &[(&str, String)], body: String) -> Result<(), SendError> {
        let target = check_url(url).map_err(|e| SendError::Permanent(e.to_string()))?;
        let host = target.host_str().unwrap_or_default().to_owned();
        let mut request = self
            .client
            .post(target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request.send().await.map_err(|e| {
            let mut reason = format!("POST to {host}: {}", crate::describe(&e));
            if let (Some(why), true) = (&self.no_roots, url.starts_with("https:")) {
                reason.push_str(&format!(" ({why})"));
            }
            SendError::Transient(reason)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut excerpt = Vec::new();
        while excerpt.len() < EXCERPT
            && let Ok(Some(chunk)) = response.chunk().await
        {
            excerpt.extend_from_slice(&chunk);
        }
        let excerpt: String = String::from_utf8_lossy(&excerpt).chars().take(EXCERPT).collect();
        Err(classify(status, format!("{host} answered {status}: {excerpt}")))
    }
}

/// A 4xx says the request itself is wrong and will be again, except "too slow"
/// (408) and "too many" (429); anything else (5xx, a 3xx troth does not follow)
/// may pass later.
fn classify(status: StatusCode, message: String) -> SendError {
    if status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT && status != StatusCode::TOO_MANY_REQUESTS {
        SendError::Permanent(message)
    } else {
        SendError::Transient(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_are_taken() {
        assert!(check_url("http://127.0.0.1:8080/hooks/a?b=1").is_ok());
        assert!(check_url("https://hooks.example/troth").is_ok());
        assert!(check_url("ftp://hooks.example/").is_err());
        assert!(check_url("hooks.example/troth").is_err());
    }

    #[test]
    fn four_hundreds_are_final_but_408_and_429() {
        let kind = |status: u16| match classify(StatusCode::from_u16(status).unwrap(), String::new()) {
            SendError::Permanent(_) => "permanent",
            _ => "transient",
        };
        assert_eq!(
            [400, 401, 404, 408, 429, 302, 500, 503].map(kind),
            [
                "permanent",
                "permanent",
                "permanent",
                "transient",
                "transient",
                "transient",
                "transient",
                "transient"
            ]
        );
    }
}
