//! What customers say: surveys, social posts and reviews.

use super::*;

impl Sim<'_> {
    /// A survey answer whose scores follow `quality` (0 awful … 1 delighted).
    pub(super) fn survey(
        &mut self,
        c: u32,
        t: i64,
        survey: &str,
        touchpoint: &str,
        quality: f64,
        subject: Option<(&str, u64)>,
    ) {
        let q = (quality + (self.rng.f64() - 0.5) * 0.3).clamp(0.0, 1.0);
        self.out.begin(t, 0, "survey.answered", "survey", "email");
        self.who(Who::Email(c));
        match subject {
            Some(("store", s)) => {
                let id = self.stores[s as usize].id.clone();
                self.out.subject_text("store", &id);
            }
            Some(("shipment", n)) => self.out.subject("shipment", "s-", n),
            Some(("case", n)) => self.out.subject("case", "k-", n),
            Some(("order", n)) => self.out.subject("order", "o-", n),
            _ => {}
        }
        self.out.data();
        self.out.text("survey", survey);
        self.out.text("touchpoint", touchpoint);
        match touchpoint {
            "pay" | "tracking_page" | "callback" | "complaint" | "returns" => {
                // CES 2.0: "it was easy to handle", 1 strongly disagree … 7 strongly agree.
                self.out.int("ces", (1.0 + q * 6.0).round() as i64);
                self.out.int("csat", (1.0 + q * 4.0).round() as i64);
            }
            _ => {
                self.out.int("nps", (q * 10.0).round() as i64);
                self.out.int("csat", (1.0 + q * 4.0).round() as i64);
            }
        }
        self.out.end();
    }

    pub(super) fn social(&mut self, c: u32, t: i64, topic: Topic, brand: &str) {
        text::compose(&mut self.rng, topic, brand, &mut self.text);
        let network = self.rng.pick(text::SOCIAL_NETWORKS);
        let reach = self.rng.range(20, 5_000);
        self.out.begin(t, 0, "social.posted", network, "social");
        self.who(Who::Email(c));
        self.out.data();
        self.out.text("text", &self.text);
        self.out.text("network", network);
        self.out.int("reach", reach);
        self.out.end();
    }

    pub(super) fn review(&mut self, c: u32, t: i64, topic: Topic, rating: i64, sku: u16, brand: &str) {
        text::compose(&mut self.rng, topic, brand, &mut self.text);
        let site = self.rng.pick(text::REVIEW_SITES);
        self.out.begin(t, 0, "review.posted", site, "web");
        self.who(Who::Email(c));
        self.out.data();
        self.out.int("rating", rating.clamp(1, 5));
        self.out.text("text", &self.text);
        self.out.text("site", site);
        self.out.text("product", &self.skus[sku as usize].name);
        self.out.end();
    }
}
