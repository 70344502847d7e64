//! How numbers are written: three significant digits in tables, thousands
//! grouped; short exact numbers in the CSV file.

use crate::system::{Mode, Role};

/// Three significant digits, thousands grouped: "12,345", "123", "1.23", "0.0123".
pub(crate) fn sig(value: f64) -> String {
    if !value.is_finite() {
        return "-".into();
    }
    let magnitude = value.abs();
    // 999.6 rounds to "1,000", not "1000".
    if magnitude >= 999.5 {
        let rounded = value.round();
        let sign = if rounded < 0.0 { "-" } else { "" };
        return format!("{sign}{}", group_digits(rounded.abs() as u64));
    }
    let decimals = |magnitude: f64| {
        if magnitude >= 100.0 || magnitude == 0.0 {
            0
        } else if magnitude >= 10.0 {
            1
        } else if magnitude >= 1.0 {
            2
        } else {
            // Three significant digits below 1.
            (2 - magnitude.log10().floor() as i32).clamp(2, 9) as usize
        }
    };
    let first = decimals(magnitude);
    // 99.97 rounds to 100.0, which has three digits before the point: one
    // decimal fewer ("100").
    let rounded: f64 = format!("{magnitude:.first$}").parse().unwrap_or(magnitude);
    let decimals = first.min(decimals(rounded));
    format!("{value:.decimals$}")
}

/// "1,234,567".
pub(crate) fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// "512 B", "4 KiB", "1 MiB".
pub(crate) fn bytes_label(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// A fraction as a percentage that never rounds a loss to "100".
pub(crate) fn percent_text(fraction: f64) -> String {
    let percent = fraction * 100.0;
    if fraction >= 1.0 {
        "100".into()
    } else if percent >= 99.9 {
        format!("{:.3}", (percent * 1000.0).floor() / 1000.0)
    } else if percent >= 10.0 {
        format!("{percent:.1}")
    } else {
        format!("{percent:.2}")
    }
}

pub(crate) fn mib(kib: u64) -> String {
    sig(kib as f64 / 1024.0)
}

pub(crate) fn micros(nanos: u64) -> String {
    sig(nanos as f64 / 1e3)
}

pub(crate) fn mode_name(mode: Option<Mode>) -> &'static str {
    mode.map_or("pipe", Mode::name)
}

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Producer => "producer",
        Role::Consumer => "consumer",
    }
}

/// A number without needless digits: integers plain, others to 6 significant digits.
pub(crate) fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        let text = format!("{value:.5e}");
        // Shortest round trip of the 6-significant-digit value.
        text.parse::<f64>()
            .map_or(text, |rounded| format!("{rounded}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(sig(123_456.7), "123,457");
        assert_eq!(sig(999.4), "999");
        assert_eq!(sig(999.97), "1,000");
        assert_eq!(sig(99.99), "100");
        assert_eq!(sig(9.999), "10.0");
        assert_eq!(sig(12.345), "12.3");
        assert_eq!(sig(1.2345), "1.23");
        assert_eq!(sig(0.012345), "0.0123");
        assert_eq!(sig(0.0), "0");
    }

    #[test]
    fn a_loss_never_shows_as_100_percent() {
        assert_eq!(percent_text(1.0), "100");
        assert_eq!(percent_text(0.999_999), "99.999");
        assert_eq!(percent_text(0.5), "50.0");
    }

    #[test]
    fn numbers_are_short_in_files() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.1234567), "0.123457");
        assert_eq!(format_number(1234.5678), "1234.57");
    }

    #[test]
    fn byte_labels_use_binary_units() {
        assert_eq!(bytes_label(4096), "4 KiB");
        assert_eq!(bytes_label(1 << 20), "1 MiB");
        assert_eq!(bytes_label(1000), "1000 B");
    }
}
