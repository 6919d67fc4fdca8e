//! Browser tests for troth's pages: headless Chromium driven through chromedriver's
//! W3C WebDriver HTTP API, with a client small enough to read in one sitting.
//!
//! ```no_run
//! # async fn example(server: &str) {
//! use troth_browser_test::Browser;
//! let Some(browser) = Browser::launch().await else { return }; // skipped, and said why
//! browser.goto(&format!("{server}/ui/journeys/retail")).await;
//! let exposure = browser.wait_for_text("#heatmap [data-f=exposure]", |t| t != "0").await;
//! browser.quit().await;
//! # }
//! ```
//!
//! [`Browser::launch`] finds `chromium` and `chromedriver` (or the paths in
//! `TROTH_CHROMIUM` / `TROTH_CHROMEDRIVER`). When they are missing it returns `None`
//! after printing why, unless `CI=true`: there a missing browser fails the test, so
//! browser tests cannot silently stop running. Each browser gets a fresh profile
//! directory and flags that keep Chromium off the network (it must not wait on
//! update or sync servers on a closed network) and let it run as root in containers.
//!
//! Every command panics with the WebDriver error and chromedriver's log when it
//! fails: this is test support, and a panic with context is the useful report.
//! Dropping a [`Browser`] ends its session and stops its chromedriver, also when a
//! test panics.

pub mod http;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long [`Browser::wait_for`] and the `wait_*` helpers wait by default.
pub const WAIT: Duration = Duration::from_secs(20);

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium's flags: headless, allowed to run as root, a throwaway profile, and no
/// background traffic to Google's servers.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--window-size=1280,1000",
];

/// A headless Chromium with one WebDriver session.
pub struct Browser {
    driver: Child,
    driver_addr: SocketAddr,
    session: String,
    /// Chromium's profile and chromedriver's log; removed after both have stopped.
    scratch: tempfile::TempDir,
    ended: bool,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

/// Where the browser and its driver are, when both are installed.
#[derive(Debug, Clone)]
pub struct Installed {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Installed {
    /// `TROTH_CHROMIUM` / `TROTH_CHROMEDRIVER`, else the usual names on `PATH`.
    pub fn find() -> Result<Installed, String> {
        let chromium = from_env_or_path("TROTH_CHROMIUM", &["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = from_env_or_path("TROTH_CHROMEDRIVER", &["chromedriver"]);
        match (chromium, chromedriver) {
            (Ok(chromium), Ok(chromedriver)) => Ok(Installed { chromium, chromedriver }),
            (Err(why), _) | (_, Err(why)) => Err(format!(
                "{why} (install with `apt-get install chromium chromium-driver`, or set TROTH_CHROMIUM and TROTH_CHROMEDRIVER)"
            )),
        }
    }
}

/// Whether this is a CI run, where browser tests must not be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. `None` when they are not
    /// installed and this is not CI (the reason is printed); in CI that panics.
    pub async fn launch() -> Option<Browser> {
        match Installed::find() {
            Ok(installed) => Some(Browser::launch_with(&installed).await),
            Err(why) if in_ci() => panic!("CI=true and the browser tests cannot run: {why}"),
            Err(why) => {
                eprintln!("skipping a browser test: {why}");
                None
            }
        }
    }

    pub async fn launch_with(installed: &Installed) -> Browser {
        let scratch = tempfile::Builder::new()
            .prefix("troth-browser-")
            .tempdir()
            .expect("a temporary directory for the browser");
        let log_path = scratch.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(&installed.chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", installed.chromedriver.display()));
        let mut browser = Browser {
            driver,
            driver_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
            scratch,
            ended: false,
        };
        browser.wait_for_driver().await;
        let profile = browser.scratch.path().join("profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 30_000},
            "goog:chromeOptions": {"binary": installed.chromium, "args": args},
        }}});
        let created = browser.command("POST", "/session", Some(capabilities)).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_owned();
        browser
    }

    /// Gives the page a viewport (`innerWidth` × `innerHeight`) of this size, to look
    /// at it at a phone's or a desktop's size. WebDriver sizes the window
    /// (`POST /session/{id}/window/rect`), and even headless Chromium keeps room for
    /// window chrome in it (390×844 gives a 390×701 viewport), so the window is
    /// sized again by what is missing. Returns the viewport's size.
    pub async fn set_window_size(&self, width: u32, height: u32) -> (u32, u32) {
        let mut window = (width, height);
        let mut viewport = (0, 0);
        for _ in 0..5 {
            self.session_command(
                "POST",
                "/window/rect",
                Some(json!({"width": window.0, "height": window.1})),
            )
            .await;
            viewport = self.settled_viewport().await;
            if viewport == (width, height) || viewport.0 == 0 {
                break;
            }
            window = (
                (window.0 + width).saturating_sub(viewport.0),
                (window.1 + height).saturating_sub(viewport.1),
            );
        }
        viewport
    }

    /// The viewport's size once it has stopped changing: a busy machine's Chromium
    /// may answer with the size from before the window was resized, and correcting
    /// the window by that would overshoot.
    async fn settled_viewport(&self) -> (u32, u32) {
        let mut last = None;
        for _ in 0..20 {
            let inner = self
                .execute("return [window.innerWidth, window.innerHeight];", Vec::new())
                .await;
            let side = |i: usize| inner[i].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
            let now = (side(0), side(1));
            if last == Some(now) {
                return now;
            }
            last = Some(now);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last.unwrap_or((0, 0))
    }

    /// Loads a URL and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.session_command("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn current_url(&self) -> String {
        let url = self.session_command("GET", "/url", None).await;
        url.as_str().unwrap_or_default().to_owned()
    }

    /// The first element matching a CSS selector, if there is one now.
    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let body = json!({"using": "css selector", "value": css});
        match self.try_session_command("POST", "/element", Some(body)).await {
            Ok(found) => Some(self.element(&found)),
            Err(e) if e.contains("no such element") => None,
            Err(e) => panic!("finding {css:?}: {e}"),
        }
    }

    /// The first element matching a CSS selector; panics when there is none.
    pub async fn find(&self, css: &str) -> Element<'_> {
        match self.try_find(css).await {
            Some(element) => element,
            None => panic!("no element matches {css:?} on {}", self.current_url().await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let body = json!({"using": "css selector", "value": css});
        let found = self.session_command("POST", "/elements", Some(body)).await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| self.element(e))
            .collect()
    }

    /// The rendered text of the first element matching a CSS selector.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await
    }

    /// Runs a script in the page (`return …` gives its value); `arguments` are JSON values.
    pub async fn execute(&self, script: &str, arguments: Vec<Value>) -> Value {
        let body = json!({"script": script, "args": arguments});
        self.session_command("POST", "/execute/sync", Some(body)).await
    }

    /// Polls `condition` (a script returning a value; null, false, 0 or "" mean not
    /// yet) every 100 ms until it holds; returns its value. Panics after `timeout`,
    /// naming `what` and the last value seen.
    pub async fn wait_for(&self, what: &str, timeout: Duration, condition: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.execute(condition, Vec::new()).await;
            let holds = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if holds {
                return value;
            }
            if started.elapsed() > timeout {
                panic!("waited {timeout:?} for {what}; the condition last gave {value}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the first element matching `css` exists and its text satisfies
    /// `accept`; returns that text.
    pub async fn wait_for_text(&self, css: &str, accept: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut last = None;
        loop {
            if let Some(element) = self.try_find(css).await {
                // The element may be replaced between finding and reading it.
                if let Ok(text) = element.try_text().await {
                    if accept(&text) {
                        return text;
                    }
                    last = Some(text);
                }
            }
            if started.elapsed() > WAIT {
                panic!("waited {WAIT:?} for the text of {css:?}; it was last {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the viewport, for looking at what a failing test saw.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.session_command("GET", "/screenshot", None).await;
        let png = decode_base64(encoded.as_str().unwrap_or_default());
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Ends the session and stops chromedriver. Dropping does the same, blocking.
    pub async fn quit(mut self) {
        let _ = self.try_session_command("DELETE", "", None).await;
        self.ended = true;
    }

    fn element(&self, found: &Value) -> Element<'_> {
        let id = found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("not an element reference: {found}"));
        Element {
            browser: self,
            id: id.to_owned(),
        }
    }

    async fn wait_for_driver(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(reply) = http::request("GET", &format!("http://{}/status", self.driver_addr), None).await
                && reply.json()["value"]["ready"] == true
            {
                return;
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("chromedriver exited ({status}): {}", self.log());
            }
            if started.elapsed() > WAIT {
                panic!("chromedriver was not ready within {WAIT:?}: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn session_command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_session_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    async fn try_session_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.try_command(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}\nchromedriver's log:\n{}", self.log()))
    }

    /// One WebDriver command: its `value`, or its error as `error: message`.
    async fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        // WebDriver wants a JSON body on every POST, even an empty one.
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let reply = http::request(method, &format!("http://{}{path}", self.driver_addr), body.as_ref()).await?;
        let mut answer: Value = serde_json::from_str(&reply.body).map_err(|e| format!("{e}: {}", reply.body))?;
        let value = answer["value"].take();
        if reply.status == 200 {
            Ok(value)
        } else {
            Err(format!(
                "{}: {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or(&reply.body)
            ))
        }
    }

    /// The end of chromedriver's log, for failure messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.scratch.path().join("chromedriver.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text[start..].to_owned()
    }
}

impl Element<'_> {
    pub async fn text(&self) -> String {
        self.try_text()
            .await
            .unwrap_or_else(|e| panic!("reading an element's text: {e}"))
    }

    async fn try_text(&self) -> Result<String, String> {
        let path = format!("/element/{}/text", self.id);
        let text = self.browser.try_session_command("GET", &path, None).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// An attribute's value as written in the markup (`href` as written, not resolved).
    pub async fn attribute(&self, name: &str) -> Option<String> {
        let path = format!("/element/{}/attribute/{name}", self.id);
        let value = self.browser.session_command("GET", &path, None).await;
        value.as_str().map(str::to_owned)
    }

    /// A property of the DOM element (`className`, `hidden`, `href` resolved…).
    pub async fn property(&self, name: &str) -> Value {
        let path = format!("/element/{}/property/{name}", self.id);
        self.browser.session_command("GET", &path, None).await
    }

    /// The first element inside this one matching a CSS selector.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let path = format!("/element/{}/element", self.id);
        let body = json!({"using": "css selector", "value": css});
        let found = self.browser.session_command("POST", &path, Some(body)).await;
        self.browser.element(&found)
    }

    /// Types text into the element (an input), as keystrokes.
    pub async fn send_keys(&self, text: &str) {
        let path = format!("/element/{}/value", self.id);
        self.browser
            .session_command("POST", &path, Some(json!({"text": text})))
            .await;
    }

    /// Clicks the element (following a link loads its page before returning).
    pub async fn click(&self) {
        let path = format!("/element/{}/click", self.id);
        self.browser.session_command("POST", &path, None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.ended && !self.session.is_empty() {
            // A test that panicked never awaited quit(): end the session here so
            // Chromium exits with it, rather than outliving its killed driver.
            delete_session_blocking(self.driver_addr, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{id}` without an async runtime, for [`Drop`].
fn delete_session_blocking(addr: SocketAddr, session: &str) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_ok() {
        // Chromedriver answers once the browser has quit; read until it closes.
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// Standard base64 (WebDriver's screenshots), ignoring padding and anything else.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0);
    for sextet in text.bytes().filter_map(value) {
        bits = (bits << 6) | u32::from(sextet);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// A port free now, for chromedriver to listen on.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("the free port").port()
}

fn from_env_or_path(variable: &str, names: &[&str]) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        return match is_executable(&path) {
            true => Ok(path),
            false => Err(format!("{variable}={} is not an executable file", path.display())),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    names
        .iter()
        .find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| is_executable(candidate))
        })
        .ok_or_else(|| format!("{} not found on PATH", names.join(" or ")))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(super::decode_base64("dHJvdGg="), b"troth");
        assert_eq!(super::decode_base64("dHJvdGg"), b"troth");
        assert_eq!(super::decode_base64("aGVhdA=="), b"heat");
    }
}
