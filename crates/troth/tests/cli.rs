//! `troth import`, `troth replay` and `troth serve` as a person runs them.

mod common;

use std::io::Write;

use common::{Server, run};
use serde_json::json;

fn ndjson(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("events.ndjson");
    let mut file = std::fs::File::create(&path).unwrap();
    for i in 0..500 {
        let event = json!({"id": format!("e{i}"), "type": "page.viewed", "time": "2026-11-23T09:00:00Z",
                           "customer": {"id": format!("u{}", i % 40), "email": format!("u{}@x.org", i % 45)}, "data": {"page": "/"}});
        writeln!(file, "{event}").unwrap();
        if i == 100 {
            writeln!(file, "{{\"id\": \"bad\", \"type\": \"survey.answered\", \"time\": \"2026-11-23T09:00:00Z\", \"data\": {{\"survey\": \"s\", \"nps\": 11}}}}").unwrap();
        }
        if i == 200 {
            writeln!(file, "not json").unwrap();
        }
    }
    path
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn import_reports_rejects_by_line_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let file = ndjson(dir.path());
    let store = dir.path().join("store");
    let (file, store) = (file.to_str().unwrap(), store.to_str().unwrap());

    let first = run(&["import", "--data-dir", store, file]);
    let text = stdout(&first);
    assert_eq!(first.status.code(), Some(3), "some lines were rejected: {text}");
    assert!(text.contains("500 accepted, 0 duplicate, 2 rejected"), "{text}");
    assert!(
        text.contains("line 102: data.nps: must be between 0 and 10, not 11"),
        "{text}"
    );
    assert!(text.contains("line 203: event: is not valid JSON"), "{text}");
    // Both rates, and when each projector caught up.
    assert!(text.contains("events/s into the log"), "{text}");
    let caught_up = text
        .lines()
        .find(|line| line.contains("projectors caught up after"))
        .unwrap_or_else(|| panic!("no line on the projectors: {text}"));
    assert!(caught_up.contains("events/s end to end): projections "), "{caught_up}");
    assert!(caught_up.contains(", stories "), "{caught_up}");

    let again = run(&["import", "--data-dir", store, file]);
    assert!(
        stdout(&again).contains("0 accepted, 500 duplicate, 2 rejected"),
        "{}",
        stdout(&again)
    );

    let replay = run(&["replay", "--check", "--data-dir", store]);
    assert!(replay.status.success(), "{}", stdout(&replay));
    assert!(
        stdout(&replay).contains("the stored projections match the log"),
        "{}",
        stdout(&replay)
    );

    // One projector, by name: only its tables are compared.
    let one = run(&["replay", "--check", "--projector", "counts", "--data-dir", store]);
    let text = stdout(&one);
    assert!(one.status.success(), "{text}");
    assert!(text.contains("event_type_counts  matches"), "{text}");
    assert!(!text.contains("identities "), "{text}");
    assert!(text.contains("the counts projector's tables match the log"), "{text}");
    let unknown = run(&["replay", "--projector", "count", "--data-dir", store]);
    let error = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{error}");
    assert!(
        error.contains(r#"no projector is named "count"; the projectors are identities, counts, promises"#),
        "{error}"
    );
}

#[test]
fn import_to_a_running_server_and_a_clear_error_when_it_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = ndjson(dir.path());
    let server = Server::start(&dir.path().join("store"), &[]);

    let held = run(&[
        "import",
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(!held.status.success());
    let error = String::from_utf8_lossy(&held.stderr);
    assert!(
        error.contains("in use by another process") && error.contains("--url"),
        "{error}"
    );

    let sent = run(&["import", "--url", &server.url(), file.to_str().unwrap()]);
    let text = stdout(&sent);
    assert!(text.contains("500 accepted, 0 duplicate, 2 rejected"), "{text}");
    assert!(
        text.contains("line 102: data.nps"),
        "line numbers count from the file's start: {text}"
    );
}

#[test]
fn serve_refuses_to_listen_openly_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("without a master key"), "{error}");
}

/// Several runs, each paired with its own references, end in their medians: the
/// JSON carries how many runs it sums up, and a median lies among the runs' values.
#[test]
fn bench_ingest_reports_the_medians_of_several_runs() {
    let output = run(&[
        "bench",
        "ingest",
        "--events",
        "400",
        "--requests",
        "200",
        "--clients",
        "4",
        "--runs",
        "3",
        "--json",
    ]);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for run in 1..=3 {
        assert!(text.contains(&format!("run {run} of 3")), "{text}");
    }
    assert!(text.contains("medians of 3 runs:"), "{text}");
    // Where the CPU went, thread by thread, per event and per request.
    #[cfg(target_os = "linux")]
    {
        let cpu: Vec<&str> = text.lines().filter(|line| line.starts_with("cpu")).collect();
        assert_eq!(cpu.len(), 8, "two lines per run and two for the medians: {text}");
        assert!(cpu.iter().all(|line| line.contains("troth-log ")), "{text}");
        assert!(
            cpu[0].contains("µs per event") && cpu[0].contains("troth-projections "),
            "{text}"
        );
        assert!(
            cpu[1].contains("µs per request") && cpu[1].contains("bare handler's run"),
            "{text}"
        );
        // The floors under the bulk and the HTTP runs: each a sum of measured parts.
        let floors: Vec<&str> = text.lines().filter(|line| line.starts_with("floor")).collect();
        assert_eq!(floors.len(), 8, "two lines per run and two for the medians: {text}");
        let numbers = |line: &str| -> Vec<f64> {
            line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .filter_map(|word| word.parse().ok())
                .collect()
        };
        for (floor, parts) in [(floors[0], 3), (floors[1], 3)] {
            let numbers = numbers(floor);
            let (total, parts) = (numbers[0], &numbers[1..=parts]);
            assert!(parts.iter().all(|part| *part > 0.0), "{floor}");
            assert!((parts.iter().sum::<f64>() - total).abs() <= 0.15, "{floor}");
        }
        assert!(floors[0].contains("µs of CPU per event"), "{text}");
        assert!(floors[1].contains("µs of CPU per request"), "{text}");
    }
    let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(report["runs"], 3, "{report}");
    // Each run's append ratio, from its "bulk" line: the median is the middle one.
    let mut ratios: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with("bulk"))
        .take(3)
        .map(|line| line.split_whitespace().rev().nth(2).unwrap().parse().unwrap())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = report["append"]["ratio"].as_f64().unwrap();
    assert!((median - ratios[1]).abs() < 0.006, "median {median} of {ratios:?}");
    assert!(report["http"]["p99_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["lag_p99_ms"].is_number(), "{report}");
}
