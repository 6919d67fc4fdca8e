//! The customer's tracking page in a real browser, in each state that needs more
//! than the stage's name (docs/tracking.md#states): running late, a failed attempt,
//! a lost parcel, a delivery with its proof. Each is looked at on a phone
//! (390×844) and a desktop (1366×900): the state's sentences are on the first
//! screen, nothing sticks out sideways, and the state is drawn in its colour (late
//! or failed amber, lost red, delivered green). With `TROTH_SCREENSHOTS=DIR` each
//! state and size is saved for a person to look at. Skipped (with a message) when
//! Chromium is not installed, except in CI. See docs/browser-tests.md.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use troth_browser_test::{Browser, http};
use troth_core::Timestamp;
use troth_core::journey::JourneyMap;
use troth_http::AppState;
use troth_http::tracking::{TrackingConfig, Zone};
use troth_store::sqlite::SqliteStore;

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// A phone's and a desktop's window.
const SIZES: [(u32, u32); 2] = [(390, 844), (1366, 900)];

/// One browser at a time: each test starts its own Chromium, and several at once
/// on a small machine make every wait slower than its deadline.
static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn event(id: &str, event_type: &str, time: Timestamp, subject: &str, data: Value) -> Value {
    json!({"id": id, "type": event_type, "time": time.to_string(), "subject": subject,
           "customer": {"email": "ann@example.org"}, "data": data})
}

/// An order placed a day before `now`, its shipment, handed over (as tests/tracking.rs).
fn shipped(ship: &str, order: &str, now: Timestamp) -> Vec<Value> {
    vec![
        event(
            &format!("{order}-placed"),
            "order.placed",
            Timestamp(now.0 - DAY),
            &format!("order:{order}"),
            json!({"order": order, "items": [{"sku": "a", "qty": 1, "price": 100}], "total": 100, "currency": "EUR", "delivery": "home"}),
        ),
        event(
            &format!("{ship}-created"),
            "shipment.created",
            Timestamp(now.0 - 20 * HOUR),
            &format!("shipment:{ship}"),
            json!({"shipment": ship, "order": order, "carrier": "fast", "service": "standard"}),
        ),
        event(
            &format!("{ship}-handed"),
            "shipment.handed_over",
            Timestamp(now.0 - 10 * HOUR),
            &format!("shipment:{ship}"),
            json!({}),
        ),
    ]
}

fn window_event(id: &str, ship: &str, time: Timestamp, start: Timestamp, end: Timestamp) -> Value {
    event(
        id,
        "shipment.window_set",
        time,
        &format!("shipment:{ship}"),
        json!({"window_start": start.to_string(), "window_end": end.to_string()}),
    )
}

/// troth on a TCP port, as `troth serve` runs it, over a store of its own.
struct Server {
    addr: SocketAddr,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl Server {
    /// With a journey map when given: its plays open cases, its promises give times.
    async fn start(journey: Option<JourneyMap>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with_journey(dir.path(), journey.as_ref()).unwrap();
        let mut state = AppState::new(store.clone(), None).with_tracking(TrackingConfig {
            name: Some("Shop & Co".into()),
            ..Default::default()
        });
        if let Some(map) = journey {
            state = state.with_journey(map);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = common::settled_app(state);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Server { addr, store, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Appends events, every one accepted, and waits until the projections hold
    /// them and what they derive (a play's case).
    async fn events(&self, events: Vec<Value>) {
        let reply = http::post_json(&self.url("/api/v1/events"), &Value::Array(events)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answer = reply.json();
        let refused: Vec<&Value> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "rejected")
            .collect();
        assert!(refused.is_empty(), "{refused:?}");
        self.store.settle().await.unwrap();
    }

    /// The shipment's tracking link.
    async fn token(&self, ship: &str) -> String {
        let link = http::post_json(
            &self.url(&format!("/api/v1/shipments/{ship}/tracking-link")),
            &json!({}),
        )
        .await;
        assert_eq!(link.status, 200, "{}", link.body);
        link.json()["token"].as_str().unwrap().to_owned()
    }

    /// The JSON twin of the page.
    async fn view(&self, token: &str) -> Value {
        http::get(&self.url(&format!("/api/v1/track/{token}"))).await.json()
    }
}

/// A carrier's server with the photo its driver took: an image on another origin,
/// as a proof-of-delivery link is.
async fn photo_server() -> SocketAddr {
    use axum::http::header;
    let router = axum::Router::new().route(
        "/proof/s-1.svg",
        axum::routing::get(|| async {
            (
                [(header::CONTENT_TYPE, "image/svg+xml")],
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480"><rect width="640" height="480" fill="#4a6b8a"/><rect y="330" width="640" height="150" fill="#9a9a92"/><rect x="250" y="230" width="150" height="120" fill="#c8955a" stroke="#7a5228" stroke-width="4"/><path d="M250 270H400" stroke="#7a5228" stroke-width="4"/></svg>"##,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Saves what the browser shows into `TROTH_SCREENSHOTS` (a directory), when set,
/// for a person to look at.
async fn screenshot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("TROTH_SCREENSHOTS") {
        browser.screenshot(&std::path::Path::new(&dir).join(name)).await;
    }
}

/// What the page shows of its state, read in one go (the live script may redraw
/// the status between two reads, never during one).
const LOOK: &str = r#"
    function shown(el) {
      if (!el || el.getClientRects().length === 0) return false;
      var r = el.getBoundingClientRect(), s = getComputedStyle(el);
      return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && Number(s.opacity) > 0;
    }
    function place(el) {
      var r = el.getBoundingClientRect();
      return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
    }
    var root = document.getElementById('track');
    var stage = document.getElementById('stage');
    var eta = document.getElementById('eta-text');
    var windowLine = document.getElementById('window');
    var select = document.querySelector('#report select[name=category]');
    return {
      inner: window.innerWidth, height: window.innerHeight, scrolled: window.scrollY,
      scroll: document.documentElement.scrollWidth,
      state: root.dataset.state, tone: root.dataset.tone,
      border: getComputedStyle(root).borderLeftColor,
      headline: {text: stage.innerText, shown: shown(stage), place: place(stage), colour: getComputedStyle(stage).color},
      lines: Array.prototype.map.call(document.querySelectorAll('#status-lines p'), function (p) {
        return {text: p.innerText, shown: shown(p), place: place(p), elements: p.querySelectorAll(':not(strong.ref)').length};
      }),
      actions: Array.prototype.filter.call(document.querySelectorAll('#actions a'), shown)
        .map(function (a) { return a.dataset.action; }),
      broken_actions: Array.prototype.filter.call(document.querySelectorAll('#actions a'), shown)
        .filter(function (a) { return !document.getElementById(a.getAttribute('href').slice(1)); })
        .map(function (a) { return a.dataset.action; }),
      eta: {shown: shown(document.getElementById('eta')), at: eta.getAttribute('datetime'), text: eta.textContent},
      window: shown(windowLine) ? windowLine.innerText : null,
      forms: ['instructions', 'safe-place', 'another-time', 'report']
        .filter(function (id) { return shown(document.getElementById(id)); }),
      problem: select ? select.value : null,
      refs: Array.prototype.map.call(document.querySelectorAll('#status-lines .ref'), function (r) {
        return {text: r.textContent, rects: r.getClientRects().length};
      }),
      title: document.title
    };
"#;

/// Loads the page at a window size and reads it.
async fn look(browser: &Browser, url: &str, (width, height): (u32, u32)) -> Value {
    browser.set_window_size(width, height).await;
    browser.goto(url).await;
    browser
        .wait_for(
            "the tracking page",
            Duration::from_secs(15),
            "return !!document.getElementById('track') && document.readyState === 'complete';",
        )
        .await;
    browser.execute(LOOK, Vec::new()).await
}

/// A colour's family, by its hue: how the tone is told at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    Amber,
    Red,
    Green,
    /// The retailer's colour (the default brand blue): news, not trouble.
    Brand,
    Other,
}

/// `rgb(199, 119, 0)` → amber.
fn colour(css: &str) -> Colour {
    let inside = css
        .split_once('(')
        .map(|(_, rest)| rest.trim_end_matches(')'))
        .unwrap_or_default();
    let rgb: Vec<f64> = inside
        .split([',', ' ', '/'])
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse::<f64>().unwrap_or(0.0) / 255.0)
        .collect();
    let [r, g, b] = rgb[..] else { return Colour::Other };
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let chroma = max - min;
    if chroma < 0.2 {
        return Colour::Other; // grey or washed out: no tone a customer can read
    }
    let hue = 60.0
        * if max == r {
            ((g - b) / chroma).rem_euclid(6.0)
        } else if max == g {
            (b - r) / chroma + 2.0
        } else {
            (r - g) / chroma + 4.0
        };
    match hue {
        h if !(15.0..345.0).contains(&h) => Colour::Red,
        h if (25.0..=55.0).contains(&h) => Colour::Amber,
        h if (90.0..=160.0).contains(&h) => Colour::Green,
        h if (200.0..=260.0).contains(&h) => Colour::Brand,
        _ => Colour::Other,
    }
}

/// What a state must look like on the page.
struct Expected<'a> {
    state: &'a str,
    tone: &'a str,
    colour: Colour,
    headline: &'a str,
    /// The status sentences, exactly and in order.
    lines: Vec<String>,
    /// The links to forms the state points to, in order.
    actions: &'a [&'a str],
    /// The page's forms that are shown.
    forms: &'a [&'a str],
    /// The report form's reason chosen for the customer ("" when none is).
    problem: &'a str,
}

/// Checks what [`LOOK`] saw against what the state must say and look like.
fn check(seen: &Value, expected: &Expected<'_>, (width, height): (u32, u32)) {
    let at = format!("{width}×{height}");
    assert_eq!(seen["inner"], width, "the viewport took the size at {at}: {seen}");
    assert_eq!(seen["height"], height, "the viewport took the size at {at}: {seen}");
    assert!(
        seen["scroll"].as_f64().unwrap() <= seen["inner"].as_f64().unwrap(),
        "no sideways scrolling at {at}: {seen}"
    );
    assert_eq!(seen["state"], expected.state, "at {at}: {seen}");
    assert_eq!(seen["tone"], expected.tone, "at {at}: {seen}");
    assert_eq!(
        seen["headline"]["text"], expected.headline,
        "the headline at {at}: {seen}"
    );
    assert_eq!(
        seen["title"],
        format!("{} · Shop & Co", expected.headline),
        "the tab names the state at {at}"
    );
    assert_eq!(seen["scrolled"], 0, "the page opens at its top at {at}");
    let fits = |thing: &Value| {
        let p = &thing["place"];
        thing["shown"] == true
            && p["left"].as_f64().unwrap() >= 0.0
            && p["right"].as_f64().unwrap() <= f64::from(width)
            && p["top"].as_f64().unwrap() >= 0.0
            && p["bottom"].as_f64().unwrap() <= f64::from(height)
    };
    assert!(
        fits(&seen["headline"]),
        "the headline is on the first screen at {at}: {seen}"
    );
    let lines = seen["lines"].as_array().unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, expected.lines, "what the page says at {at}");
    for line in lines {
        assert!(
            fits(line),
            "{:?} is shown on the first screen, inside its width, at {at}: {line}",
            line["text"]
        );
        assert_eq!(
            line["elements"], 0,
            "the sentence is text, not markup (but for case references kept whole): {line}"
        );
    }
    // The state's colour: the frame and the headline, told apart from news.
    for (part, css) in [("frame", &seen["border"]), ("headline", &seen["headline"]["colour"])] {
        assert_eq!(
            colour(css.as_str().unwrap()),
            expected.colour,
            "the {part} of the status is drawn {:?} at {at}: {css}",
            expected.colour
        );
    }
    assert_eq!(seen["actions"], json!(expected.actions), "the links offered at {at}");
    assert_eq!(
        seen["broken_actions"],
        json!([]),
        "every link offered leads to a form on the page at {at}"
    );
    assert_eq!(seen["forms"], json!(expected.forms), "the forms shown at {at}");
    assert_eq!(
        seen["problem"], expected.problem,
        "the reason the report form starts on at {at}"
    );
}

/// A browser, this test's turn to use one; `None` (the reason printed) when Chromium
/// is not installed and this is not CI, as in tracking_browser.rs.
async fn browser() -> Option<(Browser, tokio::sync::MutexGuard<'static, ()>)> {
    let turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let browser = Browser::launch().await?;
    Some((browser, turn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_late_apologises_names_the_window_missed_gives_the_new_estimate_or_none_and_what_to_do() {
    let Some((browser, _turn)) = browser().await else {
        return;
    };
    let server = Server::start(None).await;
    let now = Timestamp::now();
    let t = |offset: i64| Timestamp(now.0 + offset);
    let zone = Zone::utc();
    // Out for delivery, and the window the carrier gave passed an hour ago: the
    // driver's route gives a new estimate.
    let (start, end) = (t(-3 * HOUR), t(-2 * HOUR));
    server.events(shipped("s-1", "o-1", now)).await;
    server
        .events(vec![
            window_event("w-1", "s-1", t(-5 * HOUR), start, end),
            event(
                "out-1",
                "shipment.out_for_delivery",
                t(-4 * HOUR),
                "shipment:s-1",
                json!({"driver": "d-1", "stops_before": 0}),
            ),
        ])
        .await;
    // Still with the carrier when its window passed: no estimate yet.
    server.events(shipped("s-2", "o-2", now)).await;
    server
        .events(vec![window_event("w-2", "s-2", t(-5 * HOUR), start, end)])
        .await;
    let apology = format!(
        "We are sorry: we promised {} and did not make it.",
        zone.window(start, end, Timestamp::now())
    );
    let what_to_do =
        "If the new time suits you, there is nothing to do. If it does not, choose another time below or tell us.";

    let token = server.token("s-1").await;
    for size in SIZES {
        let seen = look(&browser, &server.url(&format!("/t/{token}")), size).await;
        screenshot(&browser, &format!("tracking-late-{}x{}.png", size.0, size.1)).await;
        // The estimate the page was drawn with (the same view as its sentences).
        let estimate = Timestamp::parse_rfc3339(seen["eta"]["at"].as_str().unwrap())
            .unwrap_or_else(|| panic!("an estimate from the driver's route: {seen}"));
        assert!(
            estimate > end && estimate >= Timestamp::now() && estimate < t(HOUR),
            "the new estimate is after the window missed, and soon: {seen}"
        );
        check(
            &seen,
            &Expected {
                state: "late",
                tone: "warning",
                colour: Colour::Amber,
                headline: "Running late",
                lines: vec![
                    apology.clone(),
                    format!("Your parcel is now expected {}.", seen["eta"]["text"].as_str().unwrap()),
                    what_to_do.into(),
                ],
                actions: &["another_time", "report"],
                forms: &["instructions", "safe-place", "another-time", "report"],
                problem: "late",
            },
            size,
        );
        assert_eq!(
            seen["eta"]["text"],
            zone.when(estimate, Timestamp::now()),
            "the estimate is read in the customer's zone"
        );
        assert_eq!(
            seen["eta"]["shown"], false,
            "the estimate is said once, in the apology: {seen}"
        );
        assert_eq!(
            seen["window"],
            format!("Your window: {}", zone.window(start, end, Timestamp::now())),
            "the window missed stays in view"
        );
    }

    let token = server.token("s-2").await;
    for size in SIZES {
        let seen = look(&browser, &server.url(&format!("/t/{token}")), size).await;
        screenshot(
            &browser,
            &format!("tracking-late-no-estimate-{}x{}.png", size.0, size.1),
        )
        .await;
        check(
            &seen,
            &Expected {
                state: "late",
                tone: "warning",
                colour: Colour::Amber,
                headline: "Running late",
                lines: vec![
                    apology.clone(),
                    "We do not have a new time yet; this page changes as soon as we do.".into(),
                    what_to_do.into(),
                ],
                actions: &["another_time", "report"],
                forms: &["instructions", "safe-place", "another-time", "report"],
                problem: "late",
            },
            size,
        );
        assert_eq!(seen["eta"]["shown"], false, "{seen}");
    }
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_says_when_and_why_and_what_happens_next() {
    let Some((browser, _turn)) = browser().await else {
        return;
    };
    let server = Server::start(None).await;
    let now = Timestamp::now();
    let t = |offset: i64| Timestamp(now.0 + offset);
    let zone = Zone::utc();
    let failed_at = t(-HOUR);
    server.events(shipped("s-1", "o-1", now)).await;
    server
        .events(vec![
            event(
                "out",
                "shipment.out_for_delivery",
                t(-2 * HOUR),
                "shipment:s-1",
                json!({"driver": "d-1"}),
            ),
            event(
                "failed",
                "shipment.attempt_failed",
                failed_at,
                "shipment:s-1",
                json!({"reason": "nobody home <b>"}),
            ),
        ])
        .await;
    let url = server.url(&format!("/t/{}", server.token("s-1").await));
    let why = format!(
        "The driver tried {} but could not deliver: nobody home <b>.",
        zone.when(failed_at, Timestamp::now())
    );
    let choices = "If another time suits you better, choose it below; or tell the driver a safe place to leave it.";
    for size in SIZES {
        let seen = look(&browser, &url, size).await;
        screenshot(&browser, &format!("tracking-attempt-failed-{}x{}.png", size.0, size.1)).await;
        check(
            &seen,
            &Expected {
                state: "attempt_failed",
                tone: "warning",
                colour: Colour::Amber,
                headline: "We could not deliver",
                lines: vec![
                    why.clone(),
                    "We will tell you here when we try again.".into(),
                    choices.into(),
                ],
                actions: &["another_time", "safe_place", "report"],
                forms: &["instructions", "safe-place", "another-time", "report"],
                problem: "missed",
            },
            size,
        );
    }

    // The carrier sets the next attempt's window: the open page says when, without
    // being reloaded.
    browser
        .execute("window.trothMarker = 'same page'; return true;", Vec::new())
        .await;
    let (start, end) = (t(DAY), t(DAY + HOUR));
    server
        .events(vec![window_event("next", "s-1", t(-30 * MINUTE), start, end)])
        .await;
    let next = format!("We will try again {}.", zone.window(start, end, Timestamp::now()));
    browser
        .wait_for_text("#status-lines p:nth-child(2)", |text| text == next)
        .await;
    let seen = browser.execute(LOOK, Vec::new()).await;
    screenshot(&browser, "tracking-attempt-failed-next-1366x900.png").await;
    check(
        &seen,
        &Expected {
            state: "attempt_failed",
            tone: "warning",
            colour: Colour::Amber,
            headline: "We could not deliver",
            lines: vec![why.clone(), next.clone(), choices.into()],
            actions: &["another_time", "safe_place", "report"],
            forms: &["instructions", "safe-place", "another-time", "report"],
            problem: "missed",
        },
        SIZES[1],
    );
    assert_eq!(
        browser.execute("return window.trothMarker;", Vec::new()).await,
        "same page",
        "the page changed without a reload"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_parcel_says_what_happens_now_who_will_contact_the_customer_and_by_when() {
    let Some((browser, _turn)) = browser().await else {
        return;
    };
    let server = Server::start(Some(common::retail_map())).await;
    let now = Timestamp::now();
    let zone = Zone::utc();
    let lost_at = Timestamp(now.0 - MINUTE);
    server.events(shipped("s-1", "o-1", now)).await;
    server
        .events(vec![event("lost", "shipment.lost", lost_at, "shipment:s-1", json!({}))])
        .await;
    let token = server.token("s-1").await;
    // The case the journey map's play opened, and its answer due by its service level.
    let view = server.view(&token).await;
    let case = view["lost_case"]["reference"].as_str().unwrap().to_owned();
    assert!(case.starts_with("play-"), "the case the play opened: {view}");
    let opened = http::get(&server.url(&format!("/api/v1/events?subject=case:{case}&type=case.opened"))).await;
    assert_eq!(
        opened.json()["events"].as_array().map(Vec::len),
        Some(1),
        "the log holds the case: {}",
        opened.body
    );
    let data = &opened.json()["events"][0]["data"];
    let answer_by = common::retail_map()
        .case_due()
        .unwrap()
        .at(
            data["team"].as_str().unwrap(),
            data["category"].as_str().unwrap(),
            lost_at,
        )
        .unwrap();
    let url = server.url(&format!("/t/{token}"));
    for size in SIZES {
        let seen = look(&browser, &url, size).await;
        screenshot(&browser, &format!("tracking-lost-{}x{}.png", size.0, size.1)).await;
        let now = Timestamp::now();
        check(
            &seen,
            &Expected {
                state: "lost",
                tone: "bad",
                colour: Colour::Red,
                headline: "Your parcel is lost",
                lines: vec![
                    format!(
                        "We are sorry: the carrier reported your parcel lost {}.",
                        zone.when(lost_at, now)
                    ),
                    format!(
                        "Our delivery team has opened case {case} and will contact you by {} to send a replacement or refund you.",
                        zone.when(answer_by, now)
                    ),
                    format!("You do not need to do anything; quote {case} if you contact us."),
                ],
                // Nothing to do: no links, and only "report a problem" is left.
                actions: &[],
                forms: &["report"],
                problem: "lost",
            },
            size,
        );
        // The reference is read out or copied as one thing: never broken over two lines.
        let refs = seen["refs"].as_array().unwrap();
        assert_eq!(refs.len(), 2, "both mentions are marked: {seen}");
        for r in refs {
            assert_eq!(r["text"], case.as_str(), "{seen}");
            assert_eq!(r["rects"], 1, "{case} is kept on one line at {size:?}: {seen}");
        }
    }
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_shows_the_photo_itself_where_it_was_left_and_when() {
    let Some((browser, _turn)) = browser().await else {
        return;
    };
    let server = Server::start(None).await;
    let photo = format!("http://{}/proof/s-1.svg", photo_server().await);
    let now = Timestamp::now();
    let zone = Zone::utc();
    let delivered_at = Timestamp(now.0 - HOUR);
    server.events(shipped("s-1", "o-1", now)).await;
    server
        .events(vec![
            event(
                "place",
                "shipment.safe_place_set",
                Timestamp(now.0 - 3 * HOUR),
                "shipment:s-1",
                json!({"place": "behind the blue gate"}),
            ),
            event(
                "done",
                "shipment.delivered",
                delivered_at,
                "shipment:s-1",
                json!({"proof": {"kind": "safe_place", "photo": photo}}),
            ),
        ])
        .await;
    let url = server.url(&format!("/t/{}", server.token("s-1").await));
    for size in SIZES {
        let seen = look(&browser, &url, size).await;
        screenshot(&browser, &format!("tracking-delivered-{}x{}.png", size.0, size.1)).await;
        let when = zone.when(delivered_at, Timestamp::now());
        check(
            &seen,
            &Expected {
                state: "delivered",
                tone: "good",
                colour: Colour::Green,
                headline: "Delivered",
                lines: vec![
                    format!("Delivered {when}."),
                    "Left in your safe place: behind the blue gate.".into(),
                    "Something wrong with it? Tell us below and we will put it right.".into(),
                ],
                actions: &["report"],
                forms: &["report"],
                // After a delivery no reason is guessed for the customer.
                problem: "",
            },
            size,
        );
        // The proof: the photo itself, loaded and drawn inside the page, linked to
        // full size; what kind of proof it is and when.
        let proof = browser
            .wait_for(
                "the proof photo to load or fail",
                Duration::from_secs(15),
                r#"
                var img = document.querySelector('#proof img.photo');
                if (!img || !img.complete) return null;
                var r = img.getBoundingClientRect(), section = document.getElementById('proof').getBoundingClientRect();
                var link = img.closest('a');
                return {src: img.getAttribute('src'), alt: img.alt, natural: img.naturalWidth,
                        width: r.width, height: r.height, left: r.left, right: r.right, inner: window.innerWidth,
                        section: {left: section.left, right: section.right},
                        link: link ? link.getAttribute('href') : null,
                        text: document.querySelector('#proof p').innerText,
                        scroll: document.documentElement.scrollWidth};
                "#,
            )
            .await;
        browser
            .execute(
                "document.getElementById('proof').scrollIntoView({block: 'center'}); return true;",
                Vec::new(),
            )
            .await;
        screenshot(&browser, &format!("tracking-delivered-proof-{}x{}.png", size.0, size.1)).await;
        assert_eq!(proof["src"], photo.as_str(), "{proof}");
        assert_eq!(proof["link"], photo.as_str(), "the photo links to full size: {proof}");
        assert_eq!(proof["alt"], "Photo of your parcel where it was left");
        assert!(
            proof["natural"].as_f64().unwrap() > 0.0,
            "the photo itself is shown, not a broken image, at {size:?}: {proof}"
        );
        let (width, height) = (proof["width"].as_f64().unwrap(), proof["height"].as_f64().unwrap());
        assert!(
            width >= 200.0 && (width / height - 640.0 / 480.0).abs() < 0.02,
            "the photo is drawn large enough to see, in its own shape: {proof}"
        );
        assert!(
            proof["left"].as_f64() >= proof["section"]["left"].as_f64()
                && proof["right"].as_f64() <= proof["section"]["right"].as_f64()
                && proof["scroll"].as_f64() <= proof["inner"].as_f64(),
            "the photo fits its card and the window: {proof}"
        );
        assert_eq!(proof["text"], format!("Left in a safe place. {when}"), "{proof}");
    }
    browser.quit().await;
}
