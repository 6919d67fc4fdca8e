//! `troth simulate` and `troth demo` as a newcomer runs them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{run, troth};
use troth::client::{Client, Target};

fn world(name: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../worlds")
        .join(name);
    root.to_str().unwrap().to_owned()
}

#[test]
fn simulate_is_deterministic_and_every_event_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let small = world("small.toml");
    for file in ["a.ndjson", "b.ndjson"] {
        let output = run(&[
            "simulate",
            "--world",
            &small,
            "--seed",
            "11",
            "--out",
            &out(file),
            "--manifest",
            &out("manifest.json"),
        ]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let (a, b) = (
        std::fs::read(out("a.ndjson")).unwrap(),
        std::fs::read(out("b.ndjson")).unwrap(),
    );
    assert!(!a.is_empty());
    assert_eq!(a, b, "the same seed gives the same bytes");

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["events"].as_u64().unwrap() as usize,
        a.iter().filter(|&&b| b == b'\n').count()
    );

    let import = run(&["import", "--data-dir", &out("store"), &out("a.ndjson")]);
    let text = String::from_utf8_lossy(&import.stdout);
    assert!(
        import.status.success(),
        "every simulated event passes the server's validation: {text}"
    );
    assert!(text.contains(" 0 rejected"), "{text}");

    // Promises and journey health rebuilt from the log match what was kept live.
    let replay = run(&["replay", "--check", "--data-dir", &out("store")]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success() && text.contains("the stored projections match the log"),
        "{text}"
    );
    assert!(text.contains("touchpoint_days") && text.contains("promises"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_urls_it_prints_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("demo");
    let mut child = troth()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--world",
            &world("small.toml"),
            // Few days of many customers: history loads quickly, and many drivers
            // are on the road, so one's next stop is minutes away.
            "--customers",
            "1000",
            "--days",
            "3",
            "--data-dir",
        ])
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // A failing assertion must not leave the demo running.
    let pid = child.id();
    let mut stop = KillOnDrop(Some(pid));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The URLs are the lines between "… is running" and the next blank line.
        let mut urls = None::<Vec<String>>;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Shown with a failure: the demo's own account of what it chose.
            println!("demo: {line}");
            if line.contains("is running") {
                urls = Some(Vec::new());
            } else if let Some(list) = &mut urls {
                match line.split_whitespace().find(|w| w.starts_with("http://")) {
                    Some(url) => list.push(url.to_owned()),
                    None => {
                        let _ = tx.send(urls.take().unwrap());
                    }
                }
            }
        }
    });
    let urls = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the demo printed its URLs");
    let names: Vec<&str> = urls
        .iter()
        .map(|u| u.split_once("://").unwrap().1.split_once('/').unwrap().1)
        .collect();
    assert!(names.iter().any(|n| n.is_empty()), "the overview: {urls:?}");
    assert!(
        names.iter().any(|n| n.starts_with("ui/shipments/")),
        "a shipment: {urls:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("t/")),
        "the customer's tracking page: {urls:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("ui/customers/")),
        "a customer: {urls:?}"
    );
    assert!(names.contains(&"docs"), "the API reference: {urls:?}");
    for url in &urls {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut client = Client::connect(&Target::from_addr(host.parse().unwrap()), None)
            .await
            .unwrap();
        let (status, body) = client.get(&format!("/{path}")).await.unwrap();
        assert!(
            status.is_success(),
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // The tracking link is a delivery on the way now, through the live path: the
    // server's estimate, its live stop count, a fresh driver.
    let page = urls.iter().find(|u| u.contains("/t/")).unwrap();
    let (host, token) = page.strip_prefix("http://").unwrap().split_once("/t/").unwrap();
    let mut client = Client::connect(&Target::from_addr(host.parse().unwrap()), None)
        .await
        .unwrap();
    let (_, body) = client.get(&format!("/api/v1/track/{token}")).await.unwrap();
    let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(view["stage"], "out_for_delivery", "{view}");
    assert!(view["stops_before"].as_u64().unwrap() >= 2, "{view}");
    assert!(view["eta"].is_string(), "{view}");
    let at = troth_core::Timestamp::parse_rfc3339(view["driver"]["at"].as_str().unwrap()).unwrap();
    let age = troth_core::Timestamp::now().micros() - at.micros();
    assert!(age < 60_000_000, "the driver's position is {} s old", age / 1_000_000);

    // What the customer and the staff see of it, in a browser, on a phone and a desktop.
    if let Some(browser) = troth_browser_test::Browser::launch().await {
        for (width, height) in [(390, 844), (1366, 900)] {
            browser.set_window_size(width, height).await;
            browser.goto(page).await;
            assert_eq!(browser.text("#stage").await, "Out for delivery", "{width}×{height}");
            let expected = browser.text("#eta-text").await;
            assert!(!expected.is_empty(), "an estimate is shown at {width}×{height}");
            let stops = browser.text("#stops-text").await;
            let count: u64 = stops
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(count >= 2 && stops.contains("stops before yours"), "{stops:?}");
            // Read in one script: the live page redraws the marker as positions arrive,
            // so an element found by one command may be gone by the next.
            let class = browser
                .execute(
                    "var d = document.getElementById('driver'); return d ? (d.getAttribute('class') || '') : null;",
                    Vec::new(),
                )
                .await;
            let class = class.as_str().expect("the driver is on the map");
            assert!(!class.contains("stale"), "the driver is drawn as current: {class:?}");
            // The simulated city gives addresses their coordinates: the customer's home is on the map.
            let home = browser
                .execute(
                    "var h = document.getElementById('home'); \
                     return !!h && h.getBoundingClientRect().width > 0;",
                    Vec::new(),
                )
                .await;
            assert_eq!(home, true, "the customer's home is marked at {width}×{height}");
            for url in &urls {
                browser.goto(url).await;
                let sideways = browser
                    .execute(
                        "return document.documentElement.scrollWidth - window.innerWidth;",
                        Vec::new(),
                    )
                    .await;
                assert!(
                    sideways.as_i64().unwrap_or(0) <= 0,
                    "{url} scrolls sideways by {sideways} px at {width}×{height}"
                );
            }
        }
        // The count falls as the driver delivers, live on the open page: the demo
        // chose a driver whose next stop is due within minutes.
        browser.set_window_size(390, 844).await;
        browser.goto(page).await;
        let before = stops_shown(&browser).await;
        browser
            .wait_for(
                "the stop count to fall as the driver delivers",
                STOP_COUNT_FALLS_WITHIN,
                &format!(
                    "var t = document.getElementById('stops-text'); \
                     var n = t ? parseInt(t.textContent, 10) : NaN; \
                     return (!isNaN(n) && n < {before}) || document.getElementById('stage').textContent !== 'Out for delivery';"
                ),
            )
            .await;
        // A new connection: the server has closed the idle one meanwhile.
        let mut client = Client::connect(&Target::from_addr(host.parse().unwrap()), None)
            .await
            .unwrap();
        let (_, body) = client.get(&format!("/api/v1/track/{token}")).await.unwrap();
        let later: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let now_shown = stops_shown(&browser).await;
        assert!(
            now_shown < before && later["stops_before"].as_u64().is_some_and(|n| n <= now_shown),
            "the page ({now_shown}, was {before}) and the API ({}) agree on the fallen count: {later}",
            later["stops_before"]
        );
        browser.quit().await;
    }

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    stop.0 = None;
    assert!(status.success(), "Ctrl-C stops the demo cleanly: {status}");
}

/// Kills the process when the test ends, whichever way (a clean stop has exited by then).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// How long a viewer may wait for the printed delivery's stop count to fall: the
/// demo picks a driver whose next stop is due soon, and a stop takes its minutes.
const STOP_COUNT_FALLS_WITHIN: Duration = Duration::from_secs(10 * 60);

/// "3 stops before yours" → 3, as the tracking page shows it now.
async fn stops_shown(browser: &troth_browser_test::Browser) -> u64 {
    let stops = browser.text("#stops-text").await;
    stops
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a stop count: {stops:?}"))
}

#[test]
fn simulate_can_send_a_world_to_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("store"), &[]);
    let manifest = dir.path().join("manifest.json");
    let output = run(&[
        "simulate",
        "--world",
        &world("small.toml"),
        "--days",
        "3",
        "--ingest",
        &server.url(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let sent = manifest["events"].as_u64().unwrap();
    assert!(sent > 1_000, "{sent}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = runtime.block_on(async {
        let mut client = Client::connect(&Target::from_addr(server.addr), None).await.unwrap();
        let (_, body) = client.get("/metrics").await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    });
    assert!(
        metrics.contains(&format!("troth_events_total{{status=\"accepted\"}} {sent}\n")),
        "every simulated event was accepted: {metrics}"
    );
}

#[test]
fn a_demo_that_cannot_start_leaves_no_store_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let data_dir = tmp.path().join("demo");
    // With a directory named, and with the default one under the temp dir.
    for named in [true, false] {
        let mut command = troth();
        command
            .args(["demo", "--listen", &port, "--world", &world("small.toml")])
            .env("TMPDIR", tmp.path());
        if named {
            command.arg("--data-dir").arg(&data_dir);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is another server using it"), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "nothing is left behind: {left:?}");
    }
}
