//! Who the simulated customers are to troth: the identities an event names, identification, consent, linking a second address.

use super::*;

impl Sim<'_> {
    pub(super) fn who(&mut self, who: Who) {
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

    pub(super) fn names(&self, i: u32) -> (&'static str, &'static str, &'static str) {
        let h = hash(&[self.w.seed, 5, u64::from(i)]);
        let first = text::FIRST_NAMES[(h % text::FIRST_NAMES.len() as u64) as usize];
        let last = text::LAST_NAMES[((h >> 16) % text::LAST_NAMES.len() as u64) as usize];
        let domain = text::EMAIL_DOMAINS[((h >> 32) % text::EMAIL_DOMAINS.len() as u64) as usize];
        (first, last, domain)
    }

    pub(super) fn push_email(&mut self, i: u32, alt: bool) {
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
    pub(super) fn web_who(&mut self, c: u32) -> Who {
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
    pub(super) fn phone_who(&mut self, c: u32, recognise: bool) -> Who {
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

    pub(super) fn identify(&mut self, c: u32, t: i64) {
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

    pub(super) fn consent(&mut self, c: u32, t: i64, channel: &str, purpose: &str, granted: bool) {
        self.out.begin(t, 0, "customer.consent_changed", "web", "web");
        self.who(Who::Email(c));
        self.out.data();
        self.out.text("channel", channel);
        self.out.text("purpose", purpose);
        self.out.boolean("granted", granted);
        self.out.end();
    }

    /// Links a second email to the account: the event names both, so troth merges
    /// the customer it created for the second email into this one.
    pub(super) fn link_alt(&mut self, c: u32, t: i64) {
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
}
