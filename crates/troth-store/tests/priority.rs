//! A bulk import puts the threads that follow the log behind it. Alone in its test
//! binary: it reads the priority of threads by name, and another store open in the
//! same process would have threads of the same names.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use troth_store::sqlite::SqliteStore;

/// The lowest priority, which the followers take for an import.
const LOWEST: i32 = 19;

/// The nice value of each thread of this process with this name (`comm` holds at
/// most 15 bytes of it), from /proc (field 19 of `stat`; the name in parentheses
/// may hold spaces, the fields after it do not).
fn nice_of_threads(name: &str) -> Vec<i32> {
    let name = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let tid = task.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            after_name.split(' ').nth(16)?.parse().ok()
        })
        .collect()
}

#[test]
fn an_import_puts_the_followers_last_as_they_go_round() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let writer_before = nice_of_threads("troth-log");
    store.favour_the_append();
    let event = troth_core::validate_event(
        r#"{"id":"e1","type":"page.viewed","time":"2026-11-23T09:00:00Z","customer":{"id":"ann"},"data":{"page":"/"}}"#,
    )
    .unwrap();
    store.append_blocking(vec![event]).unwrap();
    store.settle_blocking(&mut |_, _| {}).unwrap();
    // Each goes round its loop for the event (the projections and the customers'
    // copies) or its timer (the checkpoint, every second): wait, bounded.
    let followers = ["troth-projections", "troth-stories", "troth-checkpoint"];
    let last = || {
        followers.iter().all(|name| {
            let nices = nice_of_threads(name);
            !nices.is_empty() && nices.iter().all(|n| *n == LOWEST)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !last() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen: Vec<_> = followers.iter().map(|name| (name, nice_of_threads(name))).collect();
    assert!(last(), "each should run at nice {LOWEST}: {seen:?}");
    let writer = nice_of_threads("troth-log");
    assert!(
        !writer.is_empty() && writer == writer_before,
        "the log writer keeps its priority: {writer_before:?} before, {writer:?} after"
    );
}
