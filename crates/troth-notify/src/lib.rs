//! troth's outbound messages. The store records what plays ask for in its outbox,
//! in the transaction of the event that triggered them; the [`Dispatcher`] here
//! claims due rows, sends them — email over SMTP, SMS through an HTTP gateway,
//! webhooks signed with HMAC-SHA256 — and marks them sent, or failed with backoff
//! until they are dead letters. Delivery is at least once; every message carries
//! its outbox id so a receiver can drop duplicates. See docs/notifications.md.

pub mod http;
pub mod smtp;
pub mod template;
pub mod tls;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::sync::Notify;
use troth_core::Timestamp;
use troth_store::{Message, OutboxEntry, OutboxState, RetryPolicy, Store, StoreError};

pub use smtp::{Security, SmtpConfig};
pub use template::{Composer, Template};
pub use tls::CaFile;

/// Settings that cannot work, found when they are read (at start) rather than
/// when the first message fails.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("smtp_url {url:?}: {reason}")]
    SmtpUrl { url: String, reason: String },
    #[error("smtp_from {from:?} is not an email address: {reason}")]
    SmtpFrom { from: String, reason: String },
    #[error("{url:?}: {reason}")]
    HttpUrl { url: String, reason: String },
    #[error("ca_file {path:?} cannot be read: {source}")]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ca_file {path:?}: {reason}")]
    CaFileInvalid { path: PathBuf, reason: String },
    #[error("{0}")]
    Tls(String),
}

/// How sends can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (a refused connection, a 5xx, an SMTP 4xx).
    #[error("{0}")]
    Transient(String),
    /// Trying again will not help (an SMTP 5xx, an HTTP 4xx, a bad address): dead at once.
    #[error("{0}")]
    Permanent(String),
    /// The channel has no configuration: the row waits, its attempts uncounted.
    #[error("{0}")]
    NotConfigured(String),
}

/// The SMS gateway: troth POSTs `{"to", "body", "id"}` as JSON to `url`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsConfig {
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
}

impl std::fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Everything the dispatcher needs; each channel is optional.
#[derive(Clone)]
pub struct NotifyConfig {
    pub smtp: Option<SmtpConfig>,
    pub sms: Option<SmsConfig>,
    /// CAs trusted on every outbound TLS connection besides the system's.
    pub ca_file: Option<CaFile>,
    /// Webhooks are sent only signed: without a secret they wait.
    pub webhook_secret: Option<String>,
    pub retry: RetryPolicy,
    /// By name; [`template::defaults`] unless overridden.
    pub templates: HashMap<String, Template>,
    /// Where customers reach troth (`https://track.shop.example`): tracking links in
    /// messages are made from it. Without it messages carry no link.
    pub public_url: Option<String>,
    /// How often to look for due rows when no commit wakes the dispatcher.
    pub poll: Duration,
    /// The retailer's time zone (an IANA name), for customers whose own
    /// (`traits.timezone`) is not known; UTC when unset.
    pub timezone: Option<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            smtp: None,
            sms: None,
            ca_file: None,
            webhook_secret: None,
            retry: RetryPolicy::default(),
            templates: template::defaults(),
            public_url: None,
            poll: Duration::from_secs(1),
            timezone: None,
        }
    }
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("smtp", &self.smtp)
            .field("sms", &self.sms)
            .field("ca_file", &self.ca_file)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "<set>"))
            .field("retry", &self.retry)
            .field("templates", &self.templates.len())
            .field("public_url", &self.public_url)
            .field("poll", &self.poll)
            .finish()
    }
}

/// How long a row whose channel is not configured waits before it is looked at again.
pub const UNCONFIGURED_RECHECK: Duration = Duration::from_secs(60);
/// Rows claimed (and sent concurrently) at a time.
const BATCH: usize = 16;

/// Claims due outbox rows, sends them, and marks them.
#[derive(Clone)]
pub struct Dispatcher<S> {
    store: S,
    config: Arc<NotifyConfig>,
    composer: Arc<Composer>,
    channels: Arc<Channels>,
}

/// The clients, made once: each holds its TLS configuration (the system's CAs are
/// read then), and reqwest's its pool of connections.
struct Channels {
    /// `None` when email is not configured; the error when it cannot be set up.
    mailer: Option<Result<smtp::Mailer, String>>,
    http: Result<http::HttpClient, String>,
}

impl Channels {
    fn new(config: &NotifyConfig) -> Channels {
        let ca = config.ca_file.as_ref();
        let report = |channel: &str, e: ConfigError| {
            tracing::error!(error = %e, "outbox: {channel} cannot be sent");
            e.to_string()
        };
        Channels {
            mailer: config
                .smtp
                .as_ref()
                .map(|smtp| smtp::Mailer::new(smtp, ca).map_err(|e| report("email", e))),
            http: http::HttpClient::new(ca).map_err(|e| report("SMS and webhooks", e)),
        }
    }

    /// A channel that could not be set up waits like an unconfigured one: its rows
    /// are not worn out by attempts that cannot succeed, and say why.
    fn http(&self) -> Result<&http::HttpClient, SendError> {
        self.http.as_ref().map_err(|e| SendError::NotConfigured(e.clone()))
    }
}

impl NotifyConfig {
    /// What renders messages as their rows are written (set it on the store with
    /// `SqliteStore::set_composer`), with these templates and this public URL.
    pub fn composer(&self) -> Composer {
        Composer::new(self.templates.clone(), self.public_url.clone()).in_zone(self.timezone.as_deref())
    }
}

impl<S: Store + Clone> Dispatcher<S> {
    pub fn new(store: S, config: NotifyConfig) -> Dispatcher<S> {
        Dispatcher {
            store,
            composer: Arc::new(config.composer()),
            channels: Arc::new(Channels::new(&config)),
            config: Arc::new(config),
        }
    }

    /// Sends until `stop` completes, woken by `wake` (commits that enqueued rows)
    /// or every `poll`. A batch under way is finished before stopping, so a normal
    /// stop leaves no row claimed.
    pub async fn run(self, wake: Arc<Notify>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "the outbox dispatcher could not reach the store");
            }
            tokio::select! {
                () = &mut stop => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// Sends every row due now; returns how many were handled.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let mut handled = 0;
        loop {
            let claimed = self.store.claim_outbox(Timestamp::now(), BATCH).await?;
            if claimed.is_empty() {
                return Ok(handled);
            }
            handled += claimed.len();
            // One recipient's messages go out one after another, in the order they
            // were written (a customer reads "out for delivery" before "arriving");
            // different recipients' go out together.
            let mut queues: Vec<(&Option<String>, Vec<&OutboxEntry>)> = Vec::new();
            for entry in &claimed {
                match queues.iter_mut().find(|(to, _)| **to == entry.recipient) {
                    Some((_, queue)) => queue.push(entry),
                    None => queues.push((&entry.recipient, vec![entry])),
                }
            }
            let sends = queues.into_iter().map(|(_, queue)| async move {
                let mut results = Vec::with_capacity(queue.len());
                for entry in queue {
                    results.push((entry, self.deliver(entry).await));
                }
                results
            });
            for (entry, result) in join_all(sends).await.into_iter().flatten() {
                self.mark(entry, result).await?;
            }
        }
    }

    async fn mark(&self, entry: &OutboxEntry, result: Result<(), SendError>) -> Result<(), StoreError> {
        let id = entry.id.clone();
        let now = Timestamp::now();
        match result {
            Ok(()) => {
                tracing::info!(id = %entry.id, channel = %entry.channel, "outbox: sent");
                self.store.outbox_sent(id, now).await?;
            }
            Err(SendError::NotConfigured(reason)) => {
                tracing::debug!(id = %entry.id, %reason, "outbox: waiting for configuration");
                let delay = UNCONFIGURED_RECHECK.as_micros() as i64;
                self.store.outbox_defer(id, now, reason, delay).await?;
            }
            Err(e) => {
                let policy = match e {
                    SendError::Permanent(_) => RetryPolicy {
                        max_attempts: 0,
                        ..self.config.retry
                    },
                    _ => self.config.retry,
                };
                let state = self.store.outbox_failed(id, now, e.to_string(), policy).await?;
                if state == Some(OutboxState::Dead) {
                    tracing::warn!(id = %entry.id, channel = %entry.channel, error = %e, "outbox: dead letter");
                } else {
                    tracing::info!(id = %entry.id, channel = %entry.channel, error = %e, "outbox: will retry");
                }
            }
        }
        Ok(())
    }

    /// Sends one row on its channel.
    pub async fn deliver(&self, entry: &OutboxEntry) -> Result<(), SendError> {
        let recipient = entry
            .recipient
            .as_deref()
            .ok_or_else(|| SendError::Permanent("the row has no recipient".into()))?;
        match entry.channel.as_str() {
            "email" => {
                let mailer = match &self.channels.mailer {
                    None => return Err(not_configured("email", "smtp_url")),
                    Some(Err(e)) => return Err(SendError::NotConfigured(e.clone())),
                    Some(Ok(mailer)) => mailer,
                };
                let message = self.message(entry)?;
                let email = smtp::Email {
                    to: recipient.to_owned(),
                    subject: message.subject,
                    body: message.body,
                    delivery: entry.id.clone(),
                };
                mailer.send(&email).await
            }
            "sms" => {
                let sms = self
                    .config
                    .sms
                    .as_ref()
                    .ok_or_else(|| not_configured("sms", "sms_url"))?;
                let message = self.message(entry)?;
                let body = json!({
                    "to": recipient,
                    "body": message.body,
                    "id": entry.id,
                });
                let mut headers = Vec::new();
                if let Some(token) = &sms.token {
                    headers.push(("authorization", format!("Bearer {token}")));
                }
                self.channels
                    .http()?
                    .post_json(&sms.url, &headers, body.to_string())
                    .await
            }
            "webhook" => {
                let secret = self
                    .config
                    .webhook_secret
                    .as_deref()
                    .ok_or_else(|| not_configured("webhook", "webhook_secret"))?;
                let body = webhook_body(entry).to_string();
                let now = time_now_unix();
                let headers = [
                    (
                        webhook::SIGNATURE_HEADER,
                        webhook::signature(secret, now, body.as_bytes()),
                    ),
                    (webhook::DELIVERY_HEADER, entry.id.clone()),
                ];
                self.channels.http()?.post_json(recipient, &headers, body).await
            }
            other => Err(SendError::Permanent(format!("troth cannot send on {other}"))),
        }
    }

    /// The text the row was written with; a row written without it (by a store with
    /// no composer, e.g. `troth import`) is rendered now.
    fn message(&self, entry: &OutboxEntry) -> Result<Message, SendError> {
        if let Some(message) = entry.payload.get("message")
            && let Ok(message) = serde_json::from_value::<Message>(message.clone())
        {
            return Ok(message);
        }
        self.composer.message(&entry.payload).ok_or_else(|| {
            let name = entry.payload.get("template").and_then(Value::as_str).unwrap_or("");
            SendError::Permanent(format!("no template named {name:?}; add it under [notify.templates]"))
        })
    }
}

fn not_configured(channel: &str, setting: &str) -> SendError {
    SendError::NotConfigured(format!(
        "the {channel} channel is not configured (set {setting} under [notify])"
    ))
}

/// What an alert webhook carries: the row's payload with its id and kind.
pub fn webhook_body(entry: &OutboxEntry) -> Value {
    let mut body = json!({"id": entry.id, "type": "play.alert", "created_at": entry.created_at});
    if let (Some(body), Some(payload)) = (body.as_object_mut(), entry.payload.as_object()) {
        for (key, value) in payload {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    body
}

/// An error with its causes ("error sending request: … invalid peer certificate: UnknownIssuer").
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        // Wrappers often repeat their cause, or say it again with more: keep each
        // piece of text once.
        let cause_text = cause.to_string();
        if cause_text.starts_with(&text) {
            text = cause_text;
        } else if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn time_now_unix() -> i64 {
    Timestamp::now().micros().div_euclid(1_000_000)
}
