//! Writing events as JSON text straight into a reused buffer: no value trees, no
//! allocation per event.

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // The buffer holds only ASCII digits.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

pub fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends `x` with exactly `DECIMALS` decimals, without float formatting.
fn push_fixed<const DECIMALS: u32>(out: &mut String, x: f64) {
    let scale = 10u64.pow(DECIMALS);
    let scaled = (x * scale as f64).round() as i64;
    if scaled < 0 {
        out.push('-');
    }
    let m = scaled.unsigned_abs();
    push_u64(out, m / scale);
    out.push('.');
    let mut frac = m % scale;
    let mut digits = [b'0'; 20];
    let digits = &mut digits[..DECIMALS as usize];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    // The buffer holds only ASCII digits.
    out.push_str(std::str::from_utf8(digits).unwrap_or("0"));
}

/// Appends `x` with exactly six decimals (coordinates).
pub fn push_fixed6(out: &mut String, x: f64) {
    push_fixed::<6>(out, x);
}

/// Appends `x` with one decimal (speeds, distances).
pub fn push_fixed1(out: &mut String, x: f64) {
    push_fixed::<1>(out, x);
}

/// Appends `s` as the inside of a JSON string, escaping what must be escaped.
pub fn push_escaped(out: &mut String, s: &str) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                let n = c as u32;
                out.push(char::from_digit(n >> 4, 16).unwrap_or('0'));
                out.push(char::from_digit(n & 15, 16).unwrap_or('0'));
            }
            c => out.push(c),
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends an instant (microseconds since the epoch) exactly as
/// `troth_core::Timestamp`'s Display writes it: `2026-11-23T09:15:00.000000Z`.
pub fn push_time(out: &mut String, micros: i64) {
    let days = micros.div_euclid(86_400_000_000);
    let rem = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / 1_000_000;
    let us = rem % 1_000_000;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let put = |b: &mut [u8; 27], at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut b, 0, 4, y.clamp(0, 9999) as u64);
    put(&mut b, 5, 2, u64::from(m));
    put(&mut b, 8, 2, u64::from(d));
    put(&mut b, 11, 2, (secs / 3600) as u64);
    put(&mut b, 14, 2, (secs / 60 % 60) as u64);
    put(&mut b, 17, 2, (secs % 60) as u64);
    put(&mut b, 20, 6, us as u64);
    out.push_str(std::str::from_utf8(&b).unwrap_or("1970-01-01T00:00:00.000000Z"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use troth_core::Timestamp;

    #[test]
    fn times_match_timestamp_display() {
        let mut s = String::new();
        for micros in [
            0i64,
            1_795_000_000_123_456,
            951_782_400_000_000, // 2000-02-29
            4_102_444_799_999_999,
            1_709_251_199_000_001,
        ] {
            s.clear();
            push_time(&mut s, micros);
            assert_eq!(s, Timestamp(micros).to_string());
        }
        let mut t = 1_700_000_000_000_000i64;
        for _ in 0..2_000 {
            t += 86_399_999_977;
            s.clear();
            push_time(&mut s, t);
            assert_eq!(s, Timestamp(t).to_string());
        }
    }

    #[test]
    fn numbers_and_text() {
        let mut s = String::new();
        push_fixed6(&mut s, 48.8566);
        s.push(' ');
        push_fixed6(&mut s, -0.0000004);
        s.push(' ');
        push_fixed6(&mut s, -2.5);
        s.push(' ');
        push_i64(&mut s, -42);
        s.push(' ');
        push_fixed1(&mut s, 23.46);
        s.push(' ');
        push_escaped(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "48.856600 0.000000 -2.500000 -42 23.5 a\\\"b\\\\c\\nd\\u0001é");
    }
}
