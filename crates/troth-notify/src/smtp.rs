//! Email through an SMTP server with lettre: a local relay over plain SMTP, or a
//! provider's submission port with STARTTLS (`smtp://…?tls=required`, port 587) or
//! implicit TLS (`smtps://`, port 465), with AUTH (PLAIN or LOGIN) when the URL
//! carries a user and password. What lettre does not decide is decided here: how a
//! URL maps to a connection, how bodies are encoded, the stable `Message-ID`, and
//! which refusals are final.

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};

use crate::tls::CaFile;
use crate::{ConfigError, SendError};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: plain SMTP, for a relay on this machine or a network you trust.
    /// No STARTTLS even when offered: a relay with a self-made certificate would
    /// otherwise fail, and TLS that falls back to plain text protects nothing
    /// against someone on the path. Ask for TLS with `?tls=required`.
    None,
    /// `smtp://…?tls=opportunistic`: STARTTLS when the server offers it (its
    /// certificate checked), plain otherwise.
    Opportunistic,
    /// `smtp://…?tls=required`: STARTTLS, or no mail.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// Where and as whom to send mail, from `[notify] smtp_url` and `smtp_from`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// AUTH user and password, from the URL's user info.
    pub credentials: Option<(String, String)>,
    /// The envelope sender and `From:` (`cx@shop.example` or `Shop <cx@shop.example>`).
    pub from: String,
    /// The name troth gives in EHLO.
    pub helo: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("from", &self.from)
            .field("helo", &self.helo)
            .finish()
    }
}

impl SmtpConfig {
    /// Reads `smtp://[user:password@]host[:port][?tls=required|opportunistic]` or
    /// `smtps://[user:password@]host[:port]`. The port defaults to 25 for plain
    /// SMTP, 587 with STARTTLS, 465 for `smtps://`. User and password are
    /// percent-decoded (`%40` for an `@` in a user name).
    pub fn from_url(url: &str, from: &str) -> Result<SmtpConfig, ConfigError> {
        let invalid = |reason: &str| ConfigError::SmtpUrl {
            url: redact(url),
            reason: reason.to_owned(),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let mut tls = None;
        for (key, value) in parsed.query_pairs() {
            match (&*key, tls) {
                ("tls", None) => tls = Some(value.into_owned()),
                _ => {
                    return Err(invalid(&format!(
                        "unknown or repeated parameter {key:?}; only tls= is read"
                    )));
                }
            }
        }
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::None, 25),
            ("smtp", Some("required")) => (Security::StartTls, 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic, 587),
            ("smtps", None) => (Security::Implicit, 465),
            ("smtp", Some(other)) => {
                return Err(invalid(&format!(
                    "tls={other:?}: use tls=required (STARTTLS) or smtps:// (implicit TLS)"
                )));
            }
            ("smtps", Some(_)) => return Err(invalid("smtps:// is always TLS; it takes no tls= parameter")),
            (scheme, _) => return Err(invalid(&format!("{scheme}:// is not smtp:// or smtps://"))),
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("it names no host"))?;
        // The URL keeps an IPv6 address in brackets; connecting and checking the
        // certificate want it bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if parsed.path().len() > 1 {
            return Err(invalid("it has a path; an SMTP URL ends after the host and port"));
        }
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| invalid("its user or password is not valid percent-encoded UTF-8"))
        };
        let credentials = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            (user, Some(password)) => Some((decode(user)?, decode(password)?)),
            (_, None) => return Err(invalid("it names a user without a password")),
        };
        // AUTH over plain text would hand the password to anyone on the path, and
        // opportunistic TLS falls back to plain text when someone there strips
        // STARTTLS from the server's offer.
        let tls_assured = matches!(security, Security::StartTls | Security::Implicit);
        if credentials.is_some() && !tls_assured && !is_loopback(&host) {
            return Err(invalid(
                "it could send a password without TLS; use smtp://…?tls=required or smtps://",
            ));
        }
        let from = from.trim();
        from.parse::<Mailbox>().map_err(|e| ConfigError::SmtpFrom {
            from: from.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(SmtpConfig {
            host,
            port: parsed.port().unwrap_or(default_port),
            security,
            credentials,
            from: from.to_owned(),
            helo: "troth".to_owned(),
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The URL with its password replaced, for error messages and logs.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// One email, ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// The outbox id; the `Message-ID` is derived from it so a receiver can de-duplicate.
    pub delivery: String,
}

/// How long one step of the conversation (connecting, each reply) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a whole send may take, however many steps answer in time.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// `<HEX@troth>`: the same outbox row always gets the same Message-ID, so a
/// message sent again after a crash or a lost reply is recognisably the same.
pub fn message_id(delivery: &str) -> String {
    let digest = Sha256::digest(delivery.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@troth>")
}

/// The message as it goes after DATA. A body of ASCII lines that fit SMTP's limit
/// goes as it is (7bit); anything else as quoted-printable, which is ASCII in
/// lines of at most 76 characters, so it needs no 8BITMIME from the server and
/// survives any relay. Header values are RFC 2047-encoded and folded by lettre.
pub fn format(from: &str, email: &Email) -> Result<Message, SendError> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| SendError::Permanent(format!("smtp_from {from:?} is not an email address: {e}")))?;
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|e| SendError::Permanent(format!("{:?} is not an email address: {e}", email.to)))?;
    let delivery = HeaderName::new_from_ascii_str("Troth-Delivery");
    let body = Body::new_with_encoding(email.body.clone(), ContentTransferEncoding::SevenBit)
        .or_else(|_| Body::new_with_encoding(email.body.clone(), ContentTransferEncoding::QuotedPrintable))
        .map_err(|_| SendError::Permanent("the body cannot be encoded".into()))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.as_str())
        .message_id(Some(message_id(&email.delivery)))
        .raw_header(HeaderValue::new(delivery, email.delivery.clone()))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| SendError::Permanent(format!("the message cannot be made: {e}")))
}

/// The SMTP channel: one lettre transport, one connection per message (mail is
/// rare enough that keeping connections open would only meet servers' idle
/// timeouts).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    config: SmtpConfig,
}

impl Mailer {
    pub fn new(config: &SmtpConfig, ca: Option<&CaFile>) -> Result<Mailer, ConfigError> {
        let tls_parameters = || -> Result<TlsParameters, ConfigError> {
            let mut builder = TlsParameters::builder(config.host.clone());
            for certificate in ca.iter().flat_map(|ca| &ca.certificates) {
                let certificate = Certificate::from_der(certificate.to_vec())
                    .map_err(|e| ConfigError::Tls(format!("the ca_file certificate: {e}")))?;
                builder = builder.add_root_certificate(certificate);
            }
            builder
                .build_rustls()
                .map_err(|e| ConfigError::Tls(format!("TLS for the SMTP server {}: {e}", config.host)))
        };
        let tls = match config.security {
            Security::None => Tls::None,
            Security::Opportunistic => Tls::Opportunistic(tls_parameters()?),
            Security::StartTls => Tls::Required(tls_parameters()?),
            Security::Implicit => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
            .port(config.port)
            .tls(tls)
            .hello_name(ClientId::Domain(config.helo.clone()))
            .timeout(Some(STEP_TIMEOUT));
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            config: config.clone(),
        })
    }

    /// Sends one email; `Ok` once the server accepted it.
    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        let message = format(&self.config.from, email)?;
        let server = format!("{}:{}", self.config.host, self.config.port);
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Err(_) => Err(SendError::Transient(format!(
                "the SMTP conversation with {server} timed out"
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&server, &e)),
        }
    }
}

/// A 5xx reply refuses the message for good (RFC 5321 §4.2.1), except the replies
/// about troth's own credentials or TLS (530 authentication or STARTTLS required,
/// 534, 535 bad credentials, 538): those say the configuration is wrong, and every
/// message would go dead until it is fixed, so they are retried like a 4xx.
fn classify(server: &str, e: &lettre::transport::smtp::Error) -> SendError {
    let what = crate::describe(e);
    let code = e.status().map(|c| c.to_string());
    match code.as_deref() {
        Some("530" | "534" | "535" | "538") => SendError::Transient(format!(
            "the SMTP server {server} refused troth's login or wants TLS first (check smtp_url): {what}"
        )),
        _ if e.is_permanent() => SendError::Permanent(format!("the SMTP server {server} refused the message: {what}")),
        _ => SendError::Transient(format!("the SMTP server {server}: {what}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: &Message) -> String {
        String::from_utf8(message.formatted()).unwrap()
    }

    fn email(subject: &str, body: &str) -> Email {
        Email {
            to: "ann@example.org".into(),
            subject: subject.into(),
            body: body.into(),
            delivery: "play:a:e1:0".into(),
        }
    }

    #[test]
    fn urls_say_how_to_connect() {
        let config = SmtpConfig::from_url("smtp://relay.local", "cx@shop.example").unwrap();
        assert_eq!(
            (config.port, config.security, config.credentials),
            (25, Security::None, None)
        );
        let config =
            SmtpConfig::from_url("smtp://ann%40shop:p%3Ass@mail.example?tls=required", "cx@shop.example").unwrap();
        assert_eq!(
            (config.host.as_str(), config.port, config.security),
            ("mail.example", 587, Security::StartTls)
        );
        assert_eq!(config.credentials, Some(("ann@shop".into(), "p:ss".into())));
        assert!(
            !format!("{config:?}").contains("p:ss"),
            "the password stays out of logs"
        );
        let config = SmtpConfig::from_url("smtps://u:p@mail.example:2465", "Shop <cx@shop.example>").unwrap();
        assert_eq!((config.port, config.security), (2465, Security::Implicit));
        let config = SmtpConfig::from_url("smtp://[::1]:2525?tls=opportunistic", "cx@shop.example").unwrap();
        assert!(SmtpConfig::from_url("smtp://u:p@mail.example?tls=opportunistic", "cx@shop.example").is_err());
        assert_eq!(
            (config.host.as_str(), config.security),
            ("::1", Security::Opportunistic)
        );
        // A password on a loopback relay without TLS is fine; across a network it is not.
        assert!(SmtpConfig::from_url("smtp://u:p@127.0.0.1:25", "cx@shop.example").is_ok());
        let refused = |url: &str| SmtpConfig::from_url(url, "cx@shop.example").unwrap_err().to_string();
        let error = refused("smtp://u:secret@mail.example");
        assert!(error.contains("without TLS") && !error.contains("secret"), "{error}");
        assert!(refused("smtp://mail.example?tls=yes").contains("tls=required"));
        assert!(refused("smtps://mail.example?tls=required").contains("always TLS"));
        assert!(refused("http://mail.example").contains("not smtp://"));
        assert!(refused("smtp://u@mail.example?tls=required").contains("without a password"));
        assert!(refused("smtp://mail.example/x").contains("path"));
        let from = SmtpConfig::from_url("smtp://relay.local", "not an address").unwrap_err();
        assert!(from.to_string().contains("smtp_from"), "{from}");
    }

    #[test]
    fn ascii_bodies_go_as_they_are_and_others_quoted_printable() {
        let plain = format("cx@shop.example", &email("Hi", "Hello Ann,\nYour parcel.\n")).unwrap();
        let plain = text(&plain);
        assert!(plain.contains("Content-Transfer-Encoding: 7bit\r\n"), "{plain}");
        assert!(plain.ends_with("\r\n\r\nHello Ann,\r\nYour parcel.\r\n"), "{plain}");
        assert!(plain.contains(&format!("Message-ID: {}\r\n", message_id("play:a:e1:0"))));
        assert!(plain.contains("Troth-Delivery: play:a:e1:0\r\n"), "{plain}");

        let long = format!("11:00–12:00 {}\n", "x".repeat(2_000));
        let encoded = text(&format("cx@shop.example", &email("Café", &long)).unwrap());
        assert!(
            encoded.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
            "{encoded}"
        );
        assert!(encoded.is_ascii(), "no 8BITMIME needed");
        assert!(encoded.lines().all(|l| l.len() <= 78), "{encoded}");
        assert!(
            encoded.contains("Subject: =?utf-8?b?") || encoded.contains("Subject: =?utf-8?q?"),
            "{encoded}"
        );
    }

    #[test]
    fn headers_and_addresses_cannot_be_injected() {
        let injected = text(&format("cx@shop.example", &email("Hi\r\nBcc: eve@example.org", "x")).unwrap());
        assert!(!injected.contains("\r\nBcc:"), "{injected}");
        let mut bad = email("Hi", "x");
        bad.to = "ann@example.org>\r\nRCPT TO:<eve@example.org".into();
        assert!(matches!(format("cx@shop.example", &bad), Err(SendError::Permanent(_))));
        bad.to = "nobody".into();
        assert!(matches!(format("cx@shop.example", &bad), Err(SendError::Permanent(_))));
    }

    #[test]
    fn the_message_id_follows_the_delivery() {
        assert_eq!(message_id("play:a:e1:0"), message_id("play:a:e1:0"));
        assert_ne!(message_id("play:a:e1:0"), message_id("play:a:e1:1"));
    }
}
