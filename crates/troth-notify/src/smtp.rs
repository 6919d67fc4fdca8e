//! A small SMTP client (RFC 5321) over plain TCP: EHLO (HELO as a fallback), MAIL
//! FROM, RCPT TO, DATA with dot-stuffing, QUIT, each reply code checked. No TLS and
//! no AUTH: troth hands mail to a relay it trusts (a local MTA or a smarthost on the
//! private network), which keeps this crate free of a TLS stack.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::SendError;

/// Where and as whom to send mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// The envelope sender and `From:` address.
    pub from: String,
    /// The name troth gives in EHLO.
    pub helo: String,
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

const TIMEOUT: Duration = Duration::from_secs(30);

/// `<HEX@troth>`: the same outbox row always gets the same Message-ID.
pub fn message_id(delivery: &str) -> String {
    let digest = Sha256::digest(delivery.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@troth>")
}

/// Sends one email through the relay.
pub async fn send(config: &SmtpConfig, email: &Email) -> Result<(), SendError> {
    for address in [&config.from, &email.to] {
        if !plausible_address(address) {
            return Err(SendError::Permanent(format!("{address:?} is not an email address")));
        }
    }
    tokio::time::timeout(TIMEOUT * 4, conversation(config, email))
        .await
        .map_err(|_| SendError::Transient(format!("the SMTP conversation with {} timed out", config.host)))?
}

async fn conversation(config: &SmtpConfig, email: &Email) -> Result<(), SendError> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect((config.host.as_str(), config.port)))
        .await
        .map_err(|_| SendError::Transient(format!("connecting to {}:{} timed out", config.host, config.port)))?
        .map_err(|e| SendError::Transient(format!("connecting to {}:{}: {e}", config.host, config.port)))?;
    let mut smtp = Session {
        stream: BufReader::new(stream),
    };
    smtp.expect(&[220], "greeting").await?;
    smtp.send(&format!("EHLO {}\r\n", config.helo)).await?;
    if smtp.reply().await?.0 != 250 {
        smtp.send(&format!("HELO {}\r\n", config.helo)).await?;
        smtp.expect(&[250], "HELO").await?;
    }
    smtp.send(&format!("MAIL FROM:<{}>\r\n", config.from)).await?;
    smtp.expect(&[250], "MAIL FROM").await?;
    smtp.send(&format!("RCPT TO:<{}>\r\n", email.to)).await?;
    smtp.expect(&[250, 251], "RCPT TO").await?;
    smtp.send("DATA\r\n").await?;
    smtp.expect(&[354], "DATA").await?;
    let message = format_message(config, email);
    smtp.send(&dot_stuff(&message)).await?;
    smtp.send(".\r\n").await?;
    smtp.expect(&[250], "the message").await?;
    // The message is accepted; a failed goodbye changes nothing.
    let _ = smtp.send("QUIT\r\n").await;
    let _ = smtp.reply().await;
    Ok(())
}

struct Session {
    stream: BufReader<TcpStream>,
}

impl Session {
    async fn send(&mut self, line: &str) -> Result<(), SendError> {
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .map_err(|e| SendError::Transient(format!("writing to the SMTP server: {e}")))
    }

    /// Reads one reply, joining the lines of a multi-line one (`250-…` then `250 …`).
    async fn reply(&mut self) -> Result<(u16, String), SendError> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_line(&mut line))
                .await
                .map_err(|_| SendError::Transient("the SMTP server did not answer in time".into()))?
                .map_err(|e| SendError::Transient(format!("reading from the SMTP server: {e}")))?;
            if n == 0 {
                return Err(SendError::Transient("the SMTP server closed the connection".into()));
            }
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| SendError::Transient(format!("not an SMTP reply: {line:?}")))?;
            text.push_str(line.get(4..).unwrap_or(""));
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
            text.push(' ');
        }
    }

    async fn expect(&mut self, codes: &[u16], step: &str) -> Result<(), SendError> {
        let (code, text) = self.reply().await?;
        if codes.contains(&code) {
            return Ok(());
        }
        let message = format!("the SMTP server answered {step} with {code} {text}");
        // 5xx is a permanent refusal (RFC 5321 §4.2.1): trying again will not help.
        Err(if code >= 500 {
            SendError::Permanent(message)
        } else {
            SendError::Transient(message)
        })
    }
}

/// The message as sent after DATA: headers, a blank line, the body, CRLF line ends.
fn format_message(config: &SmtpConfig, email: &Email) -> String {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let mut message = String::new();
    for (name, value) in [
        ("From", config.from.as_str()),
        ("To", email.to.as_str()),
        ("Subject", &encode_header(&email.subject)),
        ("Date", &date),
        ("Message-ID", &message_id(&email.delivery)),
        ("Troth-Delivery", &one_line(&email.delivery)),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ] {
        message.push_str(&format!("{name}: {value}\r\n"));
    }
    message.push_str("\r\n");
    for line in email.body.lines() {
        message.push_str(line);
        message.push_str("\r\n");
    }
    message
}

/// A line starting with `.` gets another, so the server does not take it for the end.
fn dot_stuff(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 8);
    for line in message.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out
}

fn one_line(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

/// Plain ASCII as it is; anything else as an RFC 2047 encoded word.
fn encode_header(value: &str) -> String {
    let value = one_line(value);
    if value.is_ascii() {
        return value;
    }
    format!("=?UTF-8?B?{}?=", base64(value.as_bytes()))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Enough to refuse header or command injection: one `@`, no spaces, brackets or controls.
fn plausible_address(address: &str) -> bool {
    address.split('@').count() == 2
        && !address.starts_with('@')
        && !address.ends_with('@')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        assert_eq!(dot_stuff("a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n");
    }

    #[test]
    fn headers_cannot_be_injected() {
        assert_eq!(encode_header("Hi\r\nBcc: x@y"), "HiBcc: x@y");
        assert_eq!(encode_header("Café"), "=?UTF-8?B?Q2Fmw6k=?=");
        assert!(plausible_address("ann@example.org"));
        assert!(!plausible_address("ann@example.org>\r\nRCPT TO:<eve@example.org"));
        assert!(!plausible_address("nobody"));
    }

    #[test]
    fn the_message_id_follows_the_delivery() {
        assert_eq!(message_id("play:a:e1:0"), message_id("play:a:e1:0"));
        assert_ne!(message_id("play:a:e1:0"), message_id("play:a:e1:1"));
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
