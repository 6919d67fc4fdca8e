//! Carrier scorecards on the simulated retail world find the carriers' planted faults.

use std::path::PathBuf;

use troth_store::Store;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// swiftpost (`missed_windows`) has the worst window hit rate; parcelpro
/// (`slow_tracking`: its customers check the tracking page more) the most tracking
/// views per shipment. Rankings only: the figures depend on the world's seed.
#[test]
fn the_retail_worlds_scorecards_rank_the_faulty_carriers() {
    let map =
        troth_core::journey::parse_journey(&std::fs::read_to_string(repo("journeys/retail.toml")).unwrap()).unwrap();
    let world = troth_sim::World::from_toml(&std::fs::read_to_string(repo("worlds/retail.toml")).unwrap()).unwrap();
    let mut ndjson = Vec::new();
    let manifest = troth_sim::simulate(&world, &mut |line| {
        ndjson.extend_from_slice(line.as_bytes());
        ndjson.push(b'\n');
        Ok(())
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = troth_store::sqlite::SqliteStore::open_with_journey(dir.path(), Some(&map)).unwrap();
    troth::import::into_store(&store, std::io::Cursor::new(ndjson), &mut |_| {}).unwrap();
    let end = troth_core::Timestamp::parse_rfc3339(&manifest.end).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let rows = runtime.block_on(async {
        store.tick(end).await.unwrap();
        // The clock's changes are in the log; the projections meet them next.
        store.settle().await.unwrap();
        store.scorecards(None, None).await.unwrap()
    });
    let cards = troth_core::scorecard::rank(&rows);
    for card in &cards {
        let t = &card.total;
        eprintln!(
            "{}: window hit rate {:?}, first attempt {:?}, mean minutes late {:?}, views per shipment {:?}, {} drivers; {t:?}",
            card.carrier,
            t.window_hit_rate(),
            t.first_attempt_rate(),
            t.mean_minutes_late(),
            t.tracking_views_per_shipment(),
            card.drivers.len()
        );
    }
    let names: Vec<&str> = cards.iter().map(|c| c.carrier.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "swiftpost", "worst window hit rate first: {names:?}");
    let most_viewed = cards
        .iter()
        .max_by(|a, b| {
            let views = |c: &troth_core::scorecard::CarrierCard| c.total.tracking_views_per_shipment().unwrap_or(0.0);
            views(a).total_cmp(&views(b))
        })
        .unwrap();
    assert_eq!(most_viewed.carrier, "parcelpro");
    assert!(cards.iter().all(|c| !c.drivers.is_empty() && c.total.shipments > 0));

    // Replay counts the same scorecards from the log.
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "{:?}", report.differences);
}
