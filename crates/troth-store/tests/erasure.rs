//! An erasure is a background job that survives a stop: one recorded as running
//! when troth stopped is run again at the next start, to the end.

use serde_json::json;
use troth_core::validate_value;
use troth_store::sqlite::SqliteStore;
use troth_store::{ErasureState, Store};

const EMAIL: &str = "ann.stopped@example.org";

fn holds(dir: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| std::fs::read(p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes())))
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test]
async fn an_erasure_left_running_at_a_stop_finishes_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let events = ["e1", "e2", "e3"]
            .iter()
            .map(|id| {
                validate_value(
                    json!({"id": id, "type": "search.performed", "time": "2026-11-23T09:00:00Z",
                           "customer": {"email": EMAIL}, "data": {"query": "kettle for Ann"}}),
                    None,
                )
                .unwrap()
            })
            .collect();
        store.append(events).await.unwrap();
        store.settle().await.unwrap();
    }
    assert!(!holds(dir.path(), EMAIL).is_empty());
    // As if troth had stopped just after recording the erasure it was asked for.
    let log = rusqlite::Connection::open(dir.path().join("troth.db")).unwrap();
    log.execute(
        "INSERT INTO erasures (customer, requested_us, requested_by, state) VALUES ('cus_1', 0, 'master', 'running')",
        [],
    )
    .unwrap();
    drop(log);

    let store = SqliteStore::open(dir.path()).unwrap();
    let mut erasure = None;
    for _ in 0..3_000 {
        erasure = store.erasure("era_1".into()).await.unwrap();
        if erasure.as_ref().is_some_and(|e| e.state != ErasureState::Running) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let erasure = erasure.unwrap();
    assert_eq!(erasure.state, ErasureState::Done, "{erasure:?}");
    assert_eq!(erasure.events, 3);
    assert_eq!(holds(dir.path(), EMAIL), Vec::<String>::new());
    assert_eq!(holds(dir.path(), "kettle for Ann"), Vec::<String>::new());
    assert!(store.customer(format!("email:{EMAIL}")).await.unwrap().is_none());
    assert_eq!(store.customer("cus_1".into()).await.unwrap().unwrap().events, 3);
}
