//! Delivery notifications (docs/notifications.md#delivery-notifications) from the
//! plays of journeys/retail.toml, through the real store, SMTP listener and SMS
//! gateway: each message carries the tracking link, a customer is not told the
//! same thing twice, SMS consent is respected, and the text is fixed at enqueue.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{HttpServer, SmtpServer};
use serde_json::{Value, json};
use troth_core::journey::parse_journey;
use troth_core::{Timestamp, ValidEvent, validate_value};
use troth_notify::{Dispatcher, NotifyConfig, SmsConfig, SmtpConfig, Template};
use troth_store::sqlite::SqliteStore;
use troth_store::{OutboxEntry, OutboxQuery, OutboxState, Store};

const RETAIL: &str = include_str!("../../../journeys/retail.toml");
const PUBLIC_URL: &str = "https://track.shop.example/";

fn ev(value: Value) -> ValidEvent {
    validate_value(value, None).unwrap()
}

/// An event about shipment s-1 of Ann's, at `time` on 23 November 2026 (or the day given).
fn shipment_event(id: &str, event_type: &str, time: &str, data: Value) -> ValidEvent {
    let time = if time.contains('T') {
        time.to_owned()
    } else {
        format!("2026-11-23T{time}:00Z")
    };
    ev(
        json!({"id": id, "type": event_type, "time": time, "subject": "shipment:s-1",
              "customer": {"id": "ann"}, "data": data}),
    )
}

fn start() -> Vec<ValidEvent> {
    vec![
        ev(
            json!({"id": "i1", "type": "customer.identified", "time": "2026-11-23T07:00:00Z", "customer": {"id": "ann"},
                  "data": {"emails": ["ann@example.org"], "phones": ["+44 20 7946 0000"], "traits": {"name": "Ann"}}}),
        ),
        ev(
            json!({"id": "c1", "type": "shipment.created", "time": "2026-11-23T07:30:00Z", "subject": "shipment:s-1",
                  "customer": {"id": "ann"},
                  "data": {"shipment": "s-1", "order": "o-1", "carrier": "own", "service": "next_day"}}),
        ),
    ]
}

fn window(id: &str, time: &str, start: &str, end: &str) -> ValidEvent {
    shipment_event(
        id,
        "shipment.window_set",
        time,
        json!({"window_start": format!("2026-11-23T{start}:00Z"), "window_end": format!("2026-11-23T{end}:00Z")}),
    )
}

/// A failed attempt on the 23rd, then the next day's run that delivers.
fn the_delivery() -> Vec<ValidEvent> {
    vec![
        window("w1", "08:00", "11:00", "12:00"),
        shipment_event(
            "o1",
            "shipment.out_for_delivery",
            "09:00",
            json!({"driver": "d-7", "stops_before": 3}),
        ),
        shipment_event("a1", "shipment.arriving", "10:50", json!({})),
        shipment_event(
            "f1",
            "shipment.attempt_failed",
            "11:05",
            json!({"reason": "nobody home"}),
        ),
        shipment_event(
            "o2",
            "shipment.out_for_delivery",
            "2026-11-24T09:00:00Z",
            json!({"driver": "d-7", "stops_before": 1}),
        ),
        shipment_event("a2", "shipment.arriving", "2026-11-24T09:40:00Z", json!({})),
        shipment_event(
            "d1",
            "shipment.delivered",
            "2026-11-24T09:52:00Z",
            json!({"proof": {"kind": "photo", "photo": "https://img.shop.example/pod/s-1.jpg"}}),
        ),
    ]
}

struct Rig {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    smtp: SmtpServer,
    gateway: HttpServer,
    config: NotifyConfig,
}

impl Rig {
    fn new(public_url: Option<&str>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with_journey(dir.path(), Some(&parse_journey(RETAIL).unwrap())).unwrap();
        // The delivery happens on 2026-11-23 and 24; taken at noon on the 23rd, every
        // event is news to plays (they ignore history).
        let noon = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
        store.set_clock(Arc::new(move || noon));
        let (smtp, gateway) = (SmtpServer::start(), HttpServer::start(200));
        let config = NotifyConfig {
            smtp: Some(SmtpConfig::from_url(&format!("smtp://{}", smtp.addr), "cx@shop.example").unwrap()),
            sms: Some(SmsConfig {
                url: gateway.url("/sms"),
                token: None,
            }),
            public_url: public_url.map(str::to_owned),
            ..NotifyConfig::default()
        };
        // As `troth serve` does: messages are rendered as their rows are written.
        store.set_composer(Arc::new(config.composer()));
        Rig {
            _dir: dir,
            store,
            smtp,
            gateway,
            config,
        }
    }

    async fn rows(&self) -> Vec<OutboxEntry> {
        self.store
            .outbox(OutboxQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .entries
    }

    async fn row(&self, id: &str) -> OutboxEntry {
        self.store.outbox_entry(id.into()).await.unwrap().unwrap()
    }

    /// The SMS bodies the gateway received, in order.
    fn sms(&self) -> Vec<String> {
        self.gateway
            .requests()
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(body["to"], "+442079460000");
                body["body"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    async fn tracking_url(&self) -> String {
        let link = self.store.tracking_link("s-1".into()).await.unwrap().unwrap();
        format!("https://track.shop.example/t/{}", link.token)
    }
}

#[tokio::test]
async fn a_deliverys_events_send_each_message_once_with_the_tracking_link() {
    let rig = Rig::new(Some(PUBLIC_URL));
    rig.store.append(start()).await.unwrap();
    rig.store.settle().await.unwrap();
    rig.store.append(the_delivery()).await.unwrap();
    rig.store.settle().await.unwrap();
    let dispatcher = Dispatcher::new(rig.store.clone(), rig.config.clone());
    // Six SMS and the delivered email; the failed attempt also broke the window
    // promise, whose play emails the customer too.
    assert_eq!(dispatcher.run_once().await.unwrap(), 8);
    let url = rig.tracking_url().await;

    let sms = rig.sms();
    let expect = [
        "Your delivery is booked for Monday 23 November, 11:00–12:00 UTC.",
        "Your parcel is out for delivery today.\nExpected: 11:00–12:00 UTC\nStops before yours: 3\n",
        "Your driver is on the way to you now and should arrive in about 10 minutes.",
        "We could not deliver your parcel today (reason: nobody home). We will try again and send you the new time.\n\
         Choose another time or a safe place: ",
        "Your parcel is out for delivery today.\nStops before yours: 1\n",
        "Your driver is on the way",
    ];
    assert_eq!(sms.len(), expect.len(), "{sms:#?}");
    for (body, expect) in sms.iter().zip(expect) {
        assert!(body.starts_with(expect), "{body:?} should start with {expect:?}");
        assert!(body.ends_with(&url), "{body:?} should end with the link {url}");
    }

    let mut mails = rig.smtp.wait_for(2, Duration::from_secs(5));
    assert_eq!(mails.len(), 2);
    // Both were caused by the same append: the play on the broken promise runs when the
    // projections meet the promise's event, after the delivery in the same batch.
    mails.sort_by_key(|m| m.header("Subject") != Some("We missed your delivery window".into()));
    let missed = &mails[0];
    assert_eq!(
        missed.header("Subject").as_deref(),
        Some("We missed your delivery window")
    );
    assert!(
        missed.body().contains(&format!("Track it: {url}\r\n")),
        "{}",
        missed.body()
    );
    let mail = &mails[1];
    assert_eq!(mail.to, ["ann@example.org"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Your parcel has been delivered")
    );
    let body = mail.body();
    assert!(body.starts_with("Hello Ann,\r\n"), "{body}");
    assert!(
        body.contains("The driver took a photo of where it was left.\r\n"),
        "{body}"
    );
    assert!(
        body.contains("Photo: https://img.shop.example/pod/s-1.jpg\r\n"),
        "{body}"
    );
    assert!(body.contains(&format!("Details: {url}\r\n")), "{body}");

    // The text sent is the text the row was written with.
    let delivered = rig.row("play:delivered_notice:d1:0").await;
    assert_eq!(delivered.state, OutboxState::Sent);
    assert_eq!(delivered.payload["shipment"]["proof"]["kind"], "photo");
    assert!(delivered.payload["message"]["body"].as_str().unwrap().contains(&url));
    // The same events again send nothing more.
    rig.store.append(the_delivery()).await.unwrap();
    rig.store.settle().await.unwrap();
    assert_eq!(dispatcher.run_once().await.unwrap(), 0);
    assert_eq!(rig.gateway.requests().len(), 6);
}

#[tokio::test]
async fn re_issued_windows_and_stale_reports_do_not_spam() {
    let rig = Rig::new(Some(PUBLIC_URL));
    rig.store.append(start()).await.unwrap();
    rig.store.settle().await.unwrap();
    rig.store
        .append(vec![
            window("w1", "08:00", "11:00", "12:00"),
            // Re-issued 10 minutes later: within the quiet period, not sent.
            window("w2", "08:10", "11:30", "12:30"),
            // Two hours later, the window the customer was already told: not sent.
            window("w3", "10:00", "11:00", "12:00"),
            // Two hours later, a new window: sent.
            window("w4", "10:05", "14:00", "15:00"),
        ])
        .await
        .unwrap();
    rig.store.settle().await.unwrap();
    let state = |row: &OutboxEntry| (row.state, row.last_error.clone().unwrap_or_default());
    assert_eq!(rig.row("play:window_set_notice:w1:0").await.state, OutboxState::Pending);
    let (w2, why) = state(&rig.row("play:window_set_notice:w2:0").await);
    assert_eq!(w2, OutboxState::Skipped);
    assert!(why.contains("less than 30 minutes before"), "{why}");
    let (w3, why) = state(&rig.row("play:window_set_notice:w3:0").await);
    assert_eq!(w3, OutboxState::Skipped);
    assert!(why.contains("already sent window-set with this content"), "{why}");
    let w4 = rig.row("play:window_set_notice:w4:0").await;
    assert_eq!(w4.state, OutboxState::Pending);
    assert!(
        w4.payload["message"]["body"]
            .as_str()
            .unwrap()
            .starts_with("Your delivery is booked for Monday 23 November, 14:00–15:00 UTC.\n"),
        "{w4:?}"
    );

    // Delivered; the driver's `arriving` reaches troth afterwards: the parcel is no
    // longer on its way, so the customer is not told it is.
    rig.store
        .append(vec![
            shipment_event("o1", "shipment.out_for_delivery", "13:00", json!({"driver": "d-7"})),
            shipment_event(
                "d1",
                "shipment.delivered",
                "14:20",
                json!({"proof": {"kind": "handed"}}),
            ),
            shipment_event("a1", "shipment.arriving", "14:10", json!({})),
            // A second delivery report, hours later: told once per shipment.
            shipment_event(
                "d2",
                "shipment.delivered",
                "18:00",
                json!({"proof": {"kind": "handed"}}),
            ),
        ])
        .await
        .unwrap();
    rig.store.settle().await.unwrap();
    let (arriving, why) = state(&rig.row("play:arriving_notice:a1:0").await);
    assert_eq!(arriving, OutboxState::Skipped);
    assert!(why.contains("not on its way to the customer any more"), "{why}");
    assert_eq!(rig.row("play:delivered_notice:d1:0").await.state, OutboxState::Pending);
    assert_eq!(rig.row("play:delivered_notice:d2:0").await.state, OutboxState::Skipped);

    let dispatcher = Dispatcher::new(rig.store.clone(), rig.config.clone());
    dispatcher.run_once().await.unwrap();
    // w1, w4 and the run's out-for-delivery.
    assert_eq!(rig.sms().len(), 3, "{:#?}", rig.sms());
}

#[tokio::test]
async fn a_customer_who_withdrew_sms_consent_gets_no_sms() {
    let rig = Rig::new(Some(PUBLIC_URL));
    let mut events = start();
    events.push(ev(
        json!({"id": "cc1", "type": "customer.consent_changed", "time": "2026-11-23T07:10:00Z",
               "customer": {"id": "ann"}, "data": {"channel": "sms", "purpose": "service", "granted": false}}),
    ));
    rig.store.append(events).await.unwrap();
    rig.store.settle().await.unwrap();
    rig.store.append(the_delivery()).await.unwrap();
    rig.store.settle().await.unwrap();
    Dispatcher::new(rig.store.clone(), rig.config.clone())
        .run_once()
        .await
        .unwrap();
    // The emails (window missed, delivered) show the channels work; no SMS is sent.
    assert_eq!(rig.smtp.wait_for(2, Duration::from_secs(5)).len(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rig.gateway.requests().len(), 0);
    let skipped: Vec<(String, Option<String>)> = rig
        .rows()
        .await
        .into_iter()
        .filter(|r| r.channel == "sms")
        .map(|r| {
            assert_eq!(r.state, OutboxState::Skipped, "{r:?}");
            (r.id, r.last_error)
        })
        .collect();
    assert_eq!(skipped.len(), 6, "{skipped:#?}");
    assert!(
        skipped
            .iter()
            .all(|(_, why)| why.as_deref() == Some("the customer withdrew service consent for sms"))
    );
}

#[tokio::test]
async fn the_text_is_fixed_at_enqueue_and_a_replay_changes_and_resends_nothing() {
    // Without a public URL there is no link, and no relative one either.
    let rig = Rig::new(None);
    rig.store.append(start()).await.unwrap();
    rig.store.settle().await.unwrap();
    rig.store.append(the_delivery()).await.unwrap();
    rig.store.settle().await.unwrap();
    let before = rig.rows().await;
    let window = rig.row("play:window_set_notice:w1:0").await;
    assert_eq!(
        window.payload["message"]["body"],
        "Your delivery is booked for Monday 23 November, 11:00–12:00 UTC."
    );
    for row in before.iter().filter(|r| r.channel != "webhook") {
        let body = row.payload["message"]["body"].as_str().unwrap();
        assert!(!body.contains("/t/") && !body.contains("Track it"), "{body}");
    }

    // The templates change after the rows were written: what is sent is what was written.
    let mut config = rig.config.clone();
    config.templates.insert(
        "window-set".into(),
        Template {
            subject: String::new(),
            body: "Changed".into(),
        },
    );
    config.public_url = Some(PUBLIC_URL.into());
    let dispatcher = Dispatcher::new(rig.store.clone(), config);
    assert_eq!(dispatcher.run_once().await.unwrap(), 8);
    let sms = rig.sms();
    assert_eq!(
        sms[0],
        "Your delivery is booked for Monday 23 November, 11:00–12:00 UTC."
    );

    let sent = rig.rows().await;
    let report = rig.store.replay(true, &mut |_| {}).unwrap();
    assert!(report.matches(), "{report:?}");
    assert_eq!(rig.rows().await, sent, "replay leaves the outbox as it was");
    assert_eq!(dispatcher.run_once().await.unwrap(), 0);
    assert_eq!(rig.gateway.requests().len(), 6);
    for (before, after) in before.iter().zip(&sent) {
        assert_eq!(before.payload, after.payload);
        assert!(
            matches!(after.state, OutboxState::Sent | OutboxState::Skipped),
            "{after:?}"
        );
    }
}
