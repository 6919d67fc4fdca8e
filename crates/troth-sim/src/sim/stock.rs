//! The stores' stock: receipts, counts and adjustments, and the phantom stock a faulty store leaves.

use super::*;

impl Sim<'_> {
    pub(super) fn inventory(&mut self, day: u32, base: i64) {
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

    pub(super) fn inv_event(&mut self, t: i64, s: usize, k: usize, ty: &str, value: i64, reason: Option<&str>) {
        self.out.begin(t, 0, ty, "wms", "store");
        self.out.subject_text("store", &self.stores[s].id);
        self.out.data();
        self.out.text("store", &self.stores[s].id);
        self.out.text("sku", &self.skus[k].name);
        if ty == "inventory.counted" {
            self.out.int("on_hand", value);
        } else {
            self.out.int("delta", value);
        }
        if let Some(reason) = reason {
            self.out.text("reason", reason);
        }
        self.out.end();
    }

    // ---------------------------------------------------------------- deliveries
}
