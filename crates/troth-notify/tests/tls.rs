//! Mail and webhooks over TLS, as real providers want them: an SMTP server that
//! requires STARTTLS and then AUTH, one that speaks TLS from the first byte, and an
//! HTTPS receiver, each with a certificate made here by a CA made here, trusted
//! through `ca_file` only. Refusals that cannot succeed go dead at once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Conn, HttpServer, SmtpOptions, SmtpServer, Upgrade};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use troth_core::journey::parse_journey;
use troth_core::{Timestamp, ValidEvent, validate_value};
use troth_notify::{CaFile, Dispatcher, NotifyConfig, SmsConfig, SmtpConfig, Template};
use troth_store::sqlite::SqliteStore;
use troth_store::{OutboxEntry, OutboxState, RetryPolicy, Store};

const RETAIL: &str = include_str!("../../../journeys/retail.toml");
const ID: &str = "play:payment_failed_help:p1:0";
const USER: &str = "troth@shop.example";
const PASSWORD: &str = "s3cret:with@odd%chars";

/// A CA, the PEM file that trusts it, and the server side of TLS for 127.0.0.1
/// with a certificate it signed.
struct Pki {
    _dir: tempfile::TempDir,
    ca_file: CaFile,
    upgrade: Upgrade,
}

impl Pki {
    fn new() -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone(), CertificateDer::from(ca.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let config = Arc::new(config);
        let upgrade: Upgrade = Arc::new(move |tcp| {
            let connection = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
            Ok(Box::new(rustls::StreamOwned::new(connection, tcp)) as Box<dyn Conn>)
        });
        Pki {
            ca_file: CaFile::read(&path).unwrap(),
            _dir: dir,
            upgrade,
        }
    }
}

fn ev(value: Value) -> ValidEvent {
    validate_value(value, None).unwrap()
}

fn open(dir: &std::path::Path, journey: &str) -> SqliteStore {
    let store = SqliteStore::open_with_journey(dir, Some(&parse_journey(journey).unwrap())).unwrap();
    let noon = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
    store.set_clock(Arc::new(move || noon));
    store
}

/// Ann (at `email`) fails a payment: one email, or one SMS with `channel = "sms"`.
async fn payment_failed(store: &SqliteStore, email: &str) {
    store
        .append(vec![
            ev(
                json!({"id": "i1", "type": "customer.identified", "time": "2026-11-23T09:00:00Z", "customer": {"id": "ann"},
                      "data": {"emails": [email], "phones": ["+44 20 7946 0000"], "traits": {"name": "Zoë"}}}),
            ),
            ev(
                json!({"id": "p1", "type": "payment.failed", "time": "2026-11-23T10:00:00Z", "customer": {"id": "ann"},
                      "data": {"method": "card", "amount": 1999, "currency": "EUR", "reason": "card declined"}}),
            ),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
}

fn smtp_url(scheme: &str, server: &SmtpServer, password: &str, query: &str) -> SmtpConfig {
    let encode = |s: &str| s.replace('%', "%25").replace('@', "%40").replace(':', "%3A");
    let url = format!(
        "{scheme}://{}:{}@127.0.0.1:{}{query}",
        encode(USER),
        encode(password),
        server.addr.port()
    );
    SmtpConfig::from_url(&url, "Shop <cx@shop.example>").unwrap()
}

async fn row(store: &SqliteStore) -> OutboxEntry {
    store.outbox_entry(ID.into()).await.unwrap().unwrap()
}

/// A long line and non-ASCII text: the body must travel as quoted-printable.
fn template() -> Template {
    Template {
        subject: "Paiement refusé, {customer.traits.name}".into(),
        body: format!(
            "Bonjour {{customer.traits.name}}, votre paiement de {{amount}} € n’est pas passé.\n{}\n.\nFin.",
            "long ".repeat(300)
        ),
    }
}

fn config(smtp: SmtpConfig, ca_file: Option<&CaFile>) -> NotifyConfig {
    let mut config = NotifyConfig {
        smtp: Some(smtp),
        ca_file: ca_file.cloned(),
        ..NotifyConfig::default()
    };
    config.templates.insert("payment-failed".into(), template());
    config
}

#[tokio::test]
async fn email_goes_through_a_server_that_requires_starttls_and_auth() {
    let pki = Pki::new();
    // AUTH PLAIN, then a server that offers only LOGIN.
    for mechanisms in ["PLAIN LOGIN", "LOGIN"] {
        let server = SmtpServer::with(SmtpOptions {
            starttls: Some(pki.upgrade.clone()),
            auth: Some((USER.into(), PASSWORD.into())),
            mechanisms: Some(mechanisms),
            ..SmtpOptions::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), RETAIL);
        let smtp = smtp_url("smtp", &server, PASSWORD, "?tls=required");
        let dispatcher = Dispatcher::new(store.clone(), config(smtp, Some(&pki.ca_file)));
        payment_failed(&store, "ann@example.org").await;
        assert_eq!(dispatcher.run_once().await.unwrap(), 1);

        let sent = row(&store).await;
        assert_eq!(sent.state, OutboxState::Sent, "{mechanisms}: {sent:?}");
        let mails = server.wait_for(1, Duration::from_secs(5));
        assert_eq!(mails.len(), 1, "{mechanisms}");
        let mail = &mails[0];
        assert!(mail.tls, "the message went over TLS");
        assert_eq!(mail.user.as_deref(), Some(USER), "{mechanisms}");
        assert_eq!(
            (mail.from.as_str(), mail.to.as_slice()),
            ("cx@shop.example", &["ann@example.org".to_owned()][..])
        );
        assert_eq!(mail.header("From").as_deref(), Some("Shop <cx@shop.example>"));
        assert_eq!(
            mail.header("Message-ID"),
            Some(troth_notify::smtp::message_id(ID)),
            "derived from the outbox id, so the same across retries"
        );
        assert_eq!(mail.header("Troth-Delivery").as_deref(), Some(ID));
        assert!(
            server.refusals.lock().unwrap().is_empty(),
            "{:?}",
            server.refusals.lock().unwrap()
        );

        // 7-bit clean in short lines: no 8BITMIME needed, no line over SMTP's limit.
        assert!(mail.data.is_ascii());
        assert!(mail.data.split("\r\n").all(|line| line.len() <= 78), "{}", mail.data);
        assert_eq!(
            mail.header("Content-Transfer-Encoding").as_deref(),
            Some("quoted-printable")
        );
        let expected = format!(
            "Bonjour Zoë, votre paiement de 19.99 € n’est pas passé.\r\n{}\r\n.\r\nFin.",
            "long ".repeat(300)
        );
        assert_eq!(mail.body().trim_end(), expected);
        assert!(mail.header("Subject").unwrap().contains("=?utf-8?b?"));
        assert_eq!(mail.text_header("Subject").as_deref(), Some("Paiement refusé, Zoë"));
    }
}

#[tokio::test]
async fn email_goes_over_implicit_tls() {
    let pki = Pki::new();
    let server = SmtpServer::with(SmtpOptions {
        implicit_tls: Some(pki.upgrade.clone()),
        auth: Some((USER.into(), PASSWORD.into())),
        ..SmtpOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), RETAIL);
    let smtp = smtp_url("smtps", &server, PASSWORD, "");
    let dispatcher = Dispatcher::new(store.clone(), config(smtp, Some(&pki.ca_file)));
    payment_failed(&store, "ann@example.org").await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(row(&store).await.state, OutboxState::Sent);
    let mails = server.wait_for(1, Duration::from_secs(5));
    assert!(mails[0].tls && mails[0].user.as_deref() == Some(USER), "{mails:?}");
}

#[tokio::test]
async fn opportunistic_tls_takes_starttls_when_offered() {
    let pki = Pki::new();
    let server = SmtpServer::with(SmtpOptions {
        starttls: Some(pki.upgrade.clone()),
        ..SmtpOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), RETAIL);
    let url = format!("smtp://{}?tls=opportunistic", server.addr);
    let smtp = SmtpConfig::from_url(&url, "cx@shop.example").unwrap();
    let dispatcher = Dispatcher::new(store.clone(), config(smtp, Some(&pki.ca_file)));
    payment_failed(&store, "ann@example.org").await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(row(&store).await.state, OutboxState::Sent);
    assert!(server.wait_for(1, Duration::from_secs(5))[0].tls);
}

/// What is wrong with troth's side — a CA it was not told to trust, a wrong
/// password, no TLS where the server wants it — retries like any transient
/// failure rather than killing every message; a recipient refused with 550 is dead
/// at once.
#[tokio::test]
async fn configuration_faults_retry_and_a_refused_recipient_is_dead_at_once() {
    let pki = Pki::new();
    let options = SmtpOptions {
        starttls: Some(pki.upgrade.clone()),
        auth: Some((USER.into(), PASSWORD.into())),
        refuse: vec!["gone@example.org".into()],
        ..SmtpOptions::default()
    };
    let server = SmtpServer::with(options);
    let attempt = |smtp: SmtpConfig, ca: Option<&CaFile>, email: &'static str| {
        let config = config(smtp, ca);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path(), RETAIL);
            let dispatcher = Dispatcher::new(store.clone(), config);
            payment_failed(&store, email).await;
            dispatcher.run_once().await.unwrap();
            row(&store).await
        }
    };

    let untrusted = attempt(
        smtp_url("smtp", &server, PASSWORD, "?tls=required"),
        None,
        "ann@example.org",
    )
    .await;
    let why = untrusted.last_error.clone().unwrap();
    assert_eq!(
        (untrusted.state, untrusted.attempts),
        (OutboxState::Pending, 1),
        "{why}"
    );
    assert!(why.to_lowercase().contains("certificate"), "{why}");

    let wrong_password = attempt(
        smtp_url("smtp", &server, "wrong", "?tls=required"),
        Some(&pki.ca_file),
        "ann@example.org",
    )
    .await;
    let why = wrong_password.last_error.clone().unwrap();
    assert_eq!(wrong_password.state, OutboxState::Pending, "{why}");
    assert!(why.contains("535"), "{why}");

    // Plain SMTP to a server that wants STARTTLS first.
    let plain = SmtpConfig::from_url(&format!("smtp://{}", server.addr), "cx@shop.example").unwrap();
    let no_tls = attempt(plain, Some(&pki.ca_file), "ann@example.org").await;
    let why = no_tls.last_error.clone().unwrap();
    assert_eq!(no_tls.state, OutboxState::Pending, "{why}");
    assert!(why.contains("530"), "{why}");
    assert!(server.mails().is_empty());

    let refused = attempt(
        smtp_url("smtp", &server, PASSWORD, "?tls=required"),
        Some(&pki.ca_file),
        "gone@example.org",
    )
    .await;
    let why = refused.last_error.clone().unwrap();
    assert_eq!((refused.state, refused.attempts), (OutboxState::Dead, 1), "{why}");
    assert!(why.contains("550"), "{why}");
}

fn with_webhook(url: &str) -> String {
    RETAIL.replace(
        "key = \"logistics\"\nname = \"Logistics\"\n",
        &format!("key = \"logistics\"\nname = \"Logistics\"\nwebhook_url = \"{url}\"\n"),
    )
}

/// A delivery window that the clock breaks: its play alerts logistics by webhook.
async fn window_missed(store: &SqliteStore) {
    let window = ev(
        json!({"id": "w1", "type": "shipment.window_set", "time": "2026-11-23T08:00:00Z",
        "subject": "shipment:s-1", "customer": {"email": "ann@example.org"},
        "data": {"window_start": "2026-11-23T11:00:00Z", "window_end": "2026-11-23T12:00:00Z"}}),
    );
    store.append(vec![window]).await.unwrap();
    store.settle().await.unwrap();
    store
        .tick(Timestamp::parse_rfc3339("2026-11-23T12:01:00Z").unwrap())
        .await
        .unwrap();
    // The clock's changes reach the log and then the projections (and their plays).
    store.settle().await.unwrap();
}

async fn webhook_rows(store: &SqliteStore) -> Vec<OutboxEntry> {
    let rows = store
        .outbox(troth_store::OutboxQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .entries;
    rows.into_iter().filter(|r| r.channel == "webhook").collect()
}

#[tokio::test]
async fn a_signed_webhook_reaches_an_https_receiver_trusted_through_ca_file() {
    let pki = Pki::new();
    let receiver = HttpServer::start_tls(204, pki.upgrade.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_webhook(&receiver.url("/alerts/logistics")));
    let secret = "whsec-tls";
    let dispatcher = Dispatcher::new(
        store.clone(),
        NotifyConfig {
            webhook_secret: Some(secret.into()),
            ca_file: Some(pki.ca_file.clone()),
            ..NotifyConfig::default()
        },
    );
    window_missed(&store).await;
    dispatcher.run_once().await.unwrap();

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/alerts/logistics")
    );
    let now = Timestamp::now().micros() / 1_000_000;
    let signature = request.header("troth-signature").unwrap();
    assert!(troth_notify::webhook::verify(
        secret,
        signature,
        &request.body,
        now,
        300
    ));
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(Some(body["id"].as_str().unwrap()), request.header("troth-delivery"));
    let rows = webhook_rows(&store).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, OutboxState::Sent);
}

#[tokio::test]
async fn an_https_receiver_troth_was_not_told_to_trust_is_retried() {
    let pki = Pki::new();
    let receiver = HttpServer::start_tls(204, pki.upgrade.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &with_webhook(&receiver.url("/alerts/logistics")));
    let dispatcher = Dispatcher::new(
        store.clone(),
        NotifyConfig {
            webhook_secret: Some("whsec".into()),
            ..NotifyConfig::default()
        },
    );
    window_missed(&store).await;
    dispatcher.run_once().await.unwrap();
    assert!(receiver.requests().is_empty());
    let row = &webhook_rows(&store).await[0];
    let why = row.last_error.clone().unwrap();
    assert_eq!((row.state, row.attempts), (OutboxState::Pending, 1), "{why}");
    assert!(why.to_lowercase().contains("certificate"), "{why}");
}

#[tokio::test]
async fn a_gateway_that_answers_400_is_dead_at_once() {
    let pki = Pki::new();
    let gateway = HttpServer::start_tls(400, pki.upgrade.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        &RETAIL.replace(
            r#"do = [{ type = "notify_customer", channel = "email", template = "payment-failed" }]"#,
            r#"do = [{ type = "notify_customer", channel = "sms", template = "payment-failed" }]"#,
        ),
    );
    let dispatcher = Dispatcher::new(
        store.clone(),
        NotifyConfig {
            sms: Some(SmsConfig {
                url: gateway.url("/sms"),
                token: Some("gw-token".into()),
            }),
            ca_file: Some(pki.ca_file.clone()),
            retry: RetryPolicy {
                max_attempts: 5,
                ..RetryPolicy::default()
            },
            ..NotifyConfig::default()
        },
    );
    payment_failed(&store, "ann@example.org").await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(gateway.requests().len(), 1);
    assert_eq!(gateway.requests()[0].header("authorization"), Some("Bearer gw-token"));
    let dead = row(&store).await;
    let why = dead.last_error.clone().unwrap();
    assert_eq!((dead.state, dead.attempts), (OutboxState::Dead, 1), "{why}");
    assert!(why.contains("400"), "{why}");
}
