//! Identities and how an event's identities resolve to one customer.
//!
//! An identity is one way a sender names a customer: their id in the sender's
//! system, an email, a phone number, or an id in an external system. Identities are
//! normalised so that `Ann@Example.org` and `ann@example.org` are the same person.

use std::fmt;

/// Which kind of name an identity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    Id,
    Email,
    Phone,
    External,
}

/// A normalised identity, stored and compared as one key: `email:ann@example.org`,
/// `phone:+442079460000`, `id:c-17`, `ext:shopify:42`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(String);

impl Identity {
    pub fn new(kind: IdentityKind, value: &str) -> Result<Identity, String> {
        let value = value.trim();
        // Built by hand rather than with format!: every event names its customer.
        let mut key = String::with_capacity(value.len() + 6);
        match kind {
            IdentityKind::Id => {
                key.push_str("id:");
                key.push_str(non_empty(value)?);
            }
            IdentityKind::Email => {
                key.push_str("email:");
                normalise_email(value, &mut key)?;
            }
            IdentityKind::Phone => {
                key.push_str("phone:");
                key.push_str(&normalise_phone(value)?);
            }
            IdentityKind::External => return Err("external identities need a system".into()),
        }
        Ok(Identity(key))
    }

    pub fn external(system: &str, id: &str) -> Result<Identity, String> {
        if system.is_empty() || system.contains(':') {
            return Err("the system name must be non-empty and contain no ':'".into());
        }
        Ok(Identity(format!("ext:{system}:{}", non_empty(id.trim())?)))
    }

    /// Reads an identity key as a person may type it (`email:Ann@Example.org`,
    /// `phone:+44 20 7946 0000`, `ext:shop:42`), normalising its value.
    pub fn parse(key: &str) -> Option<Identity> {
        let (kind, value) = key.split_once(':')?;
        match kind {
            "id" => Identity::new(IdentityKind::Id, value).ok(),
            "email" => Identity::new(IdentityKind::Email, value).ok(),
            "phone" => Identity::new(IdentityKind::Phone, value).ok(),
            "ext" => value
                .split_once(':')
                .and_then(|(system, id)| Identity::external(system, id).ok()),
            _ => None,
        }
    }

    /// Reads back a key produced by [`Identity::as_key`].
    pub fn from_key(key: &str) -> Option<Identity> {
        let (kind, rest) = key.split_once(':')?;
        matches!(kind, "id" | "email" | "phone" | "ext")
            .then(|| Identity(key.to_owned()))
            .filter(|_| !rest.is_empty())
    }

    pub fn as_key(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> IdentityKind {
        match self.0.split_once(':').map(|(k, _)| k) {
            Some("email") => IdentityKind::Email,
            Some("phone") => IdentityKind::Phone,
            Some("ext") => IdentityKind::External,
            _ => IdentityKind::Id,
        }
    }

    /// The identity's value without its kind: `ann@example.org`, `shopify:42`.
    pub fn value(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, v)| v)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn non_empty(value: &str) -> Result<&str, String> {
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(value)
    }
}

/// Appends the address in lower case to `out`.
fn normalise_email(value: &str, out: &mut String) -> Result<(), String> {
    match value.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !value.contains(char::is_whitespace) => {
            if value.is_ascii() {
                let start = out.len();
                out.push_str(value);
                out[start..].make_ascii_lowercase();
            } else {
                out.push_str(&value.to_lowercase());
            }
            Ok(())
        }
        _ => Err("must contain @".into()),
    }
}

/// Keeps a leading `+` and the digits; spaces, dots, dashes and brackets are
/// formatting. Anything else is not a phone number.
fn normalise_phone(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '+' if i == 0 => out.push(c),
            '0'..='9' => out.push(c),
            ' ' | '.' | '-' | '(' | ')' => {}
            _ => {
                return Err(format!(
                    "must be a phone number (digits, optionally a leading +), found {c:?}"
                ));
            }
        }
    }
    let digits = out.trim_start_matches('+').len();
    if !(5..=20).contains(&digits) {
        return Err(format!("must have 5 to 20 digits, not {digits}"));
    }
    Ok(out)
}

/// A customer's number inside one store; the public id is `cus_{n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerId(pub i64);

impl CustomerId {
    pub fn parse(s: &str) -> Option<CustomerId> {
        let digits = s.strip_prefix("cus_")?;
        let n: i64 = digits.parse().ok()?;
        (n > 0 && !digits.starts_with(['0', '+'])).then_some(CustomerId(n))
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cus_{}", self.0)
    }
}

/// What an event's identities mean for the customers already known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// No identity is known: a new customer.
    New,
    /// All known identities belong to this customer.
    Existing(CustomerId),
    /// The identities belong to several customers, who are one person: the oldest
    /// survives and the others are merged into it.
    Merge {
        survivor: CustomerId,
        merged: Vec<CustomerId>,
    },
}

/// Decides from the customers that own an event's identities (as found, in any
/// order, repeats allowed) which customer the event belongs to.
pub fn resolve(owners: &[CustomerId]) -> Resolution {
    let mut owners = owners.to_vec();
    owners.sort_unstable();
    owners.dedup();
    match owners.as_slice() {
        [] => Resolution::New,
        [one] => Resolution::Existing(*one),
        [survivor, merged @ ..] => Resolution::Merge {
            survivor: *survivor,
            merged: merged.to_vec(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_normalised() {
        let check = |kind, value: &str, expect: &str| {
            let got = match Identity::new(kind, value) {
                Ok(identity) => identity.to_string(),
                Err(message) => format!("error: {message}"),
            };
            assert_eq!(got, expect, "{value}");
        };
        check(IdentityKind::Email, " Ann@Example.ORG ", "email:ann@example.org");
        check(IdentityKind::Email, "ann.example.org", "error: must contain @");
        check(IdentityKind::Phone, "+44 (20) 7946-0000", "phone:+442079460000");
        check(
            IdentityKind::Phone,
            "call me",
            "error: must be a phone number (digits, optionally a leading +), found 'c'",
        );
        check(IdentityKind::Phone, "123", "error: must have 5 to 20 digits, not 3");
        check(IdentityKind::Id, "c-17", "id:c-17");
        check(IdentityKind::Id, "  ", "error: must not be empty");
        assert_eq!(
            Identity::external("shopify", "42").unwrap().to_string(),
            "ext:shopify:42"
        );
    }

    #[test]
    fn the_oldest_customer_survives_a_merge() {
        let c = CustomerId;
        assert_eq!(resolve(&[]), Resolution::New);
        assert_eq!(resolve(&[c(4), c(4)]), Resolution::Existing(c(4)));
        assert_eq!(
            resolve(&[c(9), c(4), c(7), c(9)]),
            Resolution::Merge {
                survivor: c(4),
                merged: vec![c(7), c(9)]
            }
        );
    }

    #[test]
    fn public_customer_ids_round_trip() {
        assert_eq!(CustomerId::parse("cus_42"), Some(CustomerId(42)));
        assert_eq!(CustomerId(42).to_string(), "cus_42");
        for bad in ["42", "cus_", "cus_0", "cus_042", "cus_x", "cus_-1", "cus_+1", "c42"] {
            assert_eq!(CustomerId::parse(bad), None, "{bad}");
        }
    }
}
