//! `troth check-journey`, and the contract between the simulator and the retail map.

mod common;

use std::path::PathBuf;

use common::run;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

#[test]
fn check_journey_accepts_the_retail_map_and_locates_errors() {
    let retail = repo("journeys/retail.toml");
    let good = run(&["check-journey", retail.to_str().unwrap()]);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stdout));
    assert!(String::from_utf8_lossy(&good.stdout).contains("13 touchpoints"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&retail)
        .unwrap()
        .replace("\"tracking.viewed\"", "\"tracking.seen\"");
    std::fs::write(&bad, &text).unwrap();
    let line = text.lines().position(|l| l.contains("tracking.seen")).unwrap() + 1;
    let output = run(&["check-journey", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "{}:{line}: touchpoints[5].exposure[0]: unknown event type \"tracking.seen\"",
        bad.display()
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
}

/// Each fault a world plants names a touchpoint of journeys/retail.toml, with that
/// touchpoint's stage, so analytics can be checked against what was planted.
#[test]
fn every_planted_fault_names_a_retail_touchpoint_and_its_stage() {
    let map =
        troth_core::journey::parse_journey(&std::fs::read_to_string(repo("journeys/retail.toml")).unwrap()).unwrap();
    for world in ["small.toml", "retail.toml", "big.toml"] {
        let world = troth_sim::World::from_toml(&std::fs::read_to_string(repo("worlds").join(world)).unwrap()).unwrap();
        let faults = troth_sim::planted_faults(&world);
        assert!(!faults.is_empty());
        for fault in faults {
            let touchpoint = map
                .touchpoint(&fault.touchpoint)
                .unwrap_or_else(|| panic!("{fault:?}: no such touchpoint"));
            assert_eq!(touchpoint.stage, fault.stage, "{fault:?}");
        }
    }
}
