//! Customer service: cases, callbacks and refunds, each with its team.

use super::*;

impl Sim<'_> {
    /// Opens a case and plays it out: transfer, hold, callback promised and kept or
    /// not, refund promised (issued on a later day), resolution and a survey.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_case(
        &mut self,
        day: u32,
        t: i64,
        c: u32,
        category: &str,
        order: Option<u64>,
        value: i64,
        phone_ok: bool,
    ) {
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
        self.out.prefixed_id("case", "k-", case);
        self.out.text("category", category);
        self.out.text("team", &self.teams[first].name);
        if let Some(order) = order {
            self.out.prefixed_id("order", "o-", order);
        }
        self.out.end();
        let mut t = t + self.rng.range(MIN, 6 * MIN);
        let mut held = false;
        if first != owner {
            self.out.begin(t, 0, "case.transferred", source, channel);
            self.who(who);
            self.out.subject("case", "k-", case);
            self.out.data();
            self.out.text("from_team", &self.teams[first].name);
            self.out.text("to_team", &self.teams[owner].name);
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
            self.out.int("seconds", seconds);
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
            self.out.instant("due", due);
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
            self.out.instant("due", due);
            self.out.int("amount", amount);
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
            self.out.text("resolution", resolution);
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
    pub(super) fn refund_issued(
        &mut self,
        case: u64,
        c: u32,
        team: u8,
        at: i64,
        amount: i64,
        order: u64,
        returned: bool,
    ) {
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
        self.out.int("amount", amount);
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
