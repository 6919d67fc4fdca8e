//! Deliveries: each carrier's routes, the drivers' positions and stops, windows, attempts, losses and returns, and the tracking page customers watch.

use super::*;

impl Sim<'_> {
    /// Where customer `c` lives, in metres east and north of the centre, on the street grid.
    pub(super) fn home(&self, c: u32) -> (f64, f64) {
        let h = hash(&[self.w.seed, 9, u64::from(c)]);
        let r = self.w.city.radius_km * 1000.0 * unit(h).sqrt();
        let a = unit(mix2(h)) * 2.0 * PI;
        (snap(r * a.cos()), snap(r * a.sin()))
    }

    pub(super) fn deliveries(&mut self, day: u32, base: i64, parcels: Vec<Parcel>) {
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

    pub(super) fn route(&mut self, day: u32, base: i64, carrier: usize, driver: u64, stops: Vec<Parcel>) {
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
            self.out.instant("window_start", win.0);
            self.out.instant("window_end", win.1);
            self.out.prefixed_id("driver", "d-", driver);
            self.out.end();
            if self.rng.chance(self.w.rates.customer_reschedule) {
                // The customer picks another day; the parcel leaves this route.
                let at = wt + delay + self.rng.range(5 * MIN, 40 * MIN);
                let next = base + DAY;
                self.out.begin(at, 0, "shipment.rescheduled", "web", "web");
                self.who(Who::Email(p.cust));
                self.out.subject("shipment", "s-", p.ship);
                self.out.data();
                self.out.instant("window_start", next + 17 * HOUR);
                self.out.instant("window_end", next + 20 * HOUR);
                self.out.text("by", "customer");
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
            self.out.prefixed_id("driver", "d-", driver);
            self.out.int("stops_before", i as i64);
            // The address's position, as a carrier's feed gives it: the customer's
            // tracking map marks their home.
            let (lat, lon) = self.latlon(s.at);
            self.out.fixed6("lat", lat);
            self.out.fixed6("lon", lon);
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
                self.out.text("reason", self.rng.pick(text::FAIL_REASONS));
                self.out.end();
                let next = base + DAY;
                self.out
                    .begin(done + 2 * MIN, delay, "shipment.rescheduled", &source, "courier");
                self.who(Who::Email(p.cust));
                self.out.subject("shipment", "s-", p.ship);
                self.out.data();
                self.out.instant("window_start", next + 8 * HOUR);
                self.out.instant("window_end", next + 20 * HOUR);
                self.out.text("by", "carrier");
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
                self.out.fixed6("lat", lat + (self.rng.f64() - 0.5) * 0.0001);
                self.out.fixed6("lon", lon + (self.rng.f64() - 0.5) * 0.0001);
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
    pub(super) fn drive(
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
            self.out.fixed6("lat", lat);
            self.out.fixed6("lon", lon);
            self.out.fixed1("speed_kmh", kmh);
            self.out.fixed1("heading", heading);
            self.out.fixed1("accuracy_m", accuracy);
            self.out.end();
            t += 10 * SEC;
        }
    }

    /// The phone's reports while the van stands at `at` from `from_t` until `to_t`,
    /// every `parked_report_s` (none when that is 0: the random stream is then
    /// untouched, so worlds without it keep their bytes).
    pub(super) fn park(&mut self, driver: u64, source: &str, delay: i64, from_t: i64, to_t: i64, at: (f64, f64)) {
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
            self.out.fixed6("lat", lat);
            self.out.fixed6("lon", lon);
            self.out.fixed1("speed_kmh", 0.0);
            self.out.fixed1("accuracy_m", accuracy);
            self.out.end();
            t += every;
        }
    }

    pub(super) fn latlon(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (self.w.city.lat + y / 111_320.0, self.w.city.lon + x / self.m_per_lon)
    }

    pub(super) fn after_delivery(&mut self, day: u32, t: i64, p: Parcel, outcome: Outcome, carrier: usize, slow: bool) {
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
            let (mut topic, mut rating) = if bad {
                (Topic::Late, self.rng.range(1, 2))
            } else {
                (self.rng.pick(&[Topic::Product, Topic::Delivery]), self.rng.range(4, 5))
            };
            // A defective product disappoints whatever the delivery was like (drawn
            // only for its reviews, so other worlds stay byte for byte the same).
            if let Some(defect) = fault(self.w, "defective_sku", "sku", &self.skus[p.sku as usize].name)
                && self.rng.chance(defect.strength)
            {
                (topic, rating) = (Topic::Defect, self.rng.range(1, 2));
            }
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
    pub(super) fn limbo(&mut self, day: u32, base: i64, p: Parcel) {
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

    pub(super) fn return_parcel(&mut self, base: i64, p: Parcel) {
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

    pub(super) fn tracking_view(&mut self, c: u32, t: i64, ship: u64) {
        let who = Who::Email(c);
        let channel = if self.rng.chance(0.55) { "web" } else { "app" };
        self.out.begin(t, 0, "tracking.viewed", channel, channel);
        self.who(who);
        self.out.subject("shipment", "s-", ship);
        self.out.data();
        self.out.prefixed_id("shipment", "s-", ship);
        self.out.end();
    }
}
