//! Value types that events, their envelope and drivers' positions share: each
//! reads itself from JSON and refuses what is out of its range, naming the field.
//! Kept apart so that the catalogue, the envelope and the position protocols
//! depend on them and not on one another.

use serde_json::Value;

use crate::field::{FieldError, FromJson, FromText, Path, string_enum};

string_enum!(
    /// The channel an event happened on.
    Channel {
        Web = "web", App = "app", Store = "store", Phone = "phone", Email = "email",
        Sms = "sms", Chat = "chat", Social = "social", Courier = "courier", Other = "other",
    }
);

string_enum!(
    /// Why a recorded position is not trusted as the driver's current one.
    PositionFlag {
        Stale = "stale",
        OutOfOrder = "out_of_order",
        ImplausibleJump = "implausible_jump",
        NoFix = "no_fix",
        Future = "future",
    }
);

/// A latitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lat(pub f64);
/// A longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lon(pub f64);
/// A non-negative measure (speed, accuracy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonNegative(pub f64);
/// A compass heading in degrees, 0 ≤ h < 360.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heading(pub f64);
/// A percentage, 0–100 (a battery level).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl FromText for Lat {}
impl FromText for Lon {}
impl FromText for NonNegative {}
impl FromText for Heading {}
impl FromText for Percent {}

fn float_in(value: &Value, path: &Path<'_>, ok: impl Fn(f64) -> bool, range: &str) -> Result<f64, FieldError> {
    let x = f64::from_json(value, path)?;
    if ok(x) {
        Ok(x)
    } else {
        Err(path.error(format!("must be {range}, not {x}")))
    }
}

impl FromJson for Lat {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        float_in(value, path, |x| (-90.0..=90.0).contains(&x), "between -90 and 90").map(Lat)
    }
}

impl FromJson for Lon {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        float_in(value, path, |x| (-180.0..=180.0).contains(&x), "between -180 and 180").map(Lon)
    }
}

impl FromJson for NonNegative {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        float_in(value, path, |x| x >= 0.0, "zero or more").map(NonNegative)
    }
}

impl FromJson for Percent {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        float_in(value, path, |x| (0.0..=100.0).contains(&x), "between 0 and 100").map(Percent)
    }
}

impl FromJson for Heading {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        float_in(value, path, |x| (0.0..360.0).contains(&x), "at least 0 and below 360").map(Heading)
    }
}
