//! The simulation itself: one simulated day at a time, events written as JSON into
//! a day's buffer, sorted by when they reach troth, and streamed out. Anything that
//! happens on a later day (a delivery, a refund) waits as a compact task.

use std::f64::consts::PI;

use troth_core::Timestamp;

use crate::json::{push_escaped, push_fixed1, push_fixed6, push_i64, push_time, push_u64};
use crate::rng::{Rng, hash, unit};
use crate::text::{self, FAMILIES, Topic};
use crate::world::{CASE_CATEGORIES, World, strip_target};
use crate::{Manifest, PlantedFault, SimError};

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

struct Entry {
    key: i64,
    ord: u64,
    time: i64,
    start: usize,
    end: usize,
}

/// The day's events, as JSON text in one buffer plus an index to sort.
struct Out {
    arena: String,
    index: Vec<Entry>,
    spare: String,
    prefix: String,
    counter: u64,
    first: bool,
    cur_start: usize,
    cur_key: i64,
    cur_time: i64,
    written: u64,
    end: i64,
}

impl Out {
    fn begin(&mut self, time: i64, delay: i64, event_type: &str, source: &str, channel: &str) {
        self.cur_start = self.arena.len();
        self.cur_key = time + delay;
        self.cur_time = time;
        let a = &mut self.arena;
        a.push_str("{\"id\":\"");
        a.push_str(&self.prefix);
        push_u64(a, self.counter);
        a.push_str("\",\"type\":\"");
        a.push_str(event_type);
        a.push_str("\",\"time\":\"");
        push_time(a, time);
        a.push_str("\",\"source\":\"");
        push_escaped(a, source);
        a.push_str("\",\"channel\":\"");
        a.push_str(channel);
        a.push('"');
    }

    fn subject(&mut self, kind: &str, prefix: &str, n: u64) {
        self.arena.push_str(",\"subject\":\"");
        self.arena.push_str(kind);
        self.arena.push(':');
        self.arena.push_str(prefix);
        push_u64(&mut self.arena, n);
        self.arena.push('"');
    }

    fn subject_str(&mut self, kind: &str, id: &str) {
        self.arena.push_str(",\"subject\":\"");
        self.arena.push_str(kind);
        self.arena.push(':');
        push_escaped(&mut self.arena, id);
        self.arena.push('"');
    }

    fn data(&mut self) {
        self.arena.push_str(",\"data\":{");
        self.first = true;
    }

    fn end(&mut self) {
        self.arena.push_str("}}");
        self.index.push(Entry {
            key: self.cur_key,
            ord: self.counter,
            time: self.cur_time,
            start: self.cur_start,
            end: self.arena.len(),
        });
        self.counter += 1;
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.arena.push(',');
        }
        self.first = false;
        self.arena.push('"');
        self.arena.push_str(k);
        self.arena.push_str("\":");
    }

    fn s(&mut self, k: &str, v: &str) {
        self.key(k);
        self.arena.push('"');
        push_escaped(&mut self.arena, v);
        self.arena.push('"');
    }

    fn id(&mut self, k: &str, prefix: &str, n: u64) {
        self.key(k);
        self.arena.push('"');
        self.arena.push_str(prefix);
        push_u64(&mut self.arena, n);
        self.arena.push('"');
    }

    fn i(&mut self, k: &str, v: i64) {
        self.key(k);
        push_i64(&mut self.arena, v);
    }

    fn b(&mut self, k: &str, v: bool) {
        self.key(k);
        self.arena.push_str(if v { "true" } else { "false" });
    }

    fn t(&mut self, k: &str, micros: i64) {
        self.key(k);
        self.arena.push('"');
        push_time(&mut self.arena, micros);
        self.arena.push('"');
    }

    fn f6(&mut self, k: &str, v: f64) {
        self.key(k);
        push_fixed6(&mut self.arena, v);
    }

    fn f1(&mut self, k: &str, v: f64) {
        self.key(k);
        push_fixed1(&mut self.arena, v);
    }

    /// Sorts the buffered events and writes those that reach troth before `limit`
    /// (and happened before the world's end); keeps the rest for later.
    fn flush(&mut self, limit: i64, sink: &mut crate::TimedSink<'_>) -> std::io::Result<()> {
        self.index.sort_unstable_by_key(|e| (e.key, e.ord));
        let split = self.index.partition_point(|e| e.key < limit);
        for e in &self.index[..split] {
            if e.time < self.end {
                sink(&self.arena[e.start..e.end], Timestamp(e.key))?;
                self.written += 1;
            }
        }
        self.spare.clear();
        let mut kept = Vec::with_capacity(self.index.len() - split);
        for e in &self.index[split..] {
            let start = self.spare.len();
            self.spare.push_str(&self.arena[e.start..e.end]);
            kept.push(Entry {
                start,
                end: self.spare.len(),
                ..*e
            });
        }
        std::mem::swap(&mut self.arena, &mut self.spare);
        self.index.clear();
        self.index.extend(kept);
        Ok(())
    }
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
                _ => ("team", "refund", format!("issues {:.0}% of its promised refunds after the due date; healthy teams about 1%", f.strength * 100.0)),
            };
            let target = strip_target(&f.target, kind);
            let stage = if touchpoint == "stock" { "zmot" } else { "smot" };
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
    let start = w.start_time()?.micros();
    let end = start + i64::from(w.days) * DAY;
    let mut sim = Sim::new(w, start, end);
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
    fn new(w: &'w World, start: i64, end: i64) -> Sim<'w> {
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
            out: Out {
                arena: String::with_capacity(1 << 20),
                index: Vec::new(),
                spare: String::new(),
                prefix: format!("sim-{seed}-"),
                counter: 1,
                first: true,
                cur_start: 0,
                cur_key: 0,
                cur_time: 0,
                written: 0,
                end,
            },
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

    fn who(&mut self, who: Who) {
        let (i, email, phone) = match who {
            Who::Email(i) | Who::EmailAlt(i) => (i, Some(false), false),
            Who::Alt(i) => (i, Some(true), false),
            Who::Phone(i) => (i, None, true),
            Who::EmailPhone(i) => (i, Some(false), true),
        };
        self.out.arena.push_str(",\"customer\":{");
        if let Some(alt) = email {
            self.out.arena.push_str("\"email\":\"");
            self.push_email(i, alt);
            self.out.arena.push('"');
            if phone {
                self.out.arena.push(',');
            }
        }
        if phone {
            self.out.arena.push_str("\"phone\":\"");
            push_phone(&mut self.out.arena, i);
            self.out.arena.push('"');
        }
        self.out.arena.push('}');
    }

    fn names(&self, i: u32) -> (&'static str, &'static str, &'static str) {
        let h = hash(&[self.w.seed, 5, u64::from(i)]);
        let first = text::FIRST_NAMES[(h % text::FIRST_NAMES.len() as u64) as usize];
        let last = text::LAST_NAMES[((h >> 16) % text::LAST_NAMES.len() as u64) as usize];
        let domain = text::EMAIL_DOMAINS[((h >> 32) % text::EMAIL_DOMAINS.len() as u64) as usize];
        (first, last, domain)
    }

    fn push_email(&mut self, i: u32, alt: bool) {
        let (first, last, domain) = self.names(i);
        let a = &mut self.out.arena;
        for b in first.bytes() {
            a.push(b.to_ascii_lowercase() as char);
        }
        if alt {
            push_u64(a, u64::from(i));
            a.push_str("@work.");
        } else {
            a.push('.');
            for b in last.bytes() {
                a.push(b.to_ascii_lowercase() as char);
            }
            push_u64(a, u64::from(i));
            a.push('@');
        }
        a.push_str(domain);
    }

    /// The identity a web or app event uses for customer `c`.
    fn web_who(&mut self, c: u32) -> Who {
        let cust = self.custs[c as usize];
        if cust.flags & HAS_ALT != 0 && cust.flags & ALT_LINKED == 0 && self.rng.chance(0.4) {
            self.custs[c as usize].flags |= ALT_SEEN;
            Who::Alt(c)
        } else {
            Who::Email(c)
        }
    }

    /// The identity a phone call or store visit uses: the phone alone until the
    /// customer has been recognised on it, then phone and email together.
    fn phone_who(&mut self, c: u32, recognise: bool) -> Who {
        let cust = &mut self.custs[c as usize];
        if cust.flags & HAS_PHONE == 0 {
            return Who::Email(c);
        }
        if cust.flags & PHONE_LINKED != 0 {
            return Who::EmailPhone(c);
        }
        if recognise && cust.flags & PHONE_SEEN != 0 {
            cust.flags |= PHONE_LINKED;
            return Who::EmailPhone(c);
        }
        cust.flags |= PHONE_SEEN;
        Who::Phone(c)
    }

    fn identify(&mut self, c: u32, t: i64) {
        let cust = self.custs[c as usize];
        if cust.flags & IDENTIFIED != 0 {
            return;
        }
        self.custs[c as usize].flags |= IDENTIFIED;
        let h = hash(&[self.w.seed, 6, u64::from(c)]);
        let (tz, locale) = text::ZONES[(h % text::ZONES.len() as u64) as usize];
        let (first, last, _) = self.names(c);
        self.out.begin(t, 0, "customer.identified", "web", "web");
        self.who(Who::Email(c));
        self.out.data();
        self.out.key("traits");
        self.out.arena.push_str("{\"name\":\"");
        self.out.arena.push_str(first);
        self.out.arena.push(' ');
        self.out.arena.push_str(last);
        self.out.arena.push_str("\",\"timezone\":\"");
        self.out.arena.push_str(tz);
        self.out.arena.push_str("\",\"locale\":\"");
        self.out.arena.push_str(locale);
        self.out.arena.push_str("\"}");
        self.out.key("emails");
        self.out.arena.push('[');
        self.out.arena.push('"');
        self.push_email(c, false);
        self.out.arena.push_str("\"]");
        self.out.end();
        // Consent: marketing by email for most, service texts for those with a phone.
        let granted = self.rng.chance(0.6);
        self.consent(c, t + SEC, "email", "marketing", granted);
        if cust.flags & HAS_PHONE != 0 {
            self.consent(c, t + 2 * SEC, "sms", "service", true);
        }
    }

    fn consent(&mut self, c: u32, t: i64, channel: &str, purpose: &str, granted: bool) {
        self.out.begin(t, 0, "customer.consent_changed", "web", "web");
        self.who(Who::Email(c));
        self.out.data();
        self.out.s("channel", channel);
        self.out.s("purpose", purpose);
        self.out.b("granted", granted);
        self.out.end();
    }

    /// Links a second email to the account: the event names both, so troth merges
    /// the customer it created for the second email into this one.
    fn link_alt(&mut self, c: u32, t: i64) {
        self.custs[c as usize].flags |= ALT_LINKED;
        self.out.begin(t, 0, "customer.identified", "web", "web");
        self.who(Who::EmailAlt(c));
        self.out.data();
        self.out.key("emails");
        self.out.arena.push('[');
        self.out.arena.push('"');
        self.push_email(c, false);
        self.out.arena.push_str("\",\"");
        self.push_email(c, true);
        self.out.arena.push_str("\"]");
        self.out.end();
    }

    fn sessions(&mut self, day: u32, base: i64) {
        let p = self.w.rates.sessions_per_day;
        let n = self.w.customers;
        let mut i = self.rng.geometric(p);
        while i < n {
            let c = i as u32;
            if self.custs[c as usize].join_day <= day {
                let hour = self.rng.pick(SESSION_HOURS);
                let t = base + hour * HOUR + self.rng.range(0, HOUR - 1);
                self.session(day, base, c, t);
            }
            i = i.saturating_add(1).saturating_add(self.rng.geometric(p));
        }
    }

    fn session(&mut self, day: u32, base: i64, c: u32, mut t: i64) {
        self.identify(c, t - 5 * SEC);
        let who = self.web_who(c);
        let channel = if self.rng.chance(0.6) { "web" } else { "app" };
        let family = self.rng.index(FAMILIES.len());
        let sku = (family * 3 + self.rng.index(FAMILIES[family].variants.len())) as u16;
        let fam = &FAMILIES[family];

        self.out.begin(t, 0, "search.performed", channel, channel);
        self.who(who);
        self.out.data();
        let suffix = self.rng.pick(text::QUERY_SUFFIXES);
        self.out.key("query");
        self.out.arena.push('"');
        self.out.arena.push_str(fam.query);
        self.out.arena.push_str(suffix);
        self.out.arena.push('"');
        self.out.end();
        t += self.rng.range(10, 90) * SEC;
        if self.rng.chance(0.3) {
            let page = self.rng.pick(text::PAGES);
            self.page(t, who, channel, page, None);
            t += self.rng.range(10, 60) * SEC;
        }
        self.page(t, who, channel, "/p/", Some(sku));
        t += self.rng.range(15, 120) * SEC;
        if self.rng.chance(0.35) {
            self.out.begin(t, 0, "review.viewed", channel, channel);
            self.who(who);
            self.out.data();
            self.out.s("product", &self.skus[sku as usize].name);
            self.out.end();
            t += self.rng.range(20, 180) * SEC;
        }

        if self.rng.chance(self.w.rates.store_intent) {
            self.store_intent(day, base, c, t, who, channel, sku);
            return;
        }
        let ships_by = base + i64::from(t - base >= 14 * HOUR) * DAY + DAY + 20 * HOUR;
        self.out.begin(t, 0, "availability.shown", channel, channel);
        self.who(who);
        self.out.data();
        self.out.s("sku", &self.skus[sku as usize].name);
        self.out.s("claim", "ships_by");
        self.out.t("ships_by", ships_by);
        self.out.end();
        t += self.rng.range(10, 60) * SEC;
        if !self.rng.chance(self.w.rates.conversion) {
            return;
        }
        self.checkout(day, base, c, t, who, channel, sku);
    }

    fn page(&mut self, t: i64, who: Who, channel: &str, page: &str, sku: Option<u16>) {
        self.out.begin(t, 0, "page.viewed", channel, channel);
        self.who(who);
        self.out.data();
        self.out.key("page");
        self.out.arena.push('"');
        self.out.arena.push_str(page);
        if let Some(sku) = sku {
            self.out.arena.push_str(&self.skus[sku as usize].name);
        }
        self.out.arena.push('"');
        self.out.end();
    }

    #[allow(clippy::too_many_arguments)]
    fn store_intent(&mut self, day: u32, base: i64, c: u32, mut t: i64, who: Who, channel: &str, sku: u16) {
        let n_stores = self.stores.len();
        self.out.begin(t, 0, "store_locator.searched", channel, channel);
        self.who(who);
        self.out.data();
        self.out.key("query");
        self.out.arena.push('"');
        push_escaped(&mut self.out.arena, &self.w.city.name);
        self.out.arena.push(' ');
        push_u64(&mut self.out.arena, 1 + self.rng.below(20));
        self.out.arena.push('"');
        self.out.i("results", n_stores as i64);
        self.out.end();
        t += self.rng.range(10, 60) * SEC;
        let s = self.rng.index(n_stores);
        let in_stock = self.stores[s].site[sku as usize] > 0;
        self.out.begin(t, 0, "availability.shown", channel, channel);
        self.who(who);
        self.out.data();
        self.out.s("sku", &self.skus[sku as usize].name);
        self.out.s("store", &self.stores[s].id);
        if in_stock {
            self.out.s("claim", "in_stock");
        } else {
            self.out.s("claim", "ships_by");
            self.out.t("ships_by", base + 3 * DAY + 18 * HOUR);
        }
        self.out.end();
        if !in_stock || !self.rng.chance(self.w.rates.store_visit) {
            return;
        }
        // The visit: later that day, or the next morning.
        let t = (t + self.rng.range(HOUR, 5 * HOUR)).min(base + DAY + 11 * HOUR);
        let visitor = self.phone_who(c, false);
        let store = &self.stores[s];
        let found = store.shelf[sku as usize] > 0 && !self.rng.chance(0.01);
        self.out.begin(t, 0, "store.visited", "pos", "store");
        self.who(visitor);
        self.out.subject_str("store", &self.stores[s].id);
        self.out.data();
        self.out.s("store", &self.stores[s].id);
        self.out.s("sku", &self.skus[sku as usize].name);
        self.out.b("found", found);
        self.out.end();
        if found {
            let tyre = FAMILIES[self.skus[sku as usize].family].tyre;
            let qty = if tyre { 4 } else { 1 };
            let store = &mut self.stores[s];
            store.shelf[sku as usize] = (store.shelf[sku as usize] - qty).max(0);
            store.site[sku as usize] = (store.site[sku as usize] - qty).max(0);
            let buyer = self.phone_who(c, true);
            let order = self.next_order;
            self.next_order += 1;
            let price = self.skus[sku as usize].price;
            let t = t + self.rng.range(5, 25) * MIN;
            self.out.begin(t, 0, "order.placed", "pos", "store");
            self.who(buyer);
            self.out.subject("order", "o-", order);
            self.out.data();
            self.out.id("order", "o-", order);
            self.items(&[(sku, qty as u32)]);
            self.out.i("total", price * i64::from(qty));
            self.out.s("currency", &self.w.currency);
            self.out.s("delivery", "pickup");
            self.out.end();
            if tyre {
                self.give_asset(c);
            }
            self.custs[c as usize].mood = self.custs[c as usize].mood.saturating_add(1);
            if self.rng.chance(self.w.rates.survey * 0.5) {
                let wait = self.rng.range(HOUR, 5 * HOUR);
                self.survey(c, t + wait, "store-visit", "stock", 0.85, Some(("store", s as u64)));
            }
        } else {
            self.custs[c as usize].mood = self.custs[c as usize].mood.saturating_sub(2);
            let later = t + self.rng.range(20 * MIN, 4 * HOUR);
            if self.rng.chance(self.w.rates.survey) {
                self.survey(c, later, "store-visit", "stock", 0.15, Some(("store", s as u64)));
            }
            if self.rng.chance(self.w.rates.complaint * 0.5) {
                self.open_case(day, later + 10 * MIN, c, "out_of_stock", None, 0, true);
            }
            if self.rng.chance(self.w.rates.social * 4.0) {
                let brand = self.stores[s].name.clone();
                self.social(c, later + 5 * MIN, Topic::Stock, &brand);
            }
        }
    }

    /// A click-and-collect order after checkout: picked at the store, ready (on time
    /// or late, as the store goes), then collected by the customer.
    fn collect(&mut self, c: u32, who: Who, order: u64, s: usize, placed: i64, ready_by: i64) {
        let late = self.rng.chance(self.stores[s].late_pickup_rate);
        let ready = if late {
            ready_by + self.rng.range(20 * MIN, 4 * HOUR)
        } else {
            placed + self.rng.range(HOUR, (ready_by - placed).max(HOUR + MIN))
        }
        .min(ready_by.max(placed) + 6 * HOUR);
        let picked = placed + (ready - placed) / 2;
        self.out.begin(picked, 0, "order.picked", "pos", "store");
        self.who(who);
        self.out.subject("order", "o-", order);
        self.out.data();
        self.out.end();
        let store = self.stores[s].id.clone();
        let collected = ready + self.rng.range(30 * MIN, 30 * HOUR);
        for (time, ty) in [(ready, "order.ready"), (collected, "order.collected")] {
            self.out.begin(time, 0, ty, "pos", "store");
            self.who(who);
            self.out.subject("order", "o-", order);
            self.out.data();
            self.out.id("order", "o-", order);
            self.out.s("store", &store);
            self.out.end();
        }
        let mood = &mut self.custs[c as usize].mood;
        *mood = if late {
            mood.saturating_sub(1)
        } else {
            mood.saturating_add(1)
        };
    }

    fn items(&mut self, items: &[(u16, u32)]) {
        self.out.key("items");
        self.out.arena.push('[');
        for (n, &(sku, qty)) in items.iter().enumerate() {
            if n > 0 {
                self.out.arena.push(',');
            }
            self.out.arena.push_str("{\"sku\":\"");
            self.out.arena.push_str(&self.skus[sku as usize].name);
            self.out.arena.push_str("\",\"qty\":");
            push_u64(&mut self.out.arena, u64::from(qty));
            self.out.arena.push_str(",\"price\":");
            push_i64(&mut self.out.arena, self.skus[sku as usize].price);
            self.out.arena.push('}');
        }
        self.out.arena.push(']');
    }

    fn give_asset(&mut self, c: u32) {
        let cust = &mut self.custs[c as usize];
        if cust.flags & HAS_ASSET == 0 {
            cust.flags |= HAS_ASSET;
            cust.odometer = self.rng.range(8_000, 90_000) as u32;
            cust.km_per_day = self.rng.range(15, 90) as u8;
            self.tyre_owners.push(c);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn checkout(&mut self, day: u32, base: i64, c: u32, mut t: i64, who: Who, channel: &str, sku: u16) {
        let order = self.next_order;
        self.next_order += 1;
        let mut items = vec![(
            sku,
            if FAMILIES[self.skus[sku as usize].family].tyre {
                if self.rng.chance(0.7) { 4 } else { 2 }
            } else {
                1
            },
        )];
        while items.len() < 3 && self.rng.chance(0.3) {
            let other = self.rng.index(self.skus.len()) as u16;
            if items.iter().all(|&(s, _)| s != other) && !FAMILIES[self.skus[other as usize].family].tyre {
                items.push((other, 1));
            }
        }
        let total: i64 = items
            .iter()
            .map(|&(s, q)| self.skus[s as usize].price * i64::from(q))
            .sum();
        let tyre = items.iter().any(|&(s, _)| FAMILIES[self.skus[s as usize].family].tyre);

        self.out.begin(t, 0, "checkout.started", channel, channel);
        self.who(who);
        self.out.subject("order", "o-", order);
        self.out.data();
        self.out.end();
        t += self.rng.range(30, 240) * SEC;
        let mut method = self.rng.pick(text::PAYMENT_METHODS);
        let mut failed = false;
        if self.rng.chance(self.w.rates.payment_failure) {
            failed = true;
            let reason = self.rng.pick(text::PAYMENT_FAILURES);
            self.payment(t, who, channel, order, "payment.failed", method, total, Some(reason));
            self.custs[c as usize].mood = self.custs[c as usize].mood.saturating_sub(1);
            t += self.rng.range(30, 300) * SEC;
            if self.rng.chance(0.25) {
                // Gave up; some call billing about it.
                if self.rng.chance(0.3) {
                    let wait = self.rng.range(10 * MIN, 3 * HOUR);
                    self.open_case(day, t + wait, c, "payment", None, 0, true);
                }
                if self.rng.chance(self.w.rates.survey) {
                    self.survey(c, t + 30 * MIN, "checkout", "pay", 0.1, None);
                }
                return;
            }
            if self.rng.chance(0.5) {
                method = self.rng.pick(text::PAYMENT_METHODS);
            }
        }
        self.payment(t, who, channel, order, "payment.succeeded", method, total, None);
        t += self.rng.range(1, 5) * SEC;
        let delivery_day = day + 1 + u32::from(t - base >= 14 * HOUR);
        let safe_place = self.rng.chance(0.15);
        let dbase = self.start + i64::from(delivery_day) * DAY;
        // Click and collect: ready at a store by a time promised at checkout.
        let pickup = (!self.stores.is_empty() && self.rng.chance(self.w.rates.pickup)).then(|| {
            (
                self.rng.index(self.stores.len()),
                t + self.rng.range(2 * HOUR, 5 * HOUR),
            )
        });
        self.out.begin(t, 0, "order.placed", channel, channel);
        self.who(who);
        self.out.subject("order", "o-", order);
        self.out.data();
        self.out.id("order", "o-", order);
        self.items(&items);
        self.out.i("total", total);
        self.out.s("currency", &self.w.currency);
        match pickup {
            Some((s, ready_by)) => {
                self.out.s("delivery", "pickup");
                self.out.t("promised_to", ready_by);
                self.out.s("store", &self.stores[s].id);
            }
            None => {
                self.out.s("delivery", if safe_place { "safe_place" } else { "home" });
                self.out.t("promised_from", dbase + 8 * HOUR);
                self.out.t("promised_to", dbase + 20 * HOUR);
            }
        }
        self.out.end();
        if matches!(who, Who::Alt(_)) && self.rng.chance(0.5) {
            let minutes = self.rng.range(1, 10);
            self.link_alt(c, t + minutes * MIN);
        }
        if self.rng.chance(self.w.rates.survey * 0.5) {
            let (touchpoint, q) = if failed {
                ("pay", 0.35)
            } else if self.rng.chance(0.5) {
                ("pay", 0.85)
            } else {
                ("order", 0.85)
            };
            let wait = self.rng.range(MIN, 20 * MIN);
            self.survey(c, t + wait, "checkout", touchpoint, q, None);
        }
        if self.rng.chance(self.w.rates.question) {
            let wait = self.rng.range(HOUR, 6 * HOUR);
            self.open_case(day, t + wait, c, "invoice", Some(order), 0, true);
        }

        if let Some((s, ready_by)) = pickup {
            self.collect(c, who, order, s, t, ready_by);
            return;
        }

        // Fulfilment.
        let picked = t + self.rng.range(HOUR, 5 * HOUR);
        let packed = picked + self.rng.range(10 * MIN, 60 * MIN);
        let created = packed + self.rng.range(5 * MIN, 20 * MIN);
        let handed = (base + 18 * HOUR + self.rng.range(0, HOUR)).max(created + self.rng.range(30 * MIN, 90 * MIN));
        for (time, ty) in [(picked, "order.picked"), (packed, "order.packed")] {
            self.out.begin(time, 0, ty, "wms", "other");
            self.who(who);
            self.out.subject("order", "o-", order);
            self.out.data();
            self.out.end();
        }
        let x = self.rng.f64();
        let carrier = self
            .carriers
            .iter()
            .position(|cs| x < cs.cumulative_share)
            .unwrap_or(self.carriers.len() - 1);
        let ship = self.next_ship;
        self.next_ship += 1;
        self.out.begin(created, 0, "shipment.created", "oms", "other");
        self.who(who);
        self.out.subject("shipment", "s-", ship);
        self.out.data();
        self.out.id("shipment", "s-", ship);
        self.out.id("order", "o-", order);
        self.out.s("carrier", &self.carriers[carrier].name);
        self.out
            .s("service", if self.rng.chance(0.2) { "express" } else { "standard" });
        self.out.end();
        let delay = self.carriers[carrier].delay;
        self.out.begin(
            handed,
            delay,
            "shipment.handed_over",
            &self.carriers[carrier].name,
            "courier",
        );
        self.who(who);
        self.out.subject("shipment", "s-", ship);
        self.out.data();
        self.out.end();
        let views = self.rng.below(3);
        for _ in 0..views {
            let at = created + self.rng.range(10 * MIN, 6 * HOUR);
            self.tracking_view(c, at, ship);
        }
        let lost = self.rng.chance(self.carriers[carrier].lost_rate);
        let parcel = Parcel {
            ship,
            order,
            cust: c,
            carrier: carrier as u8,
            attempt: 1,
            safe_place,
            sku: items[0].0,
            tyre,
            value: total,
            waited: 0,
            lost,
        };
        self.schedule(delivery_day, Task::Deliver(parcel));
    }

    #[allow(clippy::too_many_arguments)]
    fn payment(
        &mut self,
        t: i64,
        who: Who,
        channel: &str,
        order: u64,
        ty: &str,
        method: &str,
        amount: i64,
        reason: Option<&str>,
    ) {
        self.out.begin(t, 0, ty, "psp", channel);
        self.who(who);
        self.out.subject("order", "o-", order);
        self.out.data();
        self.out.s("method", method);
        self.out.i("amount", amount);
        self.out.s("currency", &self.w.currency);
        if let Some(reason) = reason {
            self.out.s("reason", reason);
        }
        self.out.end();
    }

    fn tracking_view(&mut self, c: u32, t: i64, ship: u64) {
        let who = Who::Email(c);
        let channel = if self.rng.chance(0.55) { "web" } else { "app" };
        self.out.begin(t, 0, "tracking.viewed", channel, channel);
        self.who(who);
        self.out.subject("shipment", "s-", ship);
        self.out.data();
        self.out.id("shipment", "s-", ship);
        self.out.end();
    }

    /// A survey answer whose scores follow `quality` (0 awful … 1 delighted).
    fn survey(&mut self, c: u32, t: i64, survey: &str, touchpoint: &str, quality: f64, subject: Option<(&str, u64)>) {
        let q = (quality + (self.rng.f64() - 0.5) * 0.3).clamp(0.0, 1.0);
        self.out.begin(t, 0, "survey.answered", "survey", "email");
        self.who(Who::Email(c));
        match subject {
            Some(("store", s)) => {
                let id = self.stores[s as usize].id.clone();
                self.out.subject_str("store", &id);
            }
            Some(("shipment", n)) => self.out.subject("shipment", "s-", n),
            Some(("case", n)) => self.out.subject("case", "k-", n),
            Some(("order", n)) => self.out.subject("order", "o-", n),
            _ => {}
        }
        self.out.data();
        self.out.s("survey", survey);
        self.out.s("touchpoint", touchpoint);
        match touchpoint {
            "pay" | "tracking_page" | "callback" | "complaint" | "returns" => {
                // CES 2.0: "it was easy to handle", 1 strongly disagree … 7 strongly agree.
                self.out.i("ces", (1.0 + q * 6.0).round() as i64);
                self.out.i("csat", (1.0 + q * 4.0).round() as i64);
            }
            _ => {
                self.out.i("nps", (q * 10.0).round() as i64);
                self.out.i("csat", (1.0 + q * 4.0).round() as i64);
            }
        }
        self.out.end();
    }

    fn social(&mut self, c: u32, t: i64, topic: Topic, brand: &str) {
        text::compose(&mut self.rng, topic, brand, &mut self.text);
        let network = self.rng.pick(text::SOCIAL_NETWORKS);
        let reach = self.rng.range(20, 5_000);
        self.out.begin(t, 0, "social.posted", network, "social");
        self.who(Who::Email(c));
        self.out.data();
        self.out.s("text", &self.text);
        self.out.s("network", network);
        self.out.i("reach", reach);
        self.out.end();
    }

    fn review(&mut self, c: u32, t: i64, topic: Topic, rating: i64, sku: u16, brand: &str) {
        text::compose(&mut self.rng, topic, brand, &mut self.text);
        let site = self.rng.pick(text::REVIEW_SITES);
        self.out.begin(t, 0, "review.posted", site, "web");
        self.who(Who::Email(c));
        self.out.data();
        self.out.i("rating", rating.clamp(1, 5));
        self.out.s("text", &self.text);
        self.out.s("site", site);
        self.out.s("product", &self.skus[sku as usize].name);
        self.out.end();
    }

    fn usage(&mut self, day: u32, base: i64) {
        for n in 0..self.tyre_owners.len() {
            let c = self.tyre_owners[n];
            if (u64::from(day) + u64::from(c)) % 7 != 0 {
                continue;
            }
            let cust = &mut self.custs[c as usize];
            cust.odometer += u32::from(cust.km_per_day) * 7 + self.rng.below(40) as u32;
            let value = cust.odometer;
            let t = base + self.rng.range(19 * HOUR, 22 * HOUR);
            self.out.begin(t, 0, "usage.reported", "app", "app");
            self.who(Who::Email(c));
            self.out.data();
            self.out.id("asset", "car-", u64::from(c));
            self.out.s("metric", "odometer_km");
            self.out.i("value", i64::from(value));
            self.out.end();
            if self.rng.chance(self.w.rates.survey * 0.1) {
                self.survey(c, t + HOUR, "tyres-in-use", "use", 0.75, None);
            }
        }
    }

    // ---------------------------------------------------------------- stores

    fn inventory(&mut self, day: u32, base: i64) {
        for s in 0..self.stores.len() {
            for k in 0..self.skus.len() {
                let (receive, delta, reason) = if day == 0 {
                    (true, self.rng.range(4, 20) as i32, "opening_stock")
                } else {
                    let low = self.stores[s].site[k] < 3;
                    (
                        self.rng.chance(if low { 0.5 } else { 0.15 }),
                        self.rng.range(3, 12) as i32,
                        "delivery",
                    )
                };
                let store = &mut self.stores[s];
                // Walk-in sales, recorded at the till, lower both.
                if day > 0 {
                    let sold = (self.rng.below(3) as i32).min(store.shelf[k]);
                    store.shelf[k] -= sold;
                    store.site[k] -= sold.min(store.site[k]);
                }
                if receive {
                    store.site[k] += delta;
                    if !store.phantom[k] {
                        store.shelf[k] += delta;
                    }
                    let t = base + self.rng.range(5 * HOUR, 8 * HOUR);
                    self.inv_event(t, s, k, "inventory.received", i64::from(delta), Some(reason));
                }
                if day > 0 && self.rng.chance(1.0 / 14.0) {
                    let t = base + self.rng.range(21 * HOUR, 22 * HOUR);
                    let store = &mut self.stores[s];
                    let (shelf, site) = (store.shelf[k], store.site[k]);
                    store.site[k] = shelf;
                    self.inv_event(t, s, k, "inventory.counted", i64::from(shelf), None);
                    if shelf != site {
                        self.inv_event(
                            t + 30 * SEC,
                            s,
                            k,
                            "inventory.adjusted",
                            i64::from(shelf - site),
                            Some("count_correction"),
                        );
                    }
                }
            }
        }
    }

    fn inv_event(&mut self, t: i64, s: usize, k: usize, ty: &str, value: i64, reason: Option<&str>) {
        self.out.begin(t, 0, ty, "wms", "store");
        self.out.subject_str("store", &self.stores[s].id);
        self.out.data();
        self.out.s("store", &self.stores[s].id);
        self.out.s("sku", &self.skus[k].name);
        if ty == "inventory.counted" {
            self.out.i("on_hand", value);
        } else {
            self.out.i("delta", value);
        }
        if let Some(reason) = reason {
            self.out.s("reason", reason);
        }
        self.out.end();
    }

    // ---------------------------------------------------------------- deliveries

    /// Where customer `c` lives, in metres east and north of the centre, on the street grid.
    fn home(&self, c: u32) -> (f64, f64) {
        let h = hash(&[self.w.seed, 9, u64::from(c)]);
        let r = self.w.city.radius_km * 1000.0 * unit(h).sqrt();
        let a = unit(mix2(h)) * 2.0 * PI;
        (snap(r * a.cos()), snap(r * a.sin()))
    }

    fn deliveries(&mut self, day: u32, base: i64, parcels: Vec<Parcel>) {
        for carrier in 0..self.carriers.len() {
            let mut mine: Vec<(f64, Parcel)> = parcels
                .iter()
                .filter(|p| usize::from(p.carrier) == carrier)
                .map(|p| {
                    let (x, y) = self.home(p.cust);
                    (y.atan2(x), *p)
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            mine.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.ship.cmp(&b.1.ship)));
            let mut route_no = 0u64;
            let mut rest: &[(f64, Parcel)] = &mine;
            while !rest.is_empty() {
                let size = (self.rng.range(10, 30) as usize).min(rest.len());
                // Avoid a tiny last route: fold it into this one.
                let size = if rest.len() - size < 10 && rest.len() <= 40 {
                    rest.len()
                } else {
                    size
                };
                let (route, tail) = rest.split_at(size);
                rest = tail;
                let driver = (carrier as u64 + 1) * 1000 + route_no;
                route_no += 1;
                let stops: Vec<Parcel> = route.iter().map(|(_, p)| *p).collect();
                self.route(day, base, carrier, driver, stops);
            }
        }
    }

    fn route(&mut self, day: u32, base: i64, carrier: usize, driver: u64, stops: Vec<Parcel>) {
        let cs = &self.carriers[carrier];
        let (delay, miss_rate, depot) = (cs.delay, cs.miss_rate, cs.depot);
        let source = cs.name.clone();
        let slow = delay > 0;
        // Visit order: nearest neighbour from the depot.
        let mut left: Vec<(Parcel, (f64, f64))> = stops.iter().map(|p| (*p, self.home(p.cust))).collect();
        let mut planned = Vec::with_capacity(left.len());
        let mut pos = depot;
        while !left.is_empty() {
            let (best, _) = left
                .iter()
                .enumerate()
                .map(|(i, (_, at))| (i, manhattan(pos, *at)))
                .fold((0, f64::MAX), |acc, x| if x.1 < acc.1 { x } else { acc });
            let (p, at) = left.swap_remove(best);
            pos = at;
            planned.push((p, at));
        }
        let depart = base + 8 * HOUR + self.rng.range(0, 50 * MIN);
        let mut t = depart;
        pos = depot;
        struct Stop {
            p: Parcel,
            at: (f64, f64),
            eta: i64,
            win: (i64, i64),
            outcome: Outcome,
        }
        let mut route = Vec::with_capacity(planned.len());
        let window_set_at = base + 6 * HOUR + 30 * MIN + self.rng.range(0, 20 * MIN);
        for (i, (p, at)) in planned.into_iter().enumerate() {
            t += ((manhattan(pos, at) / 6.0 + 60.0) * SEC as f64) as i64;
            pos = at;
            let eta = t;
            t += 4 * MIN;
            let ws = (eta - self.rng.range(10, 25) * MIN) / MIN * MIN;
            let win = (ws, ws + HOUR);
            let wt = window_set_at + i as i64 * SEC;
            self.out.begin(wt, delay, "shipment.window_set", &source, "courier");
            self.who(Who::Email(p.cust));
            self.out.subject("shipment", "s-", p.ship);
            self.out.data();
            self.out.t("window_start", win.0);
            self.out.t("window_end", win.1);
            self.out.id("driver", "d-", driver);
            self.out.end();
            if self.rng.chance(self.w.rates.customer_reschedule) {
                // The customer picks another day; the parcel leaves this route.
                let at = wt + delay + self.rng.range(5 * MIN, 40 * MIN);
                let next = base + DAY;
                self.out.begin(at, 0, "shipment.rescheduled", "web", "web");
                self.who(Who::Email(p.cust));
                self.out.subject("shipment", "s-", p.ship);
                self.out.data();
                self.out.t("window_start", next + 17 * HOUR);
                self.out.t("window_end", next + 20 * HOUR);
                self.out.s("by", "customer");
                self.out.end();
                self.schedule(day + 1, Task::Deliver(p));
                continue;
            }
            let outcome = if self.rng.chance(miss_rate) {
                if p.attempt == 1 && self.rng.chance(0.35) {
                    Outcome::Failed
                } else {
                    Outcome::Late
                }
            } else {
                Outcome::OnTime
            };
            route.push(Stop {
                p,
                at,
                eta,
                win,
                outcome,
            });
        }
        for (i, s) in route.iter().enumerate() {
            self.out.begin(
                depart + i as i64 * 1_000,
                delay,
                "shipment.out_for_delivery",
                &source,
                "courier",
            );
            self.who(Who::Email(s.p.cust));
            self.out.subject("shipment", "s-", s.p.ship);
            self.out.data();
            self.out.id("driver", "d-", driver);
            self.out.i("stops_before", i as i64);
            // The address's position, as a carrier's feed gives it: the customer's
            // tracking map marks their home.
            let (lat, lon) = self.latlon(s.at);
            self.out.f6("lat", lat);
            self.out.f6("lon", lon);
            self.out.end();
        }
        // Drive: on-time and failed stops in plan order, the late ones at the end.
        let mut visit: Vec<usize> = (0..route.len())
            .filter(|&i| route[i].outcome != Outcome::Late)
            .collect();
        visit.extend((0..route.len()).filter(|&i| route[i].outcome == Outcome::Late));
        let mut t = depart;
        let mut pos = depot;
        // Until the first leg, the van stands at the depot.
        let mut parked_since = depart;
        for i in visit {
            let s = &route[i];
            let (p, at, eta, win, mut outcome) = (s.p, s.at, s.eta, s.win, s.outcome);
            let speed = 5.5 + self.rng.f64() * 2.5;
            let drive = ((manhattan(pos, at) / speed) * SEC as f64) as i64;
            let target = match outcome {
                Outcome::Late => win.1 + self.rng.range(5 * MIN, 100 * MIN),
                _ => eta + self.rng.range(-8 * MIN, 12 * MIN),
            };
            let arrival = target.max(t + drive);
            if arrival > win.1 && outcome == Outcome::OnTime {
                outcome = Outcome::Late;
            }
            let leg_start = arrival - drive;
            self.park(driver, &source, delay, parked_since, leg_start, pos);
            self.drive(driver, &source, delay, leg_start, arrival, pos, at, speed);
            pos = at;
            self.out
                .begin(leg_start, delay, "shipment.arriving", &source, "courier");
            self.who(Who::Email(p.cust));
            self.out.subject("shipment", "s-", p.ship);
            self.out.data();
            self.out.end();
            let done = arrival + self.rng.range(30 * SEC, 3 * MIN);
            // At the door until the outcome, and on until the next leg begins.
            parked_since = arrival;
            let (lat, lon) = self.latlon(at);
            if outcome == Outcome::Failed {
                self.out
                    .begin(done, delay, "shipment.attempt_failed", &source, "courier");
                self.who(Who::Email(p.cust));
                self.out.subject("shipment", "s-", p.ship);
                self.out.data();
                self.out.s("reason", self.rng.pick(text::FAIL_REASONS));
                self.out.end();
                let next = base + DAY;
                self.out
                    .begin(done + 2 * MIN, delay, "shipment.rescheduled", &source, "courier");
                self.who(Who::Email(p.cust));
                self.out.subject("shipment", "s-", p.ship);
                self.out.data();
                self.out.t("window_start", next + 8 * HOUR);
                self.out.t("window_end", next + 20 * HOUR);
                self.out.s("by", "carrier");
                self.out.end();
                self.schedule(
                    day + 1,
                    Task::Deliver(Parcel {
                        attempt: p.attempt + 1,
                        ..p
                    }),
                );
            } else {
                let (kind, photo) = if p.safe_place {
                    ("safe_place", true)
                } else {
                    match self.rng.below(10) {
                        0..=3 => ("photo", true),
                        4..=7 => ("handed", false),
                        _ => ("signature", false),
                    }
                };
                self.out.begin(done, delay, "shipment.delivered", &source, "courier");
                self.who(Who::Email(p.cust));
                self.out.subject("shipment", "s-", p.ship);
                self.out.data();
                self.out.key("proof");
                self.out.arena.push_str("{\"kind\":\"");
                self.out.arena.push_str(kind);
                self.out.arena.push('"');
                if photo {
                    self.out.arena.push_str(",\"photo\":\"pod/s-");
                    push_u64(&mut self.out.arena, p.ship);
                    self.out.arena.push_str(".jpg\"");
                }
                self.out.arena.push('}');
                self.out.f6("lat", lat + (self.rng.f64() - 0.5) * 0.0001);
                self.out.f6("lon", lon + (self.rng.f64() - 0.5) * 0.0001);
                self.out.end();
            }
            t = done + self.rng.range(MIN, 3 * MIN);

            // The customer watches the tracking page: more when it lags, and ever
            // more often once the window has passed.
            let mut views = 1 + self.rng.below(3);
            if slow {
                views = views * 3 + 2;
            }
            let seen_from = window_set_at + delay;
            for _ in 0..views {
                let at = self.rng.range(seen_from, arrival.max(seen_from + MIN));
                self.tracking_view(p.cust, at, p.ship);
            }
            if arrival > win.1 {
                let mut at = win.1 + self.rng.range(5 * MIN, 20 * MIN);
                while at < arrival {
                    self.tracking_view(p.cust, at, p.ship);
                    at += self.rng.range(8 * MIN, 25 * MIN);
                }
            }
            if outcome != Outcome::Failed && (photo_view(&mut self.rng) || slow) {
                let wait = self.rng.range(5 * MIN, 2 * HOUR);
                self.tracking_view(p.cust, done + delay + wait, p.ship);
            }
            self.after_delivery(day, done + delay, p, outcome, carrier, slow);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn drive(
        &mut self,
        driver: u64,
        source: &str,
        delay: i64,
        from_t: i64,
        to_t: i64,
        from: (f64, f64),
        to: (f64, f64),
        speed: f64,
    ) {
        // A staircase along the street grid: alternate blocks east-west and north-south.
        self.path.clear();
        let (mut x, mut y) = from;
        let mut along_x = true;
        let block = 150.0;
        while (x - to.0).abs() > 0.5 || (y - to.1).abs() > 0.5 {
            let (dx, dy) = if along_x && (x - to.0).abs() > 0.5 {
                ((to.0 - x).clamp(-block, block), 0.0)
            } else if (y - to.1).abs() > 0.5 {
                (0.0, (to.1 - y).clamp(-block, block))
            } else {
                ((to.0 - x).clamp(-block, block), 0.0)
            };
            let len = dx.abs() + dy.abs();
            self.path.push((x, y, dx, dy, len));
            x += dx;
            y += dy;
            along_x = !along_x;
        }
        let mut seg = 0;
        let mut seg_start = 0.0;
        let mut t = from_t;
        while t < to_t && !self.path.is_empty() {
            let s = (t - from_t) as f64 / SEC as f64 * speed;
            while seg + 1 < self.path.len() && s > seg_start + self.path[seg].4 {
                seg_start += self.path[seg].4;
                seg += 1;
            }
            let (x0, y0, dx, dy, len) = self.path[seg];
            let f = ((s - seg_start) / len).clamp(0.0, 1.0);
            let (lat, lon) = self.latlon((x0 + dx * f, y0 + dy * f));
            let heading = if dx > 0.0 {
                90.0
            } else if dx < 0.0 {
                270.0
            } else if dy > 0.0 {
                0.0
            } else {
                180.0
            };
            let kmh = (speed * 3.6 + (self.rng.f64() - 0.5) * 6.0).max(0.0);
            let accuracy = 3.0 + self.rng.f64() * 9.0;
            self.out.begin(t, delay, "courier.position", source, "courier");
            self.out.subject("driver", "d-", driver);
            self.out.data();
            self.out.f6("lat", lat);
            self.out.f6("lon", lon);
            self.out.f1("speed_kmh", kmh);
            self.out.f1("heading", heading);
            self.out.f1("accuracy_m", accuracy);
            self.out.end();
            t += 10 * SEC;
        }
    }

    /// The phone's reports while the van stands at `at` from `from_t` until `to_t`,
    /// every `parked_report_s` (none when that is 0: the random stream is then
    /// untouched, so worlds without it keep their bytes).
    fn park(&mut self, driver: u64, source: &str, delay: i64, from_t: i64, to_t: i64, at: (f64, f64)) {
        let every = i64::from(self.w.parked_report_s) * SEC;
        if every == 0 {
            return;
        }
        let (lat, lon) = self.latlon(at);
        // From the moment it stops: a stand right after another (or after a drive
        // of no distance) keeps the reports no further apart than `every`.
        let mut t = from_t;
        while t < to_t {
            let accuracy = 3.0 + self.rng.f64() * 9.0;
            self.out.begin(t, delay, "courier.position", source, "courier");
            self.out.subject("driver", "d-", driver);
            self.out.data();
            self.out.f6("lat", lat);
            self.out.f6("lon", lon);
            self.out.f1("speed_kmh", 0.0);
            self.out.f1("accuracy_m", accuracy);
            self.out.end();
            t += every;
        }
    }

    fn latlon(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (self.w.city.lat + y / 111_320.0, self.w.city.lon + x / self.m_per_lon)
    }

    fn after_delivery(&mut self, day: u32, t: i64, p: Parcel, outcome: Outcome, carrier: usize, slow: bool) {
        let c = p.cust;
        let brand = self.carriers[carrier].name.clone();
        let quality = match outcome {
            Outcome::OnTime => 0.85,
            Outcome::Late => 0.3,
            Outcome::Failed => 0.15,
        };
        let mood = &mut self.custs[c as usize].mood;
        *mood = if outcome == Outcome::OnTime {
            mood.saturating_add(1)
        } else {
            mood.saturating_sub(2)
        };
        let r = self.w.rates.clone();
        let later = t + self.rng.range(20 * MIN, 5 * HOUR);
        if self.rng.chance(r.survey) {
            let touchpoint = if outcome != Outcome::OnTime || self.rng.chance(0.5) {
                "delivery_window"
            } else {
                "delivery"
            };
            self.survey(
                c,
                later,
                "post-delivery",
                touchpoint,
                quality,
                Some(("shipment", p.ship)),
            );
        }
        if self.rng.chance(r.survey * 0.3) {
            self.survey(
                c,
                later + 2 * MIN,
                "tracking",
                "tracking_page",
                if slow { 0.25 } else { 0.8 },
                Some(("shipment", p.ship)),
            );
        }
        let bad = outcome != Outcome::OnTime;
        if outcome != Outcome::Failed && self.rng.chance(r.review) {
            let (topic, rating) = if bad {
                (Topic::Late, self.rng.range(1, 2))
            } else {
                (self.rng.pick(&[Topic::Product, Topic::Delivery]), self.rng.range(4, 5))
            };
            let wait = self.rng.range(HOUR, 20 * HOUR);
            self.review(c, later + wait, topic, rating, p.sku, &brand);
        }
        if self.rng.chance(if bad { r.social * 4.0 } else { r.social }) {
            let topic = match outcome {
                Outcome::OnTime => Topic::Delivery,
                Outcome::Late => Topic::Late,
                Outcome::Failed => Topic::Failed,
            };
            let wait = self.rng.range(0, 2 * HOUR);
            self.social(c, later + wait, topic, &brand);
        }
        if bad && self.rng.chance(r.complaint) {
            let category = if outcome == Outcome::Late {
                "late_delivery"
            } else {
                "failed_delivery"
            };
            let wait = self.rng.range(0, HOUR);
            self.open_case(day, later + wait, c, category, Some(p.order), p.value, true);
        }
        if bad && self.rng.chance(0.05) {
            self.consent(c, later + 3 * HOUR, "email", "marketing", false);
        }
        if outcome != Outcome::Failed {
            if p.tyre {
                self.give_asset(c);
            }
            if self.rng.chance(r.returns) {
                self.schedule(day + 2, Task::Return(p));
            } else if self.rng.chance(0.01) {
                let wait = self.rng.range(HOUR, 6 * HOUR);
                self.open_case(day, later + wait, c, "damaged", Some(p.order), p.value, true);
            }
        }
    }

    /// A lost parcel: the customer waits and checks, then the carrier declares it lost.
    fn limbo(&mut self, day: u32, base: i64, p: Parcel) {
        let carrier = usize::from(p.carrier);
        let delay = self.carriers[carrier].delay;
        let views = 2 + self.rng.below(4);
        for _ in 0..views {
            let at = base + self.rng.range(8 * HOUR, 22 * HOUR);
            self.tracking_view(p.cust, at, p.ship);
        }
        if p.waited == 1 && self.rng.chance(self.w.rates.complaint) {
            let wait = self.rng.range(10 * HOUR, 18 * HOUR);
            self.open_case(day, base + wait, p.cust, "late_delivery", Some(p.order), 0, true);
        }
        if p.waited < 2 {
            self.schedule(
                day + 1,
                Task::Deliver(Parcel {
                    waited: p.waited + 1,
                    ..p
                }),
            );
            return;
        }
        let t = base + self.rng.range(10 * HOUR, 16 * HOUR);
        let source = self.carriers[carrier].name.clone();
        self.out.begin(t, delay, "shipment.lost", &source, "courier");
        self.who(Who::Email(p.cust));
        self.out.subject("shipment", "s-", p.ship);
        self.out.data();
        self.out.end();
        let mood = &mut self.custs[p.cust as usize].mood;
        *mood = mood.saturating_sub(4);
        let later = t + delay + self.rng.range(HOUR, 5 * HOUR);
        if self.rng.chance(0.85) {
            self.open_case(day, later, p.cust, "lost_parcel", Some(p.order), p.value, true);
        }
        if self.rng.chance(self.w.rates.social * 6.0) {
            self.social(p.cust, later + 30 * MIN, Topic::Lost, &source);
        }
        if self.rng.chance(self.w.rates.survey) {
            self.survey(
                p.cust,
                later + HOUR,
                "post-delivery",
                "delivery",
                0.0,
                Some(("shipment", p.ship)),
            );
        }
    }

    fn return_parcel(&mut self, base: i64, p: Parcel) {
        let t = base + self.rng.range(9 * HOUR, 21 * HOUR);
        self.out.begin(t, 0, "return.requested", "web", "web");
        self.who(Who::Email(p.cust));
        self.out.subject("order", "o-", p.order);
        self.out.data();
        self.out.end();
        let day = self.day_of(t);
        self.open_case(day, t + MIN, p.cust, "return", Some(p.order), p.value, false);
    }

    // ---------------------------------------------------------------- service

    /// Opens a case and plays it out: transfer, hold, callback promised and kept or
    /// not, refund promised (issued on a later day), resolution and a survey.
    #[allow(clippy::too_many_arguments)]
    fn open_case(&mut self, day: u32, t: i64, c: u32, category: &str, order: Option<u64>, value: i64, phone_ok: bool) {
        let _ = day;
        let case = self.next_case;
        self.next_case += 1;
        let cat = CASE_CATEGORIES.iter().position(|x| *x == category).unwrap_or(0);
        let owner = usize::from(self.owner[cat]);
        let channel = if phone_ok && self.rng.chance(0.55) {
            "phone"
        } else if self.rng.chance(0.6) {
            "chat"
        } else {
            "email"
        };
        let who = if channel == "phone" {
            self.phone_who(c, false)
        } else {
            Who::Email(c)
        };
        let first = if owner != 0 && self.rng.chance(0.35) { 0 } else { owner };
        let source = "contact-centre";
        self.out.begin(t, 0, "case.opened", source, channel);
        self.who(who);
        self.out.subject("case", "k-", case);
        self.out.data();
        self.out.id("case", "k-", case);
        self.out.s("category", category);
        self.out.s("team", &self.teams[first].name);
        if let Some(order) = order {
            self.out.id("order", "o-", order);
        }
        self.out.end();
        let mut t = t + self.rng.range(MIN, 6 * MIN);
        let mut held = false;
        if first != owner {
            self.out.begin(t, 0, "case.transferred", source, channel);
            self.who(who);
            self.out.subject("case", "k-", case);
            self.out.data();
            self.out.s("from_team", &self.teams[first].name);
            self.out.s("to_team", &self.teams[owner].name);
            self.out.end();
            t += self.rng.range(MIN, 5 * MIN);
        }
        if channel == "phone" && self.rng.chance(if first != owner { 0.7 } else { 0.3 }) {
            held = true;
            let seconds = self.rng.range(30, 900);
            t += seconds * SEC;
            self.out.begin(t, 0, "case.held", source, channel);
            self.who(who);
            self.out.subject("case", "k-", case);
            self.out.data();
            self.out.i("seconds", seconds);
            self.out.end();
        }
        let team = &self.teams[owner];
        let (cb_miss, refund_late) = (team.callback_miss_rate, team.refund_late_rate);
        let mut quality: f64 = if held || first != owner { 0.55 } else { 0.75 };
        let mut callback_touch = false;
        let mut resolved_at = t + self.rng.range(5 * MIN, 40 * MIN);
        let mut resolvable = true;
        if channel != "email" && self.rng.chance(0.65) {
            callback_touch = true;
            let due = t + self.rng.range(1, 4) * HOUR;
            self.out.begin(t + 30 * SEC, 0, "callback.promised", source, channel);
            self.who(who);
            self.out.subject("case", "k-", case);
            self.out.data();
            self.out.t("due", due);
            self.out.end();
            let made = if self.rng.chance(cb_miss) {
                quality -= 0.4;
                if self.rng.chance(0.6) {
                    Some(due + self.rng.range(30 * MIN, 6 * HOUR))
                } else {
                    None
                }
            } else {
                Some((due - self.rng.range(0, 50 * MIN)).max(t + 5 * MIN))
            };
            match made {
                Some(at) => {
                    let callee = self.phone_who(c, true);
                    self.out.begin(at, 0, "callback.made", source, "phone");
                    self.who(callee);
                    self.out.subject("case", "k-", case);
                    self.out.data();
                    self.out.end();
                    resolved_at = at + self.rng.range(5 * MIN, 30 * MIN);
                }
                None => {
                    resolvable = false;
                    if self.rng.chance(self.w.rates.social * 5.0) {
                        let brand = self.w.name.clone();
                        let wait = self.rng.range(HOUR, 8 * HOUR);
                        self.social(c, due + wait, Topic::Service, &brand);
                    }
                }
            }
        }
        let mut resolution = None;
        let refund = matches!(category, "lost_parcel" | "damaged" | "return")
            || (category == "late_delivery" && self.rng.chance(0.2));
        if refund && value > 0 {
            let amount = if category == "late_delivery" {
                (value / 10).max(500)
            } else {
                value
            };
            let due = t + 5 * DAY;
            self.out.begin(t + MIN, 0, "refund.promised", source, channel);
            self.who(Who::Email(c));
            self.out.subject("case", "k-", case);
            self.out.data();
            self.out.t("due", due);
            self.out.i("amount", amount);
            self.out.end();
            let at = if self.rng.chance(refund_late) {
                due + self.rng.range(DAY, 6 * DAY)
            } else {
                t + self.rng.range(HOUR, 4 * DAY)
            };
            // Refunds are paid from the next day on, when today's tasks are done.
            let at = at.max(self.start + i64::from(self.today + 1) * DAY + self.rng.range(9 * HOUR, 17 * HOUR));
            let issue_day = self.day_of(at);
            self.schedule(
                issue_day,
                Task::Refund {
                    case,
                    cust: c,
                    team: owner as u8,
                    at,
                    amount,
                    order: order.unwrap_or(0),
                    returned: category == "return",
                },
            );
            // With the refund arranged, the case is done; the refund is followed as a promise.
            resolved_at = resolved_at.max(t + 2 * MIN);
            resolution = Some("refund_promised");
        }
        if resolvable {
            self.out.begin(resolved_at, 0, "case.resolved", source, channel);
            self.who(Who::Email(c));
            self.out.subject("case", "k-", case);
            self.out.data();
            let resolution = resolution.unwrap_or(match category {
                "late_delivery" | "failed_delivery" => "redelivery_booked",
                "payment" => "payment_retried",
                "out_of_stock" => "item_reserved",
                _ => "explained",
            });
            self.out.s("resolution", resolution);
            self.out.end();
        }
        if self.rng.chance(self.w.rates.survey) {
            let touchpoint = if callback_touch { "callback" } else { "complaint" };
            self.survey(
                c,
                resolved_at + HOUR,
                "service",
                touchpoint,
                quality.clamp(0.0, 1.0),
                Some(("case", case)),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn refund_issued(&mut self, case: u64, c: u32, team: u8, at: i64, amount: i64, order: u64, returned: bool) {
        let _ = team;
        if returned {
            let day_start = self.start + i64::from(self.day_of(at)) * DAY;
            self.out
                .begin((at - HOUR).max(day_start), 0, "return.completed", "wms", "other");
            self.who(Who::Email(c));
            self.out.subject("order", "o-", order);
            self.out.data();
            self.out.end();
        }
        self.out.begin(at, 0, "refund.issued", "psp", "other");
        self.who(Who::Email(c));
        self.out.subject("case", "k-", case);
        self.out.data();
        self.out.i("amount", amount);
        self.out.end();
        if self.rng.chance(self.w.rates.survey) {
            self.survey(
                c,
                at + 2 * HOUR,
                "refund",
                if returned { "returns" } else { "refund" },
                0.7,
                Some(("case", case)),
            );
        }
    }
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
