//! Real receivers on loopback for the tests: a small SMTP server that speaks the
//! protocol and keeps what it is sent (with STARTTLS, implicit TLS and AUTH when a
//! test asks), one that accepts and never answers, and an HTTP server that records
//! requests and answers with a status the test sets (over TLS when asked). TLS
//! itself comes from the test as an [`Upgrade`], so this module needs no TLS crate
//! (the binary's tests use it too).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection, plain or TLS.
pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// Turns an accepted TCP connection into a TLS one (the server's side).
pub type Upgrade = Arc<dyn Fn(TcpStream) -> std::io::Result<Box<dyn Conn>> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message after DATA, dot-stuffing undone, CRLF line ends.
    pub data: String,
    /// Whether it came over TLS.
    pub tls: bool,
    /// Who authenticated, when someone did.
    pub user: Option<String>,
}

impl Mail {
    /// A header's value, folded lines joined.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded
            .split("\r\n")
            .filter_map(|l| l.split_once(": "))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_owned())
    }

    /// A header's text as a reader sees it: RFC 2047 encoded words (`=?utf-8?b?…?=`) decoded.
    pub fn text_header(&self, name: &str) -> Option<String> {
        let mut text = String::new();
        let mut after_word = false;
        for token in self.header(name)?.split(' ') {
            let word = token
                .strip_prefix("=?")
                .and_then(|t| t.strip_suffix("?="))
                .and_then(|t| t.split_once("?b?").or_else(|| t.split_once("?B?")));
            // Whitespace between two encoded words is not part of the text.
            let between_words = after_word && word.is_some();
            if !text.is_empty() && !between_words {
                text.push(' ');
            }
            match word {
                Some((_charset, encoded)) => text.push_str(&String::from_utf8(decode_base64(encoded)).unwrap()),
                None => text.push_str(token),
            }
            after_word = word.is_some();
        }
        Some(text)
    }

    /// The body as sent (still encoded).
    pub fn raw_body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// The body as the reader sees it: quoted-printable decoded.
    pub fn body(&self) -> String {
        match self.header("Content-Transfer-Encoding").as_deref() {
            Some(qp) if qp.eq_ignore_ascii_case("quoted-printable") => decode_quoted_printable(self.raw_body()),
            _ => self.raw_body().to_owned(),
        }
    }
}

/// RFC 2045 §6.7: `=XX` is a byte, `=` at a line's end joins it to the next.
pub fn decode_quoted_printable(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'=' {
            bytes.push(b);
        } else if rest.starts_with(b"\r\n") {
            rest = &rest[2..];
        } else {
            let hex = std::str::from_utf8(&rest[..2]).unwrap();
            bytes.push(u8::from_str_radix(hex, 16).unwrap());
            rest = &rest[2..];
        }
    }
    String::from_utf8(bytes).unwrap()
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut bits, mut n) = (Vec::new(), 0u32, 0);
    for c in text.trim().bytes().take_while(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = bits << 6 | value;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// What the SMTP server asks of its clients.
#[derive(Clone, Default)]
pub struct SmtpOptions {
    /// Offers STARTTLS with this, and refuses mail until the client took it.
    pub starttls: Option<Upgrade>,
    /// TLS from the first byte (`smtps://`).
    pub implicit_tls: Option<Upgrade>,
    /// Requires AUTH with this user and password before mail.
    pub auth: Option<(String, String)>,
    /// The mechanisms offered with AUTH: `"PLAIN LOGIN"` unless set.
    pub mechanisms: Option<&'static str>,
    /// Recipients refused with 550.
    pub refuse: Vec<String>,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    /// Every reply the server gave that refused something, for the tests to read.
    pub refusals: Arc<Mutex<Vec<String>>>,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        SmtpServer::with(SmtpOptions::default())
    }

    pub fn with(options: SmtpOptions) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let (kept, refused) = (mails.clone(), refusals.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (kept, refused, options) = (kept.clone(), refused.clone(), options.clone());
                std::thread::spawn(move || {
                    let _ = smtp_session(stream, &options, &kept, &refused);
                });
            }
        });
        SmtpServer { addr, mails, refusals }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` mails arrived (or the timeout passed) and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let started = Instant::now();
        while self.mails().len() < n && started.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.mails()
    }
}

fn read_line(lines: &mut BufReader<Box<dyn Conn>>) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    Ok((lines.read_line(&mut line)? > 0).then_some(line))
}

fn smtp_session(
    stream: TcpStream,
    options: &SmtpOptions,
    mails: &Mutex<Vec<Mail>>,
    refusals: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    // Kept to hand to STARTTLS: the upgrade takes the TCP stream itself.
    let mut tcp = Some(stream.try_clone()?);
    let mut tls = options.implicit_tls.is_some();
    let conn: Box<dyn Conn> = match &options.implicit_tls {
        Some(upgrade) => upgrade(stream)?,
        None => Box::new(stream),
    };
    let mut lines = BufReader::new(conn);
    let mut user = None;
    let reply = |lines: &mut BufReader<Box<dyn Conn>>, text: &str| -> std::io::Result<()> {
        if text.starts_with('5') {
            refusals.lock().unwrap().push(text.trim_end().to_owned());
        }
        lines.get_mut().write_all(text.as_bytes())?;
        lines.get_mut().flush()
    };
    reply(&mut lines, "220 test.local ESMTP\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Some(line) = read_line(&mut lines)? {
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let needs_tls = options.starttls.is_some() && !tls;
        if upper.starts_with("EHLO") {
            let mut text = String::from("250-test.local\r\n");
            if needs_tls {
                text.push_str("250-STARTTLS\r\n");
            } else if options.auth.is_some() {
                text.push_str(&format!("250-AUTH {}\r\n", options.mechanisms.unwrap_or("PLAIN LOGIN")));
            }
            text.push_str("250 8BITMIME\r\n");
            reply(&mut lines, &text)?;
        } else if upper.starts_with("HELO") || upper.starts_with("RSET") || upper.starts_with("NOOP") {
            reply(&mut lines, "250 OK\r\n")?;
        } else if upper == "STARTTLS" && needs_tls {
            reply(&mut lines, "220 go ahead\r\n")?;
            let upgrade = options.starttls.as_ref().unwrap();
            lines = BufReader::new(upgrade(tcp.take().unwrap())?);
            tls = true;
        } else if let Some(rest) = upper
            .strip_prefix("AUTH ")
            .filter(|_| !needs_tls && options.auth.is_some())
        {
            let (expected_user, expected_password) = options.auth.clone().unwrap();
            let original = &command[command.len() - rest.len()..];
            let (given_user, given_password) = match original.split_once(' ') {
                Some((mechanism, initial)) if mechanism.eq_ignore_ascii_case("PLAIN") => plain(initial),
                None if rest == "PLAIN" => {
                    reply(&mut lines, "334 \r\n")?;
                    plain(&read_line(&mut lines)?.unwrap_or_default())
                }
                _ if rest.starts_with("LOGIN") => {
                    let user = match original.split_once(' ') {
                        Some((_, initial)) => decode_base64(initial),
                        None => {
                            reply(&mut lines, "334 VXNlcm5hbWU6\r\n")?;
                            decode_base64(&read_line(&mut lines)?.unwrap_or_default())
                        }
                    };
                    reply(&mut lines, "334 UGFzc3dvcmQ6\r\n")?;
                    let password = decode_base64(&read_line(&mut lines)?.unwrap_or_default());
                    (String::from_utf8(user).unwrap(), String::from_utf8(password).unwrap())
                }
                _ => {
                    reply(&mut lines, "504 unknown mechanism\r\n")?;
                    continue;
                }
            };
            if (given_user.as_str(), given_password.as_str()) == (expected_user.as_str(), expected_password.as_str()) {
                user = Some(given_user);
                reply(&mut lines, "235 authenticated\r\n")?;
            } else {
                reply(&mut lines, "535 5.7.8 bad credentials\r\n")?;
            }
        } else if upper.starts_with("MAIL FROM:") && needs_tls {
            reply(&mut lines, "530 5.7.0 must issue a STARTTLS command first\r\n")?;
        } else if upper.starts_with("MAIL FROM:") && options.auth.is_some() && user.is_none() {
            reply(&mut lines, "530 5.7.0 authentication required\r\n")?;
        } else if let Some(address) = upper.strip_prefix("MAIL FROM:") {
            let address = &command[command.len() - address.len()..];
            // Parameters (BODY=8BITMIME) follow the address.
            from = address
                .split(' ')
                .next()
                .unwrap_or("")
                .trim_matches(['<', '>'])
                .to_owned();
            reply(&mut lines, "250 OK\r\n")?;
        } else if let Some(address) = upper.strip_prefix("RCPT TO:") {
            let address = command[command.len() - address.len()..]
                .trim_matches(['<', '>'])
                .to_owned();
            if options.refuse.contains(&address) {
                reply(&mut lines, "550 5.1.1 no such user\r\n")?;
            } else {
                to.push(address);
                reply(&mut lines, "250 OK\r\n")?;
            }
        } else if upper == "DATA" {
            reply(&mut lines, "354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                let Some(line) = read_line(&mut lines)? else {
                    return Ok(());
                };
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            mails.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
                tls,
                user: user.clone(),
            });
            reply(&mut lines, "250 queued\r\n")?;
        } else if upper == "QUIT" {
            reply(&mut lines, "221 bye\r\n")?;
            return Ok(());
        } else {
            reply(&mut lines, "500 unknown command\r\n")?;
        }
    }
    Ok(())
}

/// AUTH PLAIN's response: authorization id, user and password, NUL-separated.
fn plain(response: &str) -> (String, String) {
    let decoded = String::from_utf8(decode_base64(response)).unwrap();
    let mut parts = decoded.split('\0').skip(1);
    (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    )
}

/// Accepts connections and never says a word: a sender talking to it is stuck
/// after claiming a message and before sending it.
pub struct Silent {
    pub addr: SocketAddr,
    pub connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let kept = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                kept.lock().unwrap().push(stream);
            }
        });
        Silent { addr, connections }
    }

    /// Whether a client has connected, waiting up to `timeout` for one: a sender
    /// marks a message as being sent before it connects.
    pub fn wait_for_connection(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.connections.lock().unwrap().is_empty() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        true
    }
}

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub struct HttpServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    status: Arc<AtomicU16>,
    tls: bool,
}

impl HttpServer {
    pub fn start(status: u16) -> HttpServer {
        HttpServer::serve(status, None)
    }

    /// The same over TLS (`https://`).
    pub fn start_tls(status: u16, upgrade: Upgrade) -> HttpServer {
        HttpServer::serve(status, Some(upgrade))
    }

    fn serve(status: u16, upgrade: Option<Upgrade>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let (kept, answer, tls) = (requests.clone(), status.clone(), upgrade.is_some());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (kept, answer, upgrade) = (kept.clone(), answer.clone(), upgrade.clone());
                std::thread::spawn(move || {
                    let conn: Box<dyn Conn> = match upgrade {
                        Some(upgrade) => match upgrade(stream) {
                            Ok(conn) => conn,
                            Err(_) => return,
                        },
                        None => Box::new(stream),
                    };
                    let _ = http_exchange(conn, &kept, &answer);
                });
            }
        });
        HttpServer {
            addr,
            requests,
            status,
            tls,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn http_exchange(stream: Box<dyn Conn>, requests: &Mutex<Vec<HttpRequest>>, status: &AtomicU16) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut parts = first.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    requests.lock().unwrap().push(HttpRequest {
        method,
        path,
        headers,
        body,
    });
    let status = status.load(Ordering::SeqCst);
    let out = reader.get_mut();
    write!(
        out,
        "HTTP/1.1 {status} Test\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    )?;
    out.flush()
}
