//! Driver positions: reading the OsmAnd protocol (as Traccar's server accepts it,
//! so the Traccar Client phone app works unchanged) and the API's batches into
//! typed fixes, and deciding which fixes to trust.
//!
//! A fix that is not trusted is still recorded, with a [`PositionFlag`] saying
//! why; only trusted fixes move a driver's current position.

use serde_json::{Map, Value};

use crate::field::{FieldError, FromJson, Path, expected, field, json_struct};
use crate::timestamp::Timestamp;
pub use crate::values::PositionFlag;
use crate::values::{Heading, Lat, Lon, NonNegative, Percent};

/// One GPS fix of a driver, in troth's units.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    pub lat: f64,
    pub lon: f64,
    pub at: Timestamp,
    pub speed_kmh: Option<f64>,
    /// Degrees, 0 ≤ h < 360.
    pub heading: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub altitude_m: Option<f64>,
    /// Battery level in percent, 0–100.
    pub battery: Option<f64>,
    pub charging: Option<bool>,
    /// False when the device itself says the fix is not valid (OsmAnd `valid=false`).
    pub valid: bool,
}

/// Positions a device sent: its identifier and its fixes, in the order sent.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReport {
    pub device_id: String,
    pub fixes: Vec<Fix>,
}

const KNOT_KMH: f64 = 1.852;
const MPS_KMH: f64 = 3.6;
/// Below this, an integer timestamp is Unix seconds; above, milliseconds (as Traccar decides).
const SECONDS_LIMIT: i64 = i32::MAX as i64;

/// Reads the OsmAnd query/form version: `id`|`deviceid`, `lat`, `lon` (or
/// `location=lat,lon`), `timestamp` (Unix s or ms, ISO 8601, `yyyy-MM-dd HH:mm:ss`
/// in UTC; absent means `now`), `speed` in knots, `bearing`|`heading`, `altitude`,
/// `accuracy`, `batt` (percent), `charge`, `valid`. Other parameters are ignored.
/// Errors name the parameter.
pub fn parse_osmand_params<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    now: Timestamp,
) -> Result<DeviceReport, FieldError> {
    let mut device_id = None;
    let (mut lat, mut lon, mut at) = (None, None, None);
    let mut fix = Fix::at(0.0, 0.0, now);
    for (key, value) in params {
        let value = value.trim();
        let number = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| FieldError::new(key, format!("must be a number, not {value:?}")))
        };
        match key {
            "id" | "deviceid" => device_id = Some(value.to_owned()),
            "lat" => lat = Some(number()?),
            "lon" => lon = Some(number()?),
            "location" => {
                let (a, b) = value
                    .split_once(',')
                    .ok_or_else(|| FieldError::new(key, format!("must be LAT,LON, not {value:?}")))?;
                let parse = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
                match (parse(a), parse(b)) {
                    (Some(a), Some(b)) => (lat, lon) = (Some(a), Some(b)),
                    _ => return Err(FieldError::new(key, format!("must be LAT,LON, not {value:?}"))),
                }
            }
            "timestamp" => at = Some(osmand_time(value).ok_or_else(|| FieldError::new(key, time_message(value)))?),
            "speed" => fix.speed_kmh = known(number()?).map(|knots| knots * KNOT_KMH),
            "bearing" | "heading" => fix.heading = known(number()?).map(|h| h.rem_euclid(360.0)),
            "altitude" => fix.altitude_m = Some(number()?),
            "accuracy" => fix.accuracy_m = known(number()?),
            "batt" => fix.battery = Some(number()?).filter(|b| (0.0..=100.0).contains(b)),
            "charge" => fix.charging = Some(truthy(value)),
            "valid" => fix.valid = truthy(value),
            _ => {}
        }
    }
    let device_id = device_id
        .filter(|d| !d.is_empty())
        .ok_or_else(|| FieldError::new("id", "is required: the device identifier"))?;
    fix.lat = coordinate(lat, "lat", 90.0)?;
    fix.lon = coordinate(lon, "lon", 180.0)?;
    fix.at = at.unwrap_or(now);
    Ok(DeviceReport {
        device_id,
        fixes: vec![fix],
    })
}

/// Reads the JSON body Traccar Client 9 sends: `{"device_id", "location": {"timestamp",
/// "coords": {"latitude", "longitude", "speed" (m/s), "heading", "accuracy",
/// "altitude"}, "battery": {"level" (0–1), "is_charging"}, …}}`. `location` may also
/// be an array of such objects. Unknown negative values (-1) mean "not known".
pub fn parse_osmand_json(value: &Value, now: Timestamp) -> Result<DeviceReport, FieldError> {
    let root = Path::Root("");
    let object = value.as_object().ok_or_else(|| expected(&root, "an object", value))?;
    let device_id: String = field(object, &root, "device_id")?;
    let location_path = root.key("location");
    let fixes = match object.get("location") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| json_location(item, &location_path.index(i), now))
            .collect::<Result<_, _>>()?,
        Some(item) => vec![json_location(item, &location_path, now)?],
        None => return Err(location_path.error("is required")),
    };
    Ok(DeviceReport { device_id, fixes })
}

fn json_location(value: &Value, path: &Path<'_>, now: Timestamp) -> Result<Fix, FieldError> {
    let location = value.as_object().ok_or_else(|| expected(path, "an object", value))?;
    let at = match location.get("timestamp") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => {
            osmand_time(s).ok_or_else(|| FieldError::new(path.key("timestamp").to_string(), time_message(s)))?
        }
        Some(other) => return Err(expected(&path.key("timestamp"), "an ISO 8601 date-time string", other)),
    };
    let coords_path = path.key("coords");
    let coords: Map<String, Value> = field(location, path, "coords")?;
    let number = |key: &str| field::<Option<f64>>(&coords, &coords_path, key);
    let mut fix = Fix::at(
        coordinate(number("latitude")?, &coords_path.key("latitude").to_string(), 90.0)?,
        coordinate(number("longitude")?, &coords_path.key("longitude").to_string(), 180.0)?,
        at,
    );
    fix.speed_kmh = number("speed")?.and_then(known).map(|mps| mps * MPS_KMH);
    fix.heading = number("heading")?.and_then(known).map(|h| h.rem_euclid(360.0));
    fix.accuracy_m = number("accuracy")?.and_then(known);
    fix.altitude_m = number("altitude")?;
    if let Some(battery) = field::<Option<Map<String, Value>>>(location, path, "battery")? {
        let battery_path = path.key("battery");
        fix.battery = field::<Option<f64>>(&battery, &battery_path, "level")?
            .filter(|l| (0.0..=1.0).contains(l))
            .map(|l| l * 100.0);
        fix.charging = field(&battery, &battery_path, "is_charging")?;
    }
    Ok(fix)
}

json_struct!(
    /// One item of `POST /api/v1/drivers/{id}/positions`.
    ApiPosition {
        lat: Lat, lon: Lon, at: Timestamp, speed_kmh: Option<NonNegative>, heading: Option<Heading>,
        accuracy_m: Option<NonNegative>, altitude_m: Option<f64>, battery: Option<Percent>,
    }
);

/// Reads one item of the positions API; errors are located under `path` (`[3].lat`).
pub fn parse_api_position(value: &Value, path: &Path<'_>) -> Result<Fix, FieldError> {
    let p = ApiPosition::from_json(value, path)?;
    Ok(Fix {
        speed_kmh: p.speed_kmh.map(|s| s.0),
        heading: p.heading.map(|h| h.0),
        accuracy_m: p.accuracy_m.map(|a| a.0),
        altitude_m: p.altitude_m,
        battery: p.battery.map(|b| b.0),
        ..Fix::at(p.lat.0, p.lon.0, p.at)
    })
}

impl Fix {
    /// A valid fix at a place and time, with nothing else known.
    pub fn at(lat: f64, lon: f64, at: Timestamp) -> Fix {
        Fix {
            lat,
            lon,
            at,
            speed_kmh: None,
            heading: None,
            accuracy_m: None,
            altitude_m: None,
            battery: None,
            charging: None,
            valid: true,
        }
    }

    /// The `data` of the `courier.position` event that records this fix.
    pub fn event_data(&self, flag: Option<PositionFlag>) -> Value {
        let mut data = Map::new();
        data.insert("lat".into(), self.lat.into());
        data.insert("lon".into(), self.lon.into());
        let optional = [
            ("speed_kmh", self.speed_kmh),
            ("heading", self.heading),
            ("accuracy_m", self.accuracy_m),
            ("altitude_m", self.altitude_m),
            ("battery", self.battery),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                data.insert(key.into(), round(v).into());
            }
        }
        if let Some(flag) = flag {
            data.insert("flag".into(), flag.as_str().into());
        }
        Value::Object(data)
    }
}

/// Two decimals are centimetres and hundredths of a km/h: enough, and stable text.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Devices send -1 (or any negative) for "not known".
fn known(x: f64) -> Option<f64> {
    (x >= 0.0).then_some(x)
}

fn truthy(value: &str) -> bool {
    value.eq_ignore_ascii_case("true") || value == "1"
}

fn coordinate(value: Option<f64>, name: &str, limit: f64) -> Result<f64, FieldError> {
    match value {
        None => Err(FieldError::new(name, "is required")),
        Some(x) if (-limit..=limit).contains(&x) => Ok(x),
        Some(x) => Err(FieldError::new(
            name,
            format!("must be between -{limit} and {limit}, not {x}"),
        )),
    }
}

fn time_message(value: &str) -> String {
    format!(
        "must be Unix seconds or milliseconds, or an ISO 8601 date-time, {}, not {value:?}",
        Timestamp::range_text()
    )
}

/// An OsmAnd `timestamp`: Unix seconds or milliseconds, ISO 8601 with or without an
/// offset (UTC when absent), or `yyyy-MM-dd HH:mm:ss` (UTC).
pub fn osmand_time(value: &str) -> Option<Timestamp> {
    let value = value.trim();
    if let Ok(n) = value.parse::<i64>() {
        let ms = if n < SECONDS_LIMIT { n.checked_mul(1_000)? } else { n };
        return Timestamp::from_micros(ms.checked_mul(1_000)?).ok();
    }
    let iso = value.replacen(' ', "T", 1);
    if let Some(t) = Timestamp::parse_rfc3339(&iso) {
        return Some(t);
    }
    let time_part = iso.split_once('T')?.1;
    let offset_at = time_part.rfind(['+', '-']);
    match offset_at {
        // `+0100`: RFC 3339 wants `+01:00`.
        Some(i) if time_part.len() - i == 5 => {
            let cut = iso.len() - 2;
            Timestamp::parse_rfc3339(&format!("{}:{}", &iso[..cut], &iso[cut..]))
        }
        Some(_) => None,
        None => Timestamp::parse_rfc3339(&format!("{iso}Z")),
    }
}

/// The rules a fix must pass to be trusted as the driver's current position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plausibility {
    /// A fix older than this when it arrives is stale.
    pub stale_after_us: i64,
    /// A fix dated further ahead of its arrival than this is from a wrong clock.
    pub future_tolerance_us: i64,
    /// Faster than this between trusted fixes is a jump no vehicle drives.
    pub max_speed_kmh: f64,
    /// Distance always allowed between two fixes, on top of their accuracies (GPS noise).
    pub slack_m: f64,
    /// After this many consecutive fixes that agree with each other but jump from the
    /// trusted one, the trusted one was the wrong one: the new fixes are trusted.
    pub reanchor_after: u32,
}

impl Default for Plausibility {
    fn default() -> Self {
        Plausibility {
            stale_after_us: 10 * 60 * 1_000_000,
            future_tolerance_us: 2 * 60 * 1_000_000,
            max_speed_kmh: 200.0,
            slack_m: 50.0,
            reanchor_after: 3,
        }
    }
}

/// What is known of a driver's recent fixes, for judging the next one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    /// The newest trusted fix: the driver's current position.
    pub trusted: Option<Fix>,
    /// The time of the newest fix recorded in order (trusted, stale or jumped).
    pub latest_at: Option<Timestamp>,
    /// Fixes that jumped from `trusted` but agree with each other: the newest and how many.
    suspect: Option<(Fix, u32)>,
}

impl Plausibility {
    /// Judges `fix`, arriving at `arrived`, against `track`, and records it there.
    /// `None` means trusted: it is now the driver's current position.
    pub fn judge(&self, track: &mut Track, fix: &Fix, arrived: Timestamp) -> Option<PositionFlag> {
        let flag = self.assess(track, fix, arrived);
        match flag {
            None => {
                track.trusted = Some(fix.clone());
                track.suspect = None;
            }
            Some(PositionFlag::ImplausibleJump) => {
                let count = match &track.suspect {
                    Some((last, n)) if self.reachable(last, fix) => n + 1,
                    _ => 1,
                };
                track.suspect = Some((fix.clone(), count));
            }
            Some(_) => {}
        }
        if matches!(
            flag,
            None | Some(PositionFlag::Stale | PositionFlag::ImplausibleJump | PositionFlag::NoFix)
        ) {
            track.latest_at = Some(track.latest_at.map_or(fix.at, |t| t.max(fix.at)));
        }
        flag
    }

    fn assess(&self, track: &Track, fix: &Fix, arrived: Timestamp) -> Option<PositionFlag> {
        if !fix.valid || (fix.lat == 0.0 && fix.lon == 0.0) {
            return Some(PositionFlag::NoFix);
        }
        if fix.at.micros() > arrived.micros().saturating_add(self.future_tolerance_us) {
            return Some(PositionFlag::Future);
        }
        if track.latest_at.is_some_and(|latest| fix.at < latest) {
            return Some(PositionFlag::OutOfOrder);
        }
        if fix.at.micros() < arrived.micros().saturating_sub(self.stale_after_us) {
            return Some(PositionFlag::Stale);
        }
        let Some(trusted) = &track.trusted else { return None };
        if self.reachable(trusted, fix) {
            return None;
        }
        // Several fixes agreeing with each other outvote one old trusted fix.
        if let Some((last, n)) = &track.suspect
            && n + 1 >= self.reanchor_after
            && self.reachable(last, fix)
        {
            return None;
        }
        Some(PositionFlag::ImplausibleJump)
    }

    /// Whether a vehicle could get from `from` to `to` in the time between them.
    fn reachable(&self, from: &Fix, to: &Fix) -> bool {
        let allowed_m = self.slack_m + from.accuracy_m.unwrap_or(0.0) + to.accuracy_m.unwrap_or(0.0);
        let distance = distance_m(from, to) - allowed_m;
        if distance <= 0.0 {
            return true;
        }
        let hours = (to.at.micros() - from.at.micros()) as f64 / 3_600e6;
        hours > 0.0 && distance / 1_000.0 / hours <= self.max_speed_kmh
    }
}

/// Great-circle distance in metres (haversine).
pub fn distance_m(a: &Fix, b: &Fix) -> f64 {
    const EARTH_M: f64 = 6_371_008.8;
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_M * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_795_000_000; // seconds; 2026-11-18

    fn now() -> Timestamp {
        Timestamp::from_secs(NOW)
    }

    fn params(query: &str) -> Result<DeviceReport, FieldError> {
        let pairs: Vec<(&str, &str)> = query.split('&').filter_map(|p| p.split_once('=')).collect();
        parse_osmand_params(pairs, now())
    }

    fn one(query: &str) -> Fix {
        params(query).unwrap().fixes.remove(0)
    }

    #[test]
    fn osmand_query_is_read_in_troths_units() {
        let fix = one(
            "id=abc&lat=52.5&lon=13.4&timestamp=1795000000&speed=10&bearing=90&altitude=34.5&accuracy=5&batt=87&charge=true&hdop=1",
        );
        assert_eq!((fix.lat, fix.lon, fix.at), (52.5, 13.4, now()));
        assert!((fix.speed_kmh.unwrap() - 18.52).abs() < 1e-9, "knots to km/h");
        assert_eq!(
            (fix.heading, fix.altitude_m, fix.accuracy_m, fix.battery, fix.charging),
            (Some(90.0), Some(34.5), Some(5.0), Some(87.0), Some(true))
        );
        assert_eq!(params("deviceid=xyz&lat=1&lon=2").unwrap().device_id, "xyz");
        assert_eq!(one("id=a&location=1.5,2.5&heading=360").heading, Some(0.0));
        assert_eq!(one("id=a&lat=1&lon=2&speed=-1&accuracy=-1").speed_kmh, None);
    }

    #[test]
    fn osmand_timestamps_in_every_form() {
        let utc = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        let check = |value: &str, expect: Option<Timestamp>| assert_eq!(osmand_time(value), expect, "{value}");
        check("1795000000", Some(now()));
        check("1795000000123", Some(Timestamp(NOW * 1_000_000 + 123_000)));
        check("2026-11-18T10:00:00Z", Some(utc("2026-11-18T10:00:00Z")));
        check("2026-11-18T10:00:00.250+01:00", Some(utc("2026-11-18T09:00:00.25Z")));
        check("2026-11-18T10:00:00+0100", Some(utc("2026-11-18T09:00:00Z")));
        check("2026-11-18T10:00:00", Some(utc("2026-11-18T10:00:00Z")));
        check("2026-11-18 10:00:00", Some(utc("2026-11-18T10:00:00Z")));
        check("yesterday", None);
        // Outside the accepted range: refused, never a panic when the fix is written out.
        check("9000000000000000", None);
        check("9223372036854775807", None);
        check("-1", None);
        check("9999-12-31T23:59:00Z", None);
        assert_eq!(one("id=a&lat=1&lon=2").at, now(), "absent means now");
    }

    #[test]
    fn osmand_errors_name_the_parameter() {
        let field = |q: &str| params(q).unwrap_err().field;
        assert_eq!(field("lat=1&lon=2"), "id");
        assert_eq!(field("id=a&lat=north&lon=2"), "lat");
        assert_eq!(field("id=a&lat=91&lon=2"), "lat");
        assert_eq!(field("id=a&lat=1"), "lon");
        assert_eq!(field("id=a&lat=1&lon=2&timestamp=soon"), "timestamp");
    }

    #[test]
    fn traccar_client_json_is_read_in_troths_units() {
        let body = json!({"device_id": "abc", "location": {
            "timestamp": "2026-11-18T10:00:00.000Z", "is_moving": true, "odometer": 12,
            "coords": {"latitude": 52.5, "longitude": 13.4, "speed": 10, "heading": -1, "accuracy": 4.5, "altitude": 30},
            "battery": {"level": 0.42, "is_charging": false}}});
        let report = parse_osmand_json(&body, now()).unwrap();
        let fix = &report.fixes[0];
        assert_eq!(report.device_id, "abc");
        assert_eq!(fix.at, Timestamp::parse_rfc3339("2026-11-18T10:00:00Z").unwrap());
        assert!((fix.speed_kmh.unwrap() - 36.0).abs() < 1e-9, "m/s to km/h");
        assert_eq!(
            (fix.heading, fix.accuracy_m, fix.altitude_m),
            (None, Some(4.5), Some(30.0))
        );
        assert!((fix.battery.unwrap() - 42.0).abs() < 1e-9);
        assert_eq!(fix.charging, Some(false));
        let minimal = json!({"device_id": "abc", "location": {"coords": {"latitude": 1, "longitude": 2}}});
        assert_eq!(parse_osmand_json(&minimal, now()).unwrap().fixes[0].at, now());
        let bad = json!({"device_id": "abc", "location": {"coords": {"latitude": "x", "longitude": 2}}});
        assert_eq!(
            parse_osmand_json(&bad, now()).unwrap_err().field,
            "location.coords.latitude"
        );
    }

    #[test]
    fn api_items_name_their_index() {
        let root = Path::Root("");
        let item = json!({"lat": 95, "lon": 2, "at": "2026-11-18T10:00:00Z"});
        assert_eq!(parse_api_position(&item, &root.index(3)).unwrap_err().field, "[3].lat");
        let item = json!({"lat": 1, "lon": 2, "at": "2026-11-18T10:00:00Z", "battery": 50, "altitude_m": -3});
        assert_eq!(parse_api_position(&item, &root.index(0)).unwrap().battery, Some(50.0));
    }

    /// A fix `secs` after NOW, `north_m` metres north of (52, 13).
    fn fix(secs: i64, north_m: f64) -> Fix {
        Fix::at(52.0 + north_m / 111_195.0, 13.0, Timestamp::from_secs(NOW + secs))
    }

    fn judge_all(fixes: &[Fix], arrived_secs: i64) -> Vec<Option<PositionFlag>> {
        let rules = Plausibility::default();
        let mut track = Track::default();
        let arrived = Timestamp::from_secs(NOW + arrived_secs);
        fixes.iter().map(|f| rules.judge(&mut track, f, arrived)).collect()
    }

    #[test]
    fn plausibility_flags_what_it_cannot_trust() {
        use PositionFlag::*;
        // 10 s apart: 250 m is 90 km/h, 1 km is 360 km/h.
        assert_eq!(
            judge_all(&[fix(0, 0.0), fix(10, 250.0), fix(20, 1_250.0), fix(30, 500.0)], 30),
            [None, None, Some(ImplausibleJump), None]
        );
        assert_eq!(
            judge_all(&[fix(20, 0.0), fix(10, 10.0), fix(30, 20.0)], 30),
            [None, Some(OutOfOrder), None]
        );
        assert_eq!(
            judge_all(&[fix(-3_600, 0.0), fix(-1_800, 0.0), fix(0, 0.0)], 0),
            [Some(Stale), Some(Stale), None]
        );
        assert_eq!(judge_all(&[fix(3_600, 0.0), fix(0, 0.0)], 0), [Some(Future), None]);
        let null_island = Fix::at(0.0, 0.0, now());
        assert_eq!(judge_all(&[null_island], 0), [Some(NoFix)]);
    }

    #[test]
    fn fixes_that_agree_outvote_a_wrong_trusted_one() {
        use PositionFlag::*;
        let far = 50_000.0;
        assert_eq!(
            judge_all(
                &[
                    fix(0, 0.0),
                    fix(10, far),
                    fix(20, far + 100.0),
                    fix(30, far + 200.0),
                    fix(40, far + 300.0)
                ],
                40
            ),
            [None, Some(ImplausibleJump), Some(ImplausibleJump), None, None]
        );
    }

    #[test]
    fn event_data_is_a_valid_courier_position() {
        let mut f = fix(0, 0.0);
        f.speed_kmh = Some(18.519_999);
        f.battery = Some(42.0);
        let data = f.event_data(Some(PositionFlag::Stale));
        assert_eq!(data["speed_kmh"], json!(18.52));
        assert_eq!(data["flag"], json!("stale"));
        let parsed = crate::catalogue::EventData::parse("courier.position", Some(&data)).unwrap();
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
