//! The simulated world: deterministic, valid, and showing every planted fault in
//! the raw counts of its events.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use troth_sim::{Fault, World, simulate};

const SMALL: &str = include_str!("../../../worlds/small.toml");
const RETAIL: &str = include_str!("../../../worlds/retail.toml");
const BIG: &str = include_str!("../../../worlds/big.toml");

fn lines(world: &World) -> Vec<String> {
    let mut out = Vec::new();
    let manifest = simulate(world, &mut |line| {
        out.push(line.to_owned());
        Ok(())
    })
    .unwrap();
    assert_eq!(manifest.events, out.len() as u64);
    out
}

/// The small world with every kind of fault planted (the file plants some; the
/// rest are added here), so that each shows in the raw events.
fn small() -> World {
    let mut world = World::from_toml(SMALL).unwrap();
    for (kind, target, strength) in [
        ("missed_windows", "swiftpost", 0.3),
        ("slow_tracking", "parcelpro", 20.0),
        ("lost_parcels", "greenvan", 0.05),
        ("phantom_stock", "st-3", 0.4),
        ("broken_callbacks", "delivery", 0.5),
        ("slow_refunds", "returns", 0.6),
        ("late_pickups", "st-2", 0.5),
        ("failing_payments", "method:paypal", 0.5),
        ("defective_sku", "sku:drill-18v", 0.9),
    ] {
        if !world.faults.iter().any(|f| f.kind == kind) {
            world.faults.push(Fault {
                kind: kind.into(),
                target: target.into(),
                strength,
            });
        }
    }
    world
}

fn events(world: &World) -> Vec<Value> {
    lines(world).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    path.split('.').fold(v, |v, k| &v[k]).as_str().unwrap_or("")
}

fn micros(v: &Value, key: &str) -> i64 {
    troth_core::Timestamp::parse_rfc3339(s(v, key)).unwrap().micros()
}

#[test]
fn the_shipped_worlds_parse() {
    for text in [SMALL, RETAIL, BIG] {
        World::from_toml(text).unwrap();
    }
    let retail = World::from_toml(RETAIL).unwrap();
    assert!((3..=4).contains(&retail.faults.len()));
    World::default().validate().unwrap();
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let mut world = small();
    world.customers = 60;
    world.days = 5;
    let a = lines(&world);
    assert_eq!(a, lines(&world));
    world.seed += 1;
    assert_ne!(a, lines(&world));
}

#[test]
fn every_event_is_valid_unique_and_in_order() {
    let world = small();
    let delays: HashMap<String, i64> = world
        .faults
        .iter()
        .filter(|f| f.kind == "slow_tracking")
        .map(|f| (f.target.clone(), (f.strength * 60e6) as i64))
        .collect();
    let mut ids = HashSet::new();
    let mut types = HashSet::new();
    let mut last_arrival = i64::MIN;
    let mut late_seen = 0;
    for line in lines(&world) {
        let event = troth_core::validate_event(&line).unwrap_or_else(|r| panic!("{r:?} in {line}"));
        // Read straight from the text or as a JSON tree, an event is the same event.
        let tree = troth_core::validate_value(serde_json::from_str(&line).unwrap(), Some(&line)).unwrap();
        assert_eq!(format!("{event:?}"), format!("{tree:?}"), "read two ways: {line}");
        assert!(ids.insert(event.id.clone()), "duplicate id {}", event.id);
        types.insert(event.event_type.clone());
        // Events come in the order they reach troth: their time, plus the lag of a slow carrier.
        let v: Value = serde_json::from_str(&line).unwrap();
        let delay = delays.get(s(&v, "source")).copied().unwrap_or(0);
        let arrival = event.time.micros() + delay;
        assert!(arrival >= last_arrival, "out of order: {line}");
        last_arrival = arrival;
        late_seen += usize::from(delay > 0);
    }
    assert!(late_seen > 0);
    for t in [
        "customer.identified",
        "customer.consent_changed",
        "search.performed",
        "page.viewed",
        "store_locator.searched",
        "review.viewed",
        "availability.shown",
        "checkout.started",
        "payment.failed",
        "payment.succeeded",
        "order.placed",
        "store.visited",
        "order.picked",
        "order.packed",
        "shipment.created",
        "shipment.handed_over",
        "shipment.window_set",
        "shipment.out_for_delivery",
        "courier.position",
        "shipment.arriving",
        "shipment.delivered",
        "shipment.attempt_failed",
        "shipment.rescheduled",
        "shipment.lost",
        "tracking.viewed",
        "inventory.received",
        "inventory.counted",
        "inventory.adjusted",
        "usage.reported",
        "return.requested",
        "return.completed",
        "refund.promised",
        "refund.issued",
        "case.opened",
        "case.transferred",
        "case.held",
        "case.resolved",
        "callback.promised",
        "callback.made",
        "survey.answered",
        "review.posted",
        "social.posted",
    ] {
        assert!(types.contains(t), "the small world never emits {t}");
    }
}

#[test]
fn without_slow_carriers_times_never_go_back() {
    let mut world = small();
    world.faults.retain(|f| f.kind != "slow_tracking");
    let mut last = String::new();
    for line in lines(&world) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let time = s(&v, "time").to_owned();
        assert!(time >= last, "{time} after {last}");
        last = time;
    }
}

/// Per carrier: windows set, and how many were missed (delivered after the window
/// ended, or a failed attempt).
fn window_misses(events: &[Value]) -> HashMap<String, (u32, u32)> {
    let mut carrier_of = HashMap::new();
    let mut window = HashMap::new();
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    for e in events {
        let subject = s(e, "subject").to_owned();
        match s(e, "type") {
            "shipment.created" => {
                carrier_of.insert(subject, s(e, "data.carrier").to_owned());
            }
            "shipment.window_set" => {
                window.insert(subject.clone(), micros(&e["data"], "window_end"));
                out.entry(carrier_of[&subject].clone()).or_default().0 += 1;
            }
            "shipment.delivered" | "shipment.attempt_failed" => {
                let end = window.remove(&subject).expect("a window before the outcome");
                let missed = s(e, "type") == "shipment.attempt_failed" || micros(e, "time") > end;
                out.entry(carrier_of[&subject].clone()).or_default().1 += u32::from(missed);
            }
            _ => {}
        }
    }
    out
}

fn rate((n, k): (u32, u32)) -> f64 {
    f64::from(k) / f64::from(n.max(1))
}

#[test]
fn missed_windows_show_at_the_faulty_carrier() {
    let world = World::from_toml(RETAIL).unwrap();
    let events = events(&World {
        days: 14,
        ..world.clone()
    });
    let misses = window_misses(&events);
    let fault = world.faults.iter().find(|f| f.kind == "missed_windows").unwrap();
    let faulty = rate(misses[&fault.target]);
    assert!(
        (faulty - fault.strength).abs() < 0.08,
        "{} missed {faulty}, planted {}",
        fault.target,
        fault.strength
    );
    for (carrier, counts) in &misses {
        if *carrier != fault.target {
            let healthy = rate(*counts);
            assert!(
                healthy < 0.1 && healthy < faulty / 2.5,
                "{carrier} missed {healthy} ({counts:?})"
            );
        }
    }
}

#[test]
fn phantom_stock_sends_customers_to_empty_shelves() {
    let world = small();
    let events = events(&world);
    let mut visits: HashMap<String, (u32, u32)> = HashMap::new();
    for e in events.iter().filter(|e| s(e, "type") == "store.visited") {
        let entry = visits.entry(s(e, "data.store").to_owned()).or_default();
        entry.0 += 1;
        entry.1 += u32::from(e["data"]["found"] == Value::Bool(false));
    }
    let fault = world.faults.iter().find(|f| f.kind == "phantom_stock").unwrap();
    let faulty = rate(visits[&fault.target]);
    assert!(faulty > 0.2, "{visits:?}");
    for (store, counts) in &visits {
        if *store != fault.target {
            assert!(rate(*counts) < faulty / 3.0, "{store}: {counts:?} vs {faulty}");
        }
    }
}

/// Click and collect: a pickup order names its store and a ready-by time, ships
/// nothing, and is ready then collected at that store; the faulty store is late far
/// more often than the others.
#[test]
fn pickup_orders_are_ready_then_collected_and_the_late_store_shows() {
    let world = small();
    let events = events(&world);
    let mut pickups: HashMap<String, (String, i64)> = HashMap::new();
    // Bought in the store and carried out: a pickup without a store to collect from.
    let click_and_collect = |e: &&Value| {
        s(e, "type") == "order.placed" && s(e, "data.delivery") == "pickup" && !s(e, "data.store").is_empty()
    };
    for e in events.iter().filter(click_and_collect) {
        assert!(e["data"]["promised_from"].is_null(), "{e}");
        pickups.insert(
            s(e, "data.order").to_owned(),
            (s(e, "data.store").to_owned(), micros(&e["data"], "promised_to")),
        );
    }
    assert!(pickups.len() > 20, "{} pickup orders", pickups.len());
    let mut late: HashMap<String, (u32, u32)> = HashMap::new();
    let (mut ready, mut collected) = (HashMap::new(), HashSet::new());
    for e in &events {
        let order = s(e, "data.order");
        match s(e, "type") {
            "shipment.created" => assert!(!pickups.contains_key(order), "a pickup order shipped: {e}"),
            "order.ready" => {
                let (store, ready_by) = &pickups[order];
                assert_eq!(s(e, "data.store"), store);
                let entry = late.entry(store.clone()).or_default();
                entry.0 += 1;
                entry.1 += u32::from(micros(e, "time") > *ready_by);
                ready.insert(order.to_owned(), micros(e, "time"));
            }
            "order.collected" => {
                assert_eq!(s(e, "data.store"), pickups[order].0);
                assert!(micros(e, "time") > ready[order], "collected before it was ready: {e}");
                collected.insert(order.to_owned());
            }
            _ => {}
        }
    }
    // Orders placed near the world's end may not be ready or collected within it.
    assert!(ready.len() * 10 >= pickups.len() * 9 && collected.len() * 10 >= ready.len() * 8);
    let faulty = rate(late["st-2"]);
    assert!(faulty > 0.3, "{late:?}");
    for (store, counts) in &late {
        if store != "st-2" {
            assert!(rate(*counts) < faulty / 3.0, "{store}: {counts:?} vs {faulty}");
        }
    }
}

/// Per team (the case's team when the callback was promised): callbacks promised
/// due before `before`, and how many were not made by their due time.
fn callback_misses(events: &[Value], before: i64) -> HashMap<String, (u32, u32)> {
    let mut team_of = HashMap::new();
    let mut due: HashMap<String, (String, i64)> = HashMap::new();
    let mut kept = HashSet::new();
    for e in events {
        let subject = s(e, "subject").to_owned();
        match s(e, "type") {
            "case.opened" => {
                team_of.insert(subject, s(e, "data.team").to_owned());
            }
            "case.transferred" => {
                team_of.insert(subject, s(e, "data.to_team").to_owned());
            }
            "callback.promised" => {
                due.insert(subject.clone(), (team_of[&subject].clone(), micros(&e["data"], "due")));
            }
            "callback.made" if micros(e, "time") <= due[&subject].1 => {
                kept.insert(subject);
            }
            _ => {}
        }
    }
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    for (case, (team, at)) in due {
        if at < before {
            let entry = out.entry(team).or_default();
            entry.0 += 1;
            entry.1 += u32::from(!kept.contains(&case));
        }
    }
    out
}

#[test]
fn broken_callbacks_show_at_the_faulty_team() {
    let world = small();
    let fault = world
        .faults
        .iter()
        .find(|f| f.kind == "broken_callbacks")
        .unwrap()
        .clone();
    let events = events(&world);
    let end = micros(&events[0], "time") + 13 * 86_400_000_000;
    let misses = callback_misses(&events, end);
    let faulty = rate(misses[&fault.target]);
    assert!((faulty - fault.strength).abs() < 0.12, "{misses:?}");
    let others: (u32, u32) = misses
        .iter()
        .filter(|(t, _)| **t != fault.target)
        .fold((0, 0), |a, (_, c)| (a.0 + c.0, a.1 + c.1));
    assert!(others.0 > 20 && rate(others) < 0.12, "{misses:?}");
}

#[test]
fn lost_parcels_and_slow_refunds_and_slow_tracking_show() {
    let world = small();
    let events = events(&world);
    let mut carrier_of = HashMap::new();
    let mut created: HashMap<String, u32> = HashMap::new();
    let mut lost: HashMap<String, u32> = HashMap::new();
    let mut views: HashMap<String, u32> = HashMap::new();
    let mut team_of = HashMap::new();
    let mut refund_due = HashMap::new();
    let mut refund_kept = HashSet::new();
    for e in &events {
        let subject = s(e, "subject").to_owned();
        match s(e, "type") {
            "shipment.created" => {
                let carrier = s(e, "data.carrier").to_owned();
                *created.entry(carrier.clone()).or_default() += 1;
                carrier_of.insert(subject, carrier);
            }
            "shipment.lost" => *lost.entry(carrier_of[&subject].clone()).or_default() += 1,
            "tracking.viewed" => *views.entry(carrier_of[&subject].clone()).or_default() += 1,
            "case.opened" => {
                team_of.insert(subject, s(e, "data.team").to_owned());
            }
            "case.transferred" => {
                team_of.insert(subject, s(e, "data.to_team").to_owned());
            }
            "refund.promised" => {
                refund_due.insert(subject.clone(), (team_of[&subject].clone(), micros(&e["data"], "due")));
            }
            "refund.issued" if micros(e, "time") <= refund_due[&subject].1 => {
                refund_kept.insert(subject);
            }
            _ => {}
        }
    }
    let fault = |kind: &str| world.faults.iter().find(|f| f.kind == kind).unwrap().target.clone();
    let per = |m: &HashMap<String, u32>, c: &str| f64::from(m.get(c).copied().unwrap_or(0)) / f64::from(created[c]);
    let lossy = fault("lost_parcels");
    for carrier in created.keys() {
        if *carrier != lossy {
            assert!(
                per(&lost, carrier) < per(&lost, &lossy) / 3.0,
                "{lost:?} of {created:?}"
            );
        }
    }
    let slow = fault("slow_tracking");
    for carrier in created.keys() {
        if *carrier != slow {
            assert!(
                per(&views, carrier) * 1.5 < per(&views, &slow),
                "{views:?} of {created:?}"
            );
        }
    }
    // Refunds due before the world ends: how many were not paid by their due date.
    let end = micros(&events[0], "time") + i64::from(world.days) * 86_400_000_000;
    let mut refunds: HashMap<String, (u32, u32)> = HashMap::new();
    for (case, (team, due)) in &refund_due {
        if *due < end {
            let entry = refunds.entry(team.clone()).or_default();
            entry.0 += 1;
            entry.1 += u32::from(!refund_kept.contains(case));
        }
    }
    let tardy = fault("slow_refunds");
    let planted = world.faults.iter().find(|f| f.kind == "slow_refunds").unwrap().strength;
    assert!((rate(refunds[&tardy]) - planted).abs() < 0.2, "{refunds:?}");
    for (team, counts) in &refunds {
        if *team != tardy {
            assert!(rate(*counts) < 0.15, "{refunds:?}");
        }
    }
}

/// Replays identity resolution: each event's identities join one customer; an
/// event naming identities first seen on different customers is a merge.
#[test]
fn identities_merge() {
    let events = events(&small());
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut next = 0;
    let mut merges = 0;
    let mut parent: Vec<usize> = Vec::new();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for e in &events {
        let mut ids: Vec<String> = Vec::new();
        for key in ["email", "phone"] {
            if let Some(v) = e["customer"][key].as_str() {
                ids.push(format!("{key}:{}", v.to_lowercase()));
            }
        }
        for v in e["data"]["emails"].as_array().into_iter().flatten() {
            ids.push(format!("email:{}", v.as_str().unwrap().to_lowercase()));
        }
        let mut roots: Vec<usize> = ids
            .iter()
            .filter_map(|i| owner.get(i))
            .map(|&o| root(&mut parent, o))
            .collect();
        roots.sort_unstable();
        roots.dedup();
        let into = match roots.first() {
            Some(&r) => r,
            None => {
                parent.push(next);
                next += 1;
                next - 1
            }
        };
        if roots.len() > 1 {
            merges += 1;
            for &r in &roots[1..] {
                parent[r] = into;
            }
        }
        for i in ids {
            owner.entry(i).or_insert(into);
        }
    }
    assert!(merges >= 5, "{merges} merges");
}

#[test]
fn feedback_follows_experience() {
    let events = events(&small());
    let texts: HashSet<&str> = events
        .iter()
        .filter(|e| s(e, "type") == "social.posted")
        .map(|e| s(e, "data.text"))
        .collect();
    assert!(texts.len() >= 10, "{texts:?}");
    // Reviews after late deliveries are low; after on-time ones, high.
    let ratings: Vec<i64> = events
        .iter()
        .filter(|e| s(e, "type") == "review.posted")
        .map(|e| e["data"]["rating"].as_i64().unwrap())
        .collect();
    assert!(
        ratings.iter().any(|&r| r <= 2) && ratings.iter().any(|&r| r >= 4),
        "{ratings:?}"
    );
    // Odometers only grow.
    let mut odo: HashMap<&str, f64> = HashMap::new();
    let mut reports = 0;
    for e in events.iter().filter(|e| s(e, "type") == "usage.reported") {
        let value = e["data"]["value"].as_f64().unwrap();
        let last = odo.insert(s(e, "data.asset"), value).unwrap_or(0.0);
        assert!(value > last);
        reports += 1;
    }
    assert!(reports > 5);
}

#[test]
fn world_errors_name_the_field() {
    let check = |text: &str, expect: &str| {
        let got = World::from_toml(text).unwrap_err().to_string();
        assert!(
            got.starts_with(expect),
            "got {got:?}, expected it to start with {expect:?}"
        );
    };
    check("customers = \"many\"", "customers: TOML parse error at line 1");
    check("days = 0", "days: must be at least 1");
    check("custmers = 3", "custmers: TOML parse error");
    check("[rates]\nsurvey = 1.5", "rates.survey: must be a share between 0 and 1");
    check("[city]\nlat = \"north\"", "city.lat: TOML parse error at line 2");
    check(
        "[[faults]]\nkind = \"missed_windows\"\ntarget = \"fastpost\"\nstrength = 0.3",
        "faults[0].target: a missed_windows fault needs a carrier, and there is no carrier named \"fastpost\"",
    );
    check(
        "[[faults]]\nkind = \"gremlins\"\ntarget = \"x\"\nstrength = 0.3",
        "faults[0].kind: \"gremlins\" is not a fault kind",
    );
    check("start = \"yesterday\"", "start: must be an RFC 3339 date-time");
    check("[[stores]]\nid = \"shop-1\"", "stores[0].id: must start with st-");
}

#[test]
fn the_manifest_names_each_fault() {
    let world = small();
    let manifest = simulate(&world, &mut |_| Ok(())).unwrap();
    let mut got: Vec<(String, String, String, String)> = manifest
        .faults
        .iter()
        .map(|f| (f.kind.clone(), f.target.clone(), f.touchpoint.clone(), f.stage.clone()))
        .collect();
    let want = [
        ("missed_windows", "carrier:swiftpost", "delivery_window", "smot"),
        ("slow_tracking", "carrier:parcelpro", "tracking_page", "smot"),
        ("lost_parcels", "carrier:greenvan", "delivery", "smot"),
        ("phantom_stock", "store:st-3", "stock", "zmot"),
        ("broken_callbacks", "team:delivery", "callback", "smot"),
        ("slow_refunds", "team:returns", "refund", "smot"),
        ("late_pickups", "store:st-2", "collect", "smot"),
        ("failing_payments", "method:paypal", "pay", "fmot"),
        ("defective_sku", "sku:drill-18v", "review", "umot"),
    ];
    let mut want: Vec<(String, String, String, String)> = want
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(manifest.start, "2026-11-02T00:00:00.000000Z");
    assert_eq!(manifest.end, "2026-11-16T00:00:00.000000Z");
    assert!(manifest.faults.iter().all(|f| !f.description.is_empty()));
}

#[test]
fn a_standing_vans_phone_keeps_reporting_when_asked_and_only_then() {
    let time = |v: &Value| {
        troth_core::Timestamp::parse_rfc3339(v["time"].as_str().unwrap())
            .unwrap()
            .micros()
    };
    // Each driver's longest silence within a day's route, in seconds.
    let silences = |world: &World| {
        let mut by_driver: HashMap<String, Vec<i64>> = HashMap::new();
        for line in lines(world) {
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["type"] == "courier.position" {
                by_driver
                    .entry(v["subject"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(time(&v));
            }
        }
        let mut longest = 0;
        for times in by_driver.values_mut() {
            times.sort_unstable();
            for gap in times.windows(2).map(|w| (w[1] - w[0]) / 1_000_000) {
                // Between one day's route and the next the van is not out.
                if gap < 6 * 3600 {
                    longest = longest.max(gap);
                }
            }
        }
        longest
    };
    let mut world = World::from_toml(SMALL).unwrap();
    world.days = 3;
    assert!(
        silences(&world) > 300,
        "without it, a van standing is silent for minutes"
    );
    world.parked_report_s = 30;
    let longest = silences(&world);
    assert!(longest <= 40, "driving every 10 s, standing every 30 s: {longest} s");
}

/// A payment method that fails for half its payments, and a product most of its
/// reviewers pan: each shows at its own method or SKU, and only there.
#[test]
fn failing_payments_and_a_defective_product_show_at_their_method_and_sku() {
    let mut world = small();
    // Enough reviews for one product's to count.
    world.rates.review = 0.8;
    let events = events(&world);
    let mut payments: HashMap<String, (u32, u32)> = HashMap::new();
    let mut reviews: HashMap<String, (u32, u32)> = HashMap::new();
    for e in &events {
        match s(e, "type") {
            "payment.succeeded" | "payment.failed" => {
                let entry = payments.entry(s(e, "data.method").to_owned()).or_default();
                entry.0 += 1;
                entry.1 += u32::from(s(e, "type") == "payment.failed");
            }
            "review.posted" => {
                let entry = reviews.entry(s(e, "data.product").to_owned()).or_default();
                entry.0 += 1;
                entry.1 += u32::from(e["data"]["rating"].as_i64().unwrap() <= 2);
            }
            _ => {}
        }
    }
    let paypal = rate(payments["paypal"]);
    assert!((paypal - 0.5).abs() < 0.12, "paypal failed {paypal}: {payments:?}");
    for (method, counts) in payments.iter().filter(|(m, _)| *m != "paypal") {
        assert!(rate(*counts) < 0.15, "{method}: {counts:?}");
    }
    let drill = reviews["drill-18v"];
    assert!(
        drill.0 >= 4 && rate(drill) > 0.75,
        "drill-18v: {drill:?} (of {reviews:?})"
    );
    let (rest, rest_bad) = reviews
        .iter()
        .filter(|(p, _)| *p != "drill-18v")
        .fold((0, 0), |(n, k), (_, (a, b))| (n + a, k + b));
    assert!(
        rate((rest, rest_bad)) < 0.35,
        "other products: {rest_bad} of {rest} panned"
    );
}
