//! The simulation itself: one simulated day at a time, events written as JSON into
//! a day's buffer, sorted by when they reach troth, and streamed out. Anything that
//! happens on a later day (a delivery, a refund) waits as a compact task.

use std::f64::consts::PI;

use troth_core::Timestamp;

use crate::json::{push_escaped, push_i64, push_u64};
use crate::rng::{Rng, hash, unit};
use crate::text::{self, FAMILIES, Topic};
use crate::world::{CASE_CATEGORIES, World, strip_target};
use crate::{Manifest, PlantedFault, SimError};

mod delivery;
mod feedback;
mod people;
mod shopping;
mod stock;
mod support;
mod writer;

use writer::Out;

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Hours of the day sessions start at, weighted towards evenings.
const SESSION_HOURS: &[i64] = &[
    7, 8, 9, 10, 11, 12, 12, 13, 13, 14, 15, 16, 17, 18, 19, 19, 20, 20, 21, 21, 22, 22, 23,
];

// Customer flags.
const HAS_PHONE: u8 = 1;
const HAS_ALT: u8 = 2;
const IDENTIFIED: u8 = 4;
const PHONE_SEEN: u8 = 8;
const PHONE_LINKED: u8 = 16;
const ALT_SEEN: u8 = 32;
const ALT_LINKED: u8 = 64;
const HAS_ASSET: u8 = 128;

#[derive(Debug, Clone, Copy, Default)]
struct Cust {
    flags: u8,
    /// Running experience: bad moments lower it, good ones raise it.
    mood: i8,
    /// Kilometres driven per day, for tyre buyers.
    km_per_day: u8,
    join_day: u32,
    odometer: u32,
}

/// How an event names its customer.
#[derive(Debug, Clone, Copy)]
enum Who {
    Email(u32),
    Alt(u32),
    Phone(u32),
    EmailPhone(u32),
    EmailAlt(u32),
}

struct CarrierState {
    name: String,
    cumulative_share: f64,
    miss_rate: f64,
    lost_rate: f64,
    /// Microseconds between an event happening and it reaching troth.
    delay: i64,
    depot: (f64, f64),
}

struct StoreState {
    id: String,
    name: String,
    /// Stock the site believes each SKU has.
    site: Vec<i32>,
    /// Stock actually on the shelf.
    shelf: Vec<i32>,
    /// SKUs whose receipts are recorded but never reach the shelf.
    phantom: Vec<bool>,
    /// Share of click-and-collect orders ready after the time promised.
    late_pickup_rate: f64,
}

struct TeamState {
    name: String,
    callback_miss_rate: f64,
    refund_late_rate: f64,
}

struct Sku {
    name: String,
    family: usize,
    price: i64,
}

/// A parcel on its way: what a delivery day needs to know about it.
#[derive(Debug, Clone, Copy)]
struct Parcel {
    ship: u64,
    order: u64,
    cust: u32,
    carrier: u8,
    attempt: u8,
    safe_place: bool,
    sku: u16,
    tyre: bool,
    value: i64,
    /// Days spent waiting for a lost parcel.
    waited: u8,
    lost: bool,
}

#[derive(Debug, Clone, Copy)]
enum Task {
    Deliver(Parcel),
    Return(Parcel),
    Refund {
        case: u64,
        cust: u32,
        team: u8,
        at: i64,
        amount: i64,
        order: u64,
        returned: bool,
    },
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    OnTime,
    Late,
    Failed,
}

struct Sim<'w> {
    w: &'w World,
    rng: Rng,
    out: Out,
    start: i64,
    custs: Vec<Cust>,
    carriers: Vec<CarrierState>,
    stores: Vec<StoreState>,
    teams: Vec<TeamState>,
    /// The team owning each case category.
    owner: Vec<u8>,
    skus: Vec<Sku>,
    tasks: Vec<Vec<Task>>,
    tyre_owners: Vec<u32>,
    next_order: u64,
    next_ship: u64,
    next_case: u64,
    text: String,
    /// Metres per degree of longitude at the city's latitude.
    m_per_lon: f64,
    path: Vec<(f64, f64, f64, f64, f64)>,
    /// The day being simulated.
    today: u32,
}

pub fn planted(world: &World) -> Vec<PlantedFault> {
    world
        .faults
        .iter()
        .map(|f| {
            let (kind, touchpoint, what) = match f.kind.as_str() {
                "missed_windows" => ("carrier", "delivery_window", format!("misses {:.0}% of its one-hour delivery windows (late or failed attempts); healthy carriers miss about 3%", f.strength * 100.0)),
                "phantom_stock" => ("store", "stock", format!("has {:.0}% of its SKUs received on paper but never shelved, so the site shows them in stock and visitors find nothing; healthy stores none", f.strength * 100.0)),
                "broken_callbacks" => ("team", "callback", format!("breaks {:.0}% of its callback promises (called late or never); healthy teams about 2%", f.strength * 100.0)),
                "slow_tracking" => ("carrier", "tracking_page", format!("reports its tracking events (windows, out for delivery, positions, deliveries) {:.0} minutes after they happen, so customers refresh the tracking page more", f.strength)),
                "lost_parcels" => ("carrier", "delivery", format!("loses {:.1}% of its parcels; healthy carriers about 0.3%", f.strength * 100.0)),
                "late_pickups" => ("store", "collect", format!("has {:.0}% of its click-and-collect orders ready after the time promised; healthy stores about 2%", f.strength * 100.0)),
                "failing_payments" => ("method", "pay", format!("fails {:.0}% of the payments made with it; healthy methods about {:.0}%", f.strength * 100.0, world.rates.payment_failure * 100.0)),
                "defective_sku" => ("sku", "review", format!("disappoints {:.0}% of the customers who review it (one or two stars, about the product)", f.strength * 100.0)),
                _ => ("team", "refund", format!("issues {:.0}% of its promised refunds after the due date; healthy teams about 1%", f.strength * 100.0)),
            };
            let target = strip_target(&f.target, kind);
            let stage = match touchpoint {
                "stock" => "zmot",
                "pay" => "fmot",
                "review" => "umot",
                _ => "smot",
            };
            PlantedFault {
                kind: f.kind.clone(),
                target: format!("{kind}:{target}"),
                touchpoint: touchpoint.to_owned(),
                stage: stage.to_owned(),
                strength: f.strength,
                description: format!("{kind} {target} {what}"),
            }
        })
        .collect()
}

pub fn run(w: &World, sink: &mut crate::TimedSink<'_>) -> Result<Manifest, SimError> {
    run_spilling(w, sink, writer::SPILL_BYTES)
}

/// [`run`], holding at most about `spill_bytes` of event text in memory.
fn run_spilling(w: &World, sink: &mut crate::TimedSink<'_>, spill_bytes: usize) -> Result<Manifest, SimError> {
    let start = w.start_time()?.micros();
    let end = start + i64::from(w.days) * DAY;
    let mut sim = Sim::new(w, start, end, spill_bytes);
    for day in 0..w.days {
        sim.day(day);
        sim.out.flush(start + i64::from(day + 1) * DAY, sink)?;
    }
    sim.out.flush(i64::MAX, sink)?;
    Ok(Manifest {
        world: w.name.clone(),
        seed: w.seed,
        customers: w.customers,
        days: w.days,
        start: Timestamp(start).to_string(),
        end: Timestamp(end).to_string(),
        events: sim.out.written,
        faults: planted(w),
    })
}

fn fault<'a>(w: &'a World, kind: &str, target_kind: &str, target: &str) -> Option<&'a crate::Fault> {
    w.faults
        .iter()
        .find(|f| f.kind == kind && strip_target(&f.target, target_kind) == target)
}

impl<'w> Sim<'w> {
    fn new(w: &'w World, start: i64, end: i64, spill_bytes: usize) -> Sim<'w> {
        let seed = w.seed;
        let mut rng = Rng::new(seed);
        let days = w.days;
        let m_per_lon = 111_320.0 * (w.city.lat * PI / 180.0).cos();

        let total_share: f64 = w.carriers.iter().map(|c| c.share).sum();
        let mut acc = 0.0;
        let carriers = w
            .carriers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                acc += c.share / total_share;
                let angle = i as f64 * 2.0 * PI / w.carriers.len() as f64 + 0.4;
                let r = w.city.radius_km * 1000.0 * 1.1;
                CarrierState {
                    name: c.name.clone(),
                    cumulative_share: acc,
                    miss_rate: fault(w, "missed_windows", "carrier", &c.name).map_or(c.miss_rate, |f| f.strength),
                    lost_rate: fault(w, "lost_parcels", "carrier", &c.name).map_or(c.lost_rate, |f| f.strength),
                    delay: fault(w, "slow_tracking", "carrier", &c.name)
                        .map_or(0, |f| (f.strength * MIN as f64) as i64),
                    depot: (snap(r * angle.cos()), snap(r * angle.sin())),
                }
            })
            .collect();

        let mut skus = Vec::new();
        for (family, f) in FAMILIES.iter().enumerate() {
            for (v, variant) in f.variants.iter().enumerate() {
                skus.push(Sku {
                    name: format!("{}-{variant}", f.stem),
                    family,
                    price: f.price + v as i64 * f.price / 10,
                });
            }
        }

        let stores = w
            .stores
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let rate = fault(w, "phantom_stock", "store", &s.id).map_or(s.stock_error_rate, |f| f.strength);
                // Exactly round(rate × SKUs) SKUs are phantom, chosen by a seeded shuffle.
                let mut order: Vec<usize> = (0..skus.len()).collect();
                order.sort_by_key(|&k| hash(&[seed, 11, si as u64, k as u64]));
                let n = (rate * skus.len() as f64).round() as usize;
                let mut phantom = vec![false; skus.len()];
                for &k in order.iter().take(n) {
                    phantom[k] = true;
                }
                StoreState {
                    id: s.id.clone(),
                    name: if s.name.is_empty() {
                        s.id.clone()
                    } else {
                        s.name.clone()
                    },
                    site: vec![0; skus.len()],
                    shelf: vec![0; skus.len()],
                    phantom,
                    late_pickup_rate: fault(w, "late_pickups", "store", &s.id)
                        .map_or(s.late_pickup_rate, |f| f.strength),
                }
            })
            .collect();

        let teams: Vec<TeamState> = w
            .teams
            .iter()
            .map(|t| TeamState {
                name: t.name.clone(),
                callback_miss_rate: fault(w, "broken_callbacks", "team", &t.name)
                    .map_or(t.callback_miss_rate, |f| f.strength),
                refund_late_rate: fault(w, "slow_refunds", "team", &t.name).map_or(t.refund_late_rate, |f| f.strength),
            })
            .collect();
        let owner = CASE_CATEGORIES
            .iter()
            .map(|c| {
                w.teams
                    .iter()
                    .position(|t| t.categories.iter().any(|x| x == c))
                    .unwrap_or(0) as u8
            })
            .collect();

        let r = &w.rates;
        let custs = (0..w.customers)
            .map(|i| {
                let h = |k: u64| unit(hash(&[seed, k, i]));
                let mut flags = 0;
                if h(1) < r.phone {
                    flags |= HAS_PHONE;
                }
                if h(2) < r.second_email {
                    flags |= HAS_ALT;
                }
                let join_day = if h(3) < r.known_at_start {
                    0
                } else {
                    (h(4) * f64::from(days)) as u32
                };
                Cust {
                    flags,
                    join_day,
                    ..Cust::default()
                }
            })
            .collect();
        let _ = rng.next_u64();
        Sim {
            w,
            rng,
            out: Out::new(format!("sim-{seed}-"), end, spill_bytes),
            start,
            custs,
            carriers,
            stores,
            teams,
            owner,
            skus,
            tasks: (0..days).map(|_| Vec::new()).collect(),
            tyre_owners: Vec::new(),
            next_order: 1,
            next_ship: 1,
            next_case: 1,
            text: String::new(),
            m_per_lon,
            path: Vec::new(),
            today: 0,
        }
    }

    fn schedule(&mut self, day: u32, task: Task) {
        debug_assert!(day > self.today || (day == self.today && matches!(task, Task::Refund { .. })));
        if let Some(list) = self.tasks.get_mut(day as usize) {
            list.push(task);
        }
    }

    fn day_of(&self, t: i64) -> u32 {
        ((t - self.start).max(0) / DAY) as u32
    }

    fn day(&mut self, day: u32) {
        let base = self.start + i64::from(day) * DAY;
        self.today = day;
        self.inventory(day, base);
        self.sessions(day, base);
        self.usage(day, base);
        let tasks = std::mem::take(&mut self.tasks[day as usize]);
        let mut parcels = Vec::new();
        for task in tasks {
            match task {
                Task::Deliver(p) if p.lost => self.limbo(day, base, p),
                Task::Deliver(p) => parcels.push(p),
                Task::Return(p) => self.return_parcel(base, p),
                Task::Refund {
                    case,
                    cust,
                    team,
                    at,
                    amount,
                    order,
                    returned,
                } => self.refund_issued(case, cust, team, at, amount, order, returned),
            }
        }
        self.deliveries(day, base, parcels);
    }

    // ---------------------------------------------------------------- customers
}

fn photo_view(rng: &mut Rng) -> bool {
    rng.chance(0.4)
}

fn mix2(h: u64) -> u64 {
    crate::rng::mix(h ^ 0xA5A5_A5A5_A5A5_A5A5)
}

/// Snaps a coordinate in metres to the 150 m street grid.
fn snap(m: f64) -> f64 {
    (m / 150.0).round() * 150.0
}

fn manhattan(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).abs() + (a.1 - b.1).abs()
}

fn push_phone(out: &mut String, i: u32) {
    out.push_str("+33 6 ");
    push_u64(out, 100_000_000 + u64::from(i) % 100_000_000);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(world: &World, spill_bytes: usize) -> (Vec<u8>, Vec<i64>) {
        let mut text = Vec::new();
        let mut arrivals = Vec::new();
        run_spilling(
            world,
            &mut |line: &str, at: Timestamp| {
                text.extend_from_slice(line.as_bytes());
                text.push(b'\n');
                arrivals.push(at.micros());
                Ok(())
            },
            spill_bytes,
        )
        .unwrap();
        (text, arrivals)
    }

    #[test]
    fn spilling_to_disk_writes_the_same_bytes_in_the_same_order() {
        let world = World {
            customers: 300,
            days: 6,
            ..World::default()
        };
        let (whole, arrivals) = bytes(&world, usize::MAX);
        assert!(whole.len() > 200_000, "a world worth spilling: {} bytes", whole.len());
        assert!(
            arrivals.windows(2).all(|w| w[0] <= w[1]),
            "in the order they reach troth"
        );
        // A run every few events: many runs merged at every flush, some outliving their day.
        for spill_bytes in [2_048, 16_384, 65_536] {
            let (spilled, _) = bytes(&world, spill_bytes);
            assert!(
                spilled == whole,
                "spilling every {spill_bytes} bytes changed the output"
            );
        }
    }
}
