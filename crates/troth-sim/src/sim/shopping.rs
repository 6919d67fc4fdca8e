//! Shopping: sessions, searches and page views, stock looked up for a store, click and collect, checkout and payment, and what customers do with what they bought.

use super::*;

impl Sim<'_> {
    pub(super) fn sessions(&mut self, day: u32, base: i64) {
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

    pub(super) fn session(&mut self, day: u32, base: i64, c: u32, mut t: i64) {
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
            self.out.text("product", &self.skus[sku as usize].name);
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
        self.out.text("sku", &self.skus[sku as usize].name);
        self.out.text("claim", "ships_by");
        self.out.instant("ships_by", ships_by);
        self.out.end();
        t += self.rng.range(10, 60) * SEC;
        if !self.rng.chance(self.w.rates.conversion) {
            return;
        }
        self.checkout(day, base, c, t, who, channel, sku);
    }

    pub(super) fn page(&mut self, t: i64, who: Who, channel: &str, page: &str, sku: Option<u16>) {
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
    pub(super) fn store_intent(&mut self, day: u32, base: i64, c: u32, mut t: i64, who: Who, channel: &str, sku: u16) {
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
        self.out.int("results", n_stores as i64);
        self.out.end();
        t += self.rng.range(10, 60) * SEC;
        let s = self.rng.index(n_stores);
        let in_stock = self.stores[s].site[sku as usize] > 0;
        self.out.begin(t, 0, "availability.shown", channel, channel);
        self.who(who);
        self.out.data();
        self.out.text("sku", &self.skus[sku as usize].name);
        self.out.text("store", &self.stores[s].id);
        if in_stock {
            self.out.text("claim", "in_stock");
        } else {
            self.out.text("claim", "ships_by");
            self.out.instant("ships_by", base + 3 * DAY + 18 * HOUR);
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
        self.out.subject_text("store", &self.stores[s].id);
        self.out.data();
        self.out.text("store", &self.stores[s].id);
        self.out.text("sku", &self.skus[sku as usize].name);
        self.out.boolean("found", found);
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
            self.out.prefixed_id("order", "o-", order);
            self.items(&[(sku, qty as u32)]);
            self.out.int("total", price * i64::from(qty));
            self.out.text("currency", &self.w.currency);
            self.out.text("delivery", "pickup");
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
    pub(super) fn collect(&mut self, c: u32, who: Who, order: u64, s: usize, placed: i64, ready_by: i64) {
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
            self.out.prefixed_id("order", "o-", order);
            self.out.text("store", &store);
            self.out.end();
        }
        let mood = &mut self.custs[c as usize].mood;
        *mood = if late {
            mood.saturating_sub(1)
        } else {
            mood.saturating_add(1)
        };
    }

    pub(super) fn items(&mut self, items: &[(u16, u32)]) {
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

    pub(super) fn give_asset(&mut self, c: u32) {
        let cust = &mut self.custs[c as usize];
        if cust.flags & HAS_ASSET == 0 {
            cust.flags |= HAS_ASSET;
            cust.odometer = self.rng.range(8_000, 90_000) as u32;
            cust.km_per_day = self.rng.range(15, 90) as u8;
            self.tyre_owners.push(c);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn checkout(&mut self, day: u32, base: i64, c: u32, mut t: i64, who: Who, channel: &str, sku: u16) {
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
        let failure =
            fault(self.w, "failing_payments", "method", method).map_or(self.w.rates.payment_failure, |f| f.strength);
        if self.rng.chance(failure) {
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
            // A failing method fails the retry as often; the customer then pays
            // another way (drawn only where a method fails, so other worlds keep
            // their bytes).
            if let Some(f) = fault(self.w, "failing_payments", "method", method)
                && self.rng.chance(f.strength)
            {
                let reason = self.rng.pick(text::PAYMENT_FAILURES);
                self.payment(t, who, channel, order, "payment.failed", method, total, Some(reason));
                t += self.rng.range(30, 300) * SEC;
                method = text::PAYMENT_METHODS
                    .iter()
                    .copied()
                    .find(|m| *m != method)
                    .unwrap_or(method);
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
        self.out.prefixed_id("order", "o-", order);
        self.items(&items);
        self.out.int("total", total);
        self.out.text("currency", &self.w.currency);
        match pickup {
            Some((s, ready_by)) => {
                self.out.text("delivery", "pickup");
                self.out.instant("promised_to", ready_by);
                self.out.text("store", &self.stores[s].id);
            }
            None => {
                self.out
                    .text("delivery", if safe_place { "safe_place" } else { "home" });
                self.out.instant("promised_from", dbase + 8 * HOUR);
                self.out.instant("promised_to", dbase + 20 * HOUR);
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
        self.out.prefixed_id("shipment", "s-", ship);
        self.out.prefixed_id("order", "o-", order);
        self.out.text("carrier", &self.carriers[carrier].name);
        self.out
            .text("service", if self.rng.chance(0.2) { "express" } else { "standard" });
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
    pub(super) fn payment(
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
        self.out.text("method", method);
        self.out.int("amount", amount);
        self.out.text("currency", &self.w.currency);
        if let Some(reason) = reason {
            self.out.text("reason", reason);
        }
        self.out.end();
    }

    pub(super) fn usage(&mut self, day: u32, base: i64) {
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
            self.out.prefixed_id("asset", "car-", u64::from(c));
            self.out.text("metric", "odometer_km");
            self.out.int("value", i64::from(value));
            self.out.end();
            if self.rng.chance(self.w.rates.survey * 0.1) {
                self.survey(c, t + HOUR, "tyres-in-use", "use", 0.75, None);
            }
        }
    }

    // ---------------------------------------------------------------- stores
}
