//! Devices: the identifiers drivers type into a GPS app (Traccar Client) so that
//! its OsmAnd reports count as that driver's positions.
//!
//! The identifier is the device's only credential, so it is unguessable: 130 random
//! bits as 26 characters of Crockford's base32, short enough to type on a phone.
//! It is stored as issued (not hashed, unlike API keys) so it can be shown again to
//! a driver setting up a new phone; it can only report one driver's positions.

use serde::Serialize;

/// A device as issued and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub device_id: String,
    pub driver: String,
    pub created_at: String,
}

/// Crockford's base32 in lower case: no i, l, o or u to mistype.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters of an identifier: 26 × 5 = 130 bits.
pub const DEVICE_ID_CHARS: usize = 26;

pub(crate) fn new_device_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 17];
    getrandom::fill(&mut bytes)?;
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = String::with_capacity(DEVICE_ID_CHARS);
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 5 && out.len() < DEVICE_ID_CHARS {
            held -= 5;
            out.push(char::from(ALPHABET[((bits >> held) & 31) as usize]));
        }
    }
    Ok(out)
}

/// An identifier as typed: case and Crockford's look-alikes (i, l → 1; o → 0) do
/// not matter, and neither do spaces or dashes a driver may add to read it out.
pub fn normalize_device_id(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| match c.to_ascii_lowercase() {
            'i' | 'l' => '1',
            'o' => '0',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_long_random_and_typeable() {
        let a = new_device_id().unwrap();
        let b = new_device_id().unwrap();
        assert_eq!(a.len(), DEVICE_ID_CHARS);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)), "{a}");
        assert_eq!(normalize_device_id(&a.to_uppercase()), a);
        assert_eq!(normalize_device_id("AbIL-O 9"), "ab1109");
    }
}
