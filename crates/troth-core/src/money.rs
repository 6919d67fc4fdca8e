//! Amounts of money: troth stores them in minor units (`amount: 1999` with
//! `currency: "EUR"`), and writes them out in major units with as many decimals as
//! the currency has (ISO 4217's minor unit): €19.99, but ¥1999 and 1.999 KWD.

/// How many decimals a currency's amounts have: ISO 4217's minor unit. Currencies
/// not listed have two, as most do.
pub fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        // No minor unit in use.
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        // Thousandths.
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        // Units of account with four decimals.
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// `minor` units of `currency` in major units, `1999` EUR → `19.99`, JPY → `1999`,
/// KWD → `1.999`; negative amounts keep their sign.
pub fn major_units(minor: i64, currency: &str) -> String {
    let digits = minor_unit_digits(currency);
    if digits == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(digits);
    let magnitude = minor.unsigned_abs();
    let sign = if minor < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        magnitude / scale,
        magnitude % scale,
        width = digits as usize
    )
}

/// An amount as people read it: `€356.00`, `£20.00`, `$5.00`, `¥1999`; other
/// currencies after the number (`1.999 KWD`); without a currency, the number alone.
pub fn display(minor: i64, currency: &str) -> String {
    let plain = major_units(minor, currency);
    let (sign, digits) = match plain.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", plain.as_str()),
    };
    // Thousands grouped as the rest of the pages group counts: €1,264.96.
    let (whole, fraction) = digits.split_once('.').map_or((digits, None), |(w, f)| (w, Some(f)));
    let mut grouped = String::with_capacity(digits.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if let Some(fraction) = fraction {
        grouped.push('.');
        grouped.push_str(fraction);
    }
    let magnitude = grouped.as_str();
    let number = format!("{sign}{magnitude}");
    match currency {
        "EUR" => format!("{sign}€{magnitude}"),
        "GBP" => format!("{sign}£{magnitude}"),
        "USD" => format!("{sign}${magnitude}"),
        "JPY" => format!("{sign}¥{magnitude}"),
        "" => number,
        other => format!("{number} {other}"),
    }
}

/// An amount typed in major units (`20`, `20.5`, `1,264.96`) in minor units of
/// `currency`; `None` unless it is such a number, with no more decimals than the
/// currency has, and within range.
pub fn parse_major(text: &str, currency: &str) -> Option<i64> {
    let text = text.trim().replace(',', "");
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digits = minor_unit_digits(currency) as usize;
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || fraction.len() > digits {
        return None;
    }
    let scale = 10i64.pow(digits as u32);
    let fraction = format!("{fraction:0<digits$}");
    let fraction: i64 = if digits == 0 { 0 } else { fraction.parse().ok()? };
    whole.parse::<i64>().ok()?.checked_mul(scale)?.checked_add(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_typed_in_major_units() {
        for (text, currency, minor) in [
            ("20", "EUR", Some(2000)),
            ("20.5", "EUR", Some(2050)),
            (" 1,264.96 ", "EUR", Some(126_496)),
            ("0.05", "USD", Some(5)),
            ("1999", "JPY", Some(1999)),
            ("1.999", "KWD", Some(1999)),
            ("1.999", "EUR", None),
            ("1.5", "JPY", None),
            ("-5", "EUR", None),
            ("", "EUR", None),
            (".5", "EUR", None),
            ("5e3", "EUR", None),
            ("99999999999999999999", "EUR", None),
        ] {
            assert_eq!(parse_major(text, currency), minor, "{text:?} {currency}");
        }
    }

    #[test]
    fn amounts_are_written_with_their_symbol_and_grouped_thousands() {
        assert_eq!(display(126_496, "EUR"), "€1,264.96");
        assert_eq!(display(35_600, "EUR"), "€356.00");
        assert_eq!(display(-123_456_789, "GBP"), "-£1,234,567.89");
        assert_eq!(display(1_999, "JPY"), "¥1,999");
        assert_eq!(display(1_999, "KWD"), "1.999 KWD");
        assert_eq!(display(250, ""), "2.50");
    }

    #[test]
    fn amounts_have_their_currencys_decimals() {
        for (minor, currency, expected) in [
            (1999, "EUR", "19.99"),
            (5, "USD", "0.05"),
            (1999, "JPY", "1999"),
            (1999, "KWD", "1.999"),
            (7, "BHD", "0.007"),
            (12345, "CLF", "1.2345"),
            (-250, "GBP", "-2.50"),
            (i64::MIN, "EUR", "-92233720368547758.08"),
            (100, "XXX", "1.00"),
        ] {
            assert_eq!(major_units(minor, currency), expected, "{minor} {currency}");
        }
    }
}
