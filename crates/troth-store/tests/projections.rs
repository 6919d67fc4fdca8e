//! The projections follow the log: whatever the interleaving of appends, clock
//! ticks and projection batches, they end as one replay of the log says; and when
//! they fall behind, appends wait instead of the lag growing.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use troth_core::{Timestamp, ValidEvent, validate_event};
use troth_store::sqlite::SqliteStore;
use troth_store::{EventQuery, OutboxQuery, PromiseQuery, Store};

fn retail() -> troth_core::journey::JourneyMap {
    troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap()
}

/// A small simulated retailer's events, in the order they happened.
fn world(seed: u64) -> Vec<ValidEvent> {
    let mut world = troth_sim::World::from_toml(include_str!("../../../worlds/retail.toml")).unwrap();
    world.customers = 120;
    world.days = 5;
    world.seed = seed;
    let mut events = Vec::new();
    troth_sim::simulate(&world, &mut |line| {
        events.push(validate_event(line).unwrap());
        Ok(())
    })
    .unwrap();
    events
}

/// SplitMix64: the test's own choices, the same for the same seed.
struct Mix(u64);

impl Mix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// A store whose clock stands just after the last event, so plays answer them.
fn open(dir: &std::path::Path, events: &[ValidEvent]) -> SqliteStore {
    let store = SqliteStore::open_with_journey(dir, Some(&retail())).unwrap();
    let last = events.iter().map(|e| e.time).max().unwrap();
    store.set_clock(Arc::new(move || Timestamp(last.micros() + 60_000_000)));
    store
}

/// What the projections hold that matters to people: promises and messages.
async fn outcome(store: &SqliteStore) -> (Vec<(String, String)>, Vec<String>) {
    store.settle().await.unwrap();
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(
        report.matches(),
        "the projections differ from a replay of the log: {report:?}"
    );
    let mut promises: Vec<(String, String)> = store
        .promises(PromiseQuery {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .promises
        .into_iter()
        .map(|p| (p.id, p.state))
        .collect();
    promises.sort();
    let mut outbox: Vec<String> = store
        .outbox(OutboxQuery {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    outbox.sort();
    (promises, outbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_interleaving_of_appends_and_projection_ends_as_one_replay() {
    for seed in [3, 11, 29] {
        let events = world(seed);
        assert!(events.len() > 2_000, "{} events", events.len());

        // All at once, the projections catching up afterwards.
        let whole = tempfile::tempdir().unwrap();
        let store = open(whole.path(), &events);
        store.append(events.clone()).await.unwrap();
        let expected = outcome(&store).await;
        assert!(!expected.0.is_empty() && !expected.1.is_empty(), "seed {seed}");

        // In pieces of every size, sometimes waiting for the projections, sometimes
        // sending again what was sent, sometimes from two tasks at once.
        let pieces = tempfile::tempdir().unwrap();
        let store = open(pieces.path(), &events);
        let mut rng = Mix(seed);
        let mut at = 0;
        while at < events.len() {
            let size = 1 + rng.below(300) as usize;
            let chunk = &events[at..(at + size).min(events.len())];
            match rng.below(4) {
                0 => store.settle().await.unwrap(),
                1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    let (left, right) = tokio::join!(store.append(a.to_vec()), store.append(b.to_vec()));
                    left.unwrap();
                    right.unwrap();
                }
                2 => {
                    let again = &events[at.saturating_sub(50)..at];
                    store.append(again.to_vec()).await.unwrap();
                }
                _ => {}
            }
            store.append(chunk.to_vec()).await.unwrap();
            at += size;
        }
        assert_eq!(outcome(&store).await, expected, "seed {seed}");
    }
}

/// Appends 2,000 page views, 20 at a time, one append after another; their ids
/// start with `prefix`.
async fn append_page_views(store: &SqliteStore, prefix: &str) {
    append_page_views_in(store, prefix, 100).await
}

/// `batches` appends of 20 page views each.
async fn append_page_views_in(store: &SqliteStore, prefix: &str, batches: usize) {
    for batch in 0..batches {
        let events: Vec<ValidEvent> = (0..20)
            .map(|i| {
                validate_event(&format!(
                    r#"{{"id": "{prefix}{batch}-{i}", "type": "page.viewed", "time": "2026-11-23T09:00:00Z",
                        "customer": {{"id": "c{i}"}}, "data": {{"page": "/"}}}}"#
                ))
                .unwrap()
            })
            .collect();
        store.append(events).await.unwrap();
    }
}

/// The most a measure of the store's progress reaches, sampled every millisecond
/// until stopped.
struct Sampler {
    most: Arc<AtomicI64>,
    sampling: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(store: &SqliteStore, measure: fn(&troth_store::Progress) -> i64) -> Sampler {
        let most = Arc::new(AtomicI64::new(0));
        let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = {
            let (store, most, sampling) = (store.clone(), most.clone(), sampling.clone());
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    most.fetch_max(measure(&store.progress()), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        Sampler { most, sampling, task }
    }

    async fn stop(self) -> i64 {
        self.sampling.store(false, Ordering::Relaxed);
        self.task.await.unwrap();
        self.most.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wait_while_slowed_projections_are_too_far_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.set_max_lag(200);
    store.set_max_lag_age(Duration::MAX);
    // Projecting each event takes a quarter of a millisecond: far slower than appending.
    store.set_fault(Some(Arc::new(|_: &ValidEvent| {
        std::thread::sleep(Duration::from_micros(250))
    })));
    let sampler = Sampler::start(&store, |progress| progress.log - progress.projected());
    assert_eq!(store.append_waits(), Some(troth_store::AppendWaits::default()));
    append_page_views(&store, "v").await;
    let most = sampler.stop().await;
    // The limit, plus the one append that found room just below it.
    assert!(most <= 220, "the projections fell {most} events behind");
    assert!(
        most >= 150,
        "the projections never fell behind ({most}): the test proves nothing"
    );
    // The waits are counted for the operator (`troth_append_waits_total`).
    let waits = store.append_waits().unwrap();
    assert!(waits.waits > 0 && waits.seconds > 0.0, "{waits:?}");
    store.set_fault(None);
    store.settle().await.unwrap();
    assert_eq!(store.progress().projected(), 2_000);
}

/// The limit in time: the oldest event waiting for the projections grows far less
/// old than it does without the limit, the same appends against the same slowed
/// projections, one run after the other (a relation, not a time: it holds on a
/// busy machine too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wait_while_the_oldest_event_not_projected_is_too_old() {
    let limited = oldest_waiting(Duration::from_millis(20)).await;
    let unlimited = oldest_waiting(Duration::MAX).await;
    assert!(
        limited >= 0.02,
        "the projections never fell 20 ms behind ({limited:.3} s): the test proves nothing"
    );
    // Past the limit by the time to project what came in within it (as many appends
    // of 20 events as a fast disk takes in 20 ms: up to a thousand events, a quarter
    // of a second); without it, most of the second the work takes.
    assert!(
        limited * 2.0 <= unlimited,
        "with the limit the oldest event waiting grew {limited:.3} s old, without it {unlimited:.3} s"
    );
}

/// How old, in seconds, the oldest event not projected grew while 4,000 events were
/// appended and projected, with appends waiting past `max_age`.
async fn oldest_waiting(max_age: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.set_max_lag(i64::MAX);
    store.set_max_lag_age(max_age);
    // Projecting each event takes a quarter of a millisecond: 4,000 events take a
    // second, appending them a fraction of that.
    store.set_fault(Some(Arc::new(|_: &ValidEvent| {
        std::thread::sleep(Duration::from_micros(250))
    })));
    // In microseconds.
    let sampler = Sampler::start(&store, |progress| (progress.projectors[0].lag_seconds * 1e6) as i64);
    append_page_views_in(&store, "a", 200).await;
    // Sampled until the projections are done: without the limit, the oldest event
    // waiting grows old after the appends end, as the projections work through them.
    store.settle().await.unwrap();
    assert_eq!(store.progress().projected(), 4_000);
    sampler.stop().await as f64 / 1e6
}

/// A listing by subject or by type reads the event index, a projection, and the
/// log past it: the events the projections have not reached yet are listed too,
/// in order, and pages follow one another across the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_by_subject_and_type_include_events_not_yet_projected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let events = |from: usize| -> Vec<ValidEvent> {
        (from..from + 20)
            .map(|i| {
                let subject = if i % 2 == 0 { r#""subject": "order:o-1","# } else { "" };
                validate_event(&format!(
                    r#"{{"id": "v{i}", "type": "page.viewed", "time": "2026-11-23T09:00:00Z", {subject}
                        "customer": {{"id": "c{i}"}}, "data": {{"page": "/"}}}}"#
                ))
                .unwrap()
            })
            .collect()
    };
    store.append(events(0)).await.unwrap();
    store.settle().await.unwrap();
    // The projections stop at the next event until released.
    let held = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hold = held.clone();
    store.set_fault(Some(Arc::new(move |_: &ValidEvent| {
        while hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    })));
    store.append(events(20)).await.unwrap();
    assert_eq!(store.progress().projected(), 20, "the projections are held");

    let list = |query: EventQuery| {
        let store = store.clone();
        async move {
            let mut seqs = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .events(EventQuery {
                        after_seq: after,
                        limit: 7,
                        ..query.clone()
                    })
                    .await
                    .unwrap();
                seqs.extend(page.events.iter().map(|e| e.seq));
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => return seqs,
                }
            }
        }
    };
    let by_subject = list(EventQuery {
        subject: Some("order:o-1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_subject, (1..=40).step_by(2).collect::<Vec<i64>>());
    let by_type = list(EventQuery {
        event_type: Some("page.viewed".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_type, (1..=40).collect::<Vec<i64>>());
    let newest = store
        .events(EventQuery {
            subject: Some("order:o-1".into()),
            event_type: Some("page.viewed".into()),
            newest_first: true,
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [39, 37, 35]);

    held.store(false, Ordering::SeqCst);
    store.set_fault(None);
    store.settle().await.unwrap();
    assert_eq!(
        list(EventQuery {
            subject: Some("order:o-1".into()),
            ..Default::default()
        })
        .await,
        by_subject,
        "the same once projected"
    );
}

/// A subject's watchers hear once its events are readable through every projection,
/// not before (the projections held), and watchers of other subjects hear nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subjects_watchers_hear_once_its_events_are_projected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut watched = store.watch_subject("shipment:s-1");
    let other = store.watch_subject("shipment:s-2");
    let held = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hold = held.clone();
    store.set_fault(Some(Arc::new(move |_: &ValidEvent| {
        while hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    })));
    let created = validate_event(
        r#"{"id": "sc1", "type": "shipment.created", "time": "2026-11-23T09:00:00Z", "subject": "shipment:s-1",
            "customer": {"id": "ann"}, "data": {"shipment": "s-1", "order": "o-1", "carrier": "c", "service": "standard"}}"#,
    )
    .unwrap();
    let statuses = store.append(vec![created]).await.unwrap();
    let troth_store::AppendStatus::Accepted { seq } = statuses[0] else {
        panic!("not accepted: {statuses:?}");
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !watched.has_changed().unwrap(),
        "told before the projections have the event"
    );

    held.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), watched.changed())
        .await
        .expect("no news within 10 s")
        .unwrap();
    assert!(*watched.borrow_and_update() >= seq);
    // What the watcher reads now has the event.
    assert!(store.issued_link("s-1".into()).await.unwrap().is_some());
    store.settle().await.unwrap();
    assert!(!other.has_changed().unwrap(), "another subject's watcher heard");
}
