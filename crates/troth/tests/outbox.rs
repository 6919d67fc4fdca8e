//! The outbox across a crash of the real binary: a message committed and claimed,
//! but not yet sent when the process is SIGKILLed, is sent exactly once after the
//! restart, and a further restart sends nothing more.

mod common;
#[path = "../../troth-notify/tests/common/mod.rs"]
mod listeners;

use std::time::{Duration, Instant};

use common::Server;
use listeners::{Silent, SmtpServer};
use serde_json::{Value, json};
use troth::client::{Client, Target};
use troth_core::Timestamp;

const ID: &str = "play:payment_failed_help:p1:0";

fn smtp_flags(port: u16) -> Vec<String> {
    [
        "--smtp-url",
        &format!("smtp://127.0.0.1:{port}"),
        "--smtp-from",
        "cx@shop.example",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start(dir: &std::path::Path, flags: &[String]) -> Server {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(dir, &flags)
}

/// The row, or `None` while the projections have not written it yet.
async fn outbox_row(server: &Server) -> Option<Value> {
    let mut client = Client::connect(&Target::from_addr(server.addr), None).await.unwrap();
    let (status, body) = client.get(&format!("/api/v1/outbox/{ID}")).await.unwrap();
    if status == 404 {
        return None;
    }
    assert!(status.is_success(), "{status}");
    Some(serde_json::from_slice(&body).unwrap())
}

async fn wait_for_state(server: &Server, state: &str) -> Value {
    let started = Instant::now();
    loop {
        let row = outbox_row(server).await;
        let done = row.as_ref().is_some_and(|row| row["state"] == state);
        if done || started.elapsed() > Duration::from_secs(20) {
            return row.unwrap_or(Value::Null);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_claimed_when_troth_is_killed_is_sent_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The relay accepts and never greets: the dispatcher has claimed the row and is
    // waiting to send it when the process dies.
    let silent = Silent::start();
    let server = start(dir.path(), &smtp_flags(silent.addr.port()));
    let mut client = Client::connect(&Target::from_addr(server.addr), None).await.unwrap();
    // A real server stores events at the system clock's time, and plays answer only news.
    let (an_hour_ago, a_minute_ago) = (
        Timestamp(Timestamp::now().micros() - 3_600_000_000).to_string(),
        Timestamp(Timestamp::now().micros() - 60_000_000).to_string(),
    );
    let events = json!([
        {"id": "i1", "type": "customer.identified", "time": an_hour_ago, "customer": {"id": "ann"},
         "data": {"emails": ["ann@example.org"], "traits": {"name": "Ann"}}},
        {"id": "p1", "type": "payment.failed", "time": a_minute_ago, "customer": {"id": "ann"},
         "data": {"method": "card", "amount": 1999, "currency": "EUR"}},
    ]);
    let (status, _) = client.post_json("/api/v1/events", events.to_string()).await.unwrap();
    assert!(status.is_success());
    let row = wait_for_state(&server, "sending").await;
    assert_eq!(row["state"], "sending", "{row}");
    // The dispatcher claims the row, then connects: the claim can be seen first.
    assert!(
        silent.wait_for_connection(Duration::from_secs(10)),
        "the message was claimed but the relay never heard from troth"
    );
    server.kill();

    let smtp = SmtpServer::start();
    let server = start(dir.path(), &smtp_flags(smtp.addr.port()));
    let mails = smtp.wait_for(1, Duration::from_secs(20));
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["ann@example.org"]);
    assert_eq!(mails[0].header("Troth-Delivery").as_deref(), Some(ID));
    let row = wait_for_state(&server, "sent").await;
    assert_eq!(row["state"], "sent", "{row}");
    server.kill();

    // Once marked sent, no restart sends it again.
    let server = start(dir.path(), &smtp_flags(smtp.addr.port()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(outbox_row(&server).await.unwrap()["state"], "sent");
    assert_eq!(smtp.mails().len(), 1);
}
