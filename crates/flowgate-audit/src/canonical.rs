//! RFC 8785 JSON Canonicalization Scheme (JCS) writer.
//!
//! Owns the byte-exact encoding every audit leaf is hashed over: object members sorted by
//! their UTF-16 code units, no whitespace, strings escaped as ECMAScript `JSON.stringify`
//! does, and numbers in the ECMAScript `Number.prototype.toString` form of their IEEE 754
//! double value. The low-level writers ([`write_str`], [`write_u64`]) are public so the
//! record encoder can emit a fixed schema without building a `serde_json::Value` first.
//!
//! Leaves out parsing (serde_json does that) and duplicate-key detection in raw text (a
//! `serde_json::Value` cannot hold duplicates).

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::Value;

/// Largest integer an IEEE 754 double holds exactly (2^53 - 1). Integers above it are written
/// in their double form, as JCS requires.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A value cannot be canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// NaN and infinities have no JSON form.
    #[error("number {text} is not finite")]
    NonFiniteNumber {
        /// The offending number as Rust prints it.
        text: String,
    },
}

/// Canonicalises `value` into a fresh buffer.
///
/// # Errors
/// [`CanonicalError::NonFiniteNumber`] for a number with no finite double value.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical form of `value` to `out`.
///
/// # Errors
/// [`CanonicalError::NonFiniteNumber`] for a number with no finite double value.
pub fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            if let Some(unsigned) = number.as_u64() {
                write_u64(unsigned, out);
            } else if let Some(signed) = number.as_i64() {
                write_i64(signed, out);
            } else {
                let double = number
                    .as_f64()
                    .ok_or_else(|| CanonicalError::NonFiniteNumber {
                        text: number.to_string(),
                    })?;
                write_f64(double, out)?;
            }
        }
        Value::String(text) => write_str(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|left, right| compare_utf16(left.0, right.0));
            out.push(b'{');
            for (position, (key, item)) in sorted.into_iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Orders two member names by their UTF-16 code units, as RFC 8785 §3.2.3 requires.
#[must_use]
pub fn compare_utf16(left: &str, right: &str) -> Ordering {
    // UTF-8 byte order equals code point order, which differs from UTF-16 order only when a
    // supplementary character meets one in U+E000..=U+FFFF; ASCII needs no transcoding.
    if left.is_ascii() && right.is_ascii() {
        return left.as_bytes().cmp(right.as_bytes());
    }
    left.encode_utf16().cmp(right.encode_utf16())
}

/// Appends `text` as a JSON string: `"` and `\` escaped, the short escapes `\b \f \n \r \t`,
/// other control characters as `\u00xx` (lowercase hex), everything else verbatim UTF-8.
pub fn write_str(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean_from..position]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        } else {
            out.extend_from_slice(escape);
        }
        clean_from = position + 1;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

/// Appends an unsigned integer. Values above [`MAX_SAFE_INTEGER`] are written as the double
/// they round to, which is what any JCS implementation reading them produces.
pub fn write_u64(value: u64, out: &mut Vec<u8>) {
    if value <= MAX_SAFE_INTEGER {
        write_decimal(value, out);
    } else {
        // A u64 converts to a finite double, so this cannot fail.
        #[expect(clippy::cast_precision_loss, reason = "JCS numbers are doubles")]
        let double = value as f64;
        write_finite_f64(double, out);
    }
}

/// Appends a signed integer, with the same rule as [`write_u64`] for large magnitudes.
pub fn write_i64(value: i64, out: &mut Vec<u8>) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(value.unsigned_abs(), out);
}

fn write_decimal(mut value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `value % 10` is below 10, so the cast keeps it intact.
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends a double in the ECMAScript `Number.prototype.toString` form (RFC 8785 §3.2.2.3).
///
/// # Errors
/// [`CanonicalError::NonFiniteNumber`] for NaN and infinities.
pub fn write_f64(value: f64, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if !value.is_finite() {
        return Err(CanonicalError::NonFiniteNumber {
            text: value.to_string(),
        });
    }
    write_finite_f64(value, out);
    Ok(())
}

/// Fixed buffer for the shortest round-trip digits Rust's `{:e}` produces (at most 17
/// significant digits, a point, and a four-character exponent).
struct DigitBuffer {
    bytes: [u8; 40],
    len: usize,
}

impl std::fmt::Write for DigitBuffer {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn write_finite_f64(value: f64, out: &mut Vec<u8>) {
    if value == 0.0 {
        // Both zeros print as "0".
        out.push(b'0');
        return;
    }
    if value < 0.0 {
        out.push(b'-');
    }
    let mut buffer = DigitBuffer {
        bytes: [0; 40],
        len: 0,
    };
    // Rust's LowerExp without a precision prints the shortest digits that round-trip, which
    // is exactly the digit string ECMAScript's algorithm selects; only the layout differs.
    if write!(buffer, "{:e}", value.abs()).is_err() {
        // Cannot happen: the longest form is 17 digits, a point and "e-324", well under 40.
        out.extend_from_slice(value.to_string().as_bytes());
        return;
    }
    // When two digit strings of that shortest length are equally close to the exact value,
    // ECMAScript picks the even one while `{:e}` rounds half up; the exact-precision mode
    // rounds half to even, so reprint with the same number of significant digits.
    let shortest_digits = buffer.bytes[..buffer.len]
        .iter()
        .take_while(|&&b| b != b'e')
        .filter(|b| b.is_ascii_digit())
        .count();
    if shortest_digits > 15 {
        buffer.len = 0;
        if write!(buffer, "{:.*e}", shortest_digits - 1, value.abs()).is_err() {
            out.extend_from_slice(value.to_string().as_bytes());
            return;
        }
    }
    let text = &buffer.bytes[..buffer.len];
    let exponent_at = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let mut digits = [0u8; 20];
    let mut digit_count = 0usize;
    for &byte in &text[..exponent_at] {
        if byte.is_ascii_digit() && digit_count < digits.len() {
            digits[digit_count] = byte;
            digit_count += 1;
        }
    }
    let exponent = parse_exponent(&text[(exponent_at + 1).min(text.len())..]);
    // Exact mode never leaves trailing zeros at the shortest length, but stay safe.
    while digit_count > 1 && digits[digit_count - 1] == b'0' {
        digit_count -= 1;
    }
    let digits = &digits[..digit_count];
    let k = i32::try_from(digit_count).unwrap_or(i32::MAX);
    // ECMAScript's n: the value is 0.d1d2...dk × 10^n.
    let n = exponent + 1;
    if k <= n && n <= 21 {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(
            b'0',
            usize::try_from(n - k).unwrap_or(0),
        ));
    } else if 0 < n && n <= 21 {
        let split = usize::try_from(n).unwrap_or(0);
        out.extend_from_slice(&digits[..split]);
        out.push(b'.');
        out.extend_from_slice(&digits[split..]);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', usize::try_from(-n).unwrap_or(0)));
        out.extend_from_slice(digits);
    } else {
        out.push(digits.first().copied().unwrap_or(b'0'));
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        let shown = n - 1;
        out.push(if shown < 0 { b'-' } else { b'+' });
        write_decimal(u64::from(shown.unsigned_abs()), out);
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, magnitude) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let value = magnitude
        .iter()
        .filter(|b| b.is_ascii_digit())
        .fold(0i32, |acc, &b| acc * 10 + i32::from(b - b'0'));
    if negative { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(json: &str) -> String {
        let value: Value = serde_json::from_str(json).expect("test input is JSON");
        String::from_utf8(to_vec(&value).expect("finite")).expect("UTF-8")
    }

    fn double(bits: u64) -> String {
        let mut out = Vec::new();
        write_f64(f64::from_bits(bits), &mut out).expect("finite");
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let mut value: Value = serde_json::from_str(input).expect("test input is JSON");
        // serde_json's default float parser is not correctly rounded for every input (its
        // `float_roundtrip` feature is, but slows every JSON parse in the workspace), so
        // the numbers go through Rust's correctly rounded `str::parse`.
        value["numbers"] = [
            "333333333.33333329",
            "1E30",
            "4.50",
            "2e-3",
            "0.000000000000000000000000001",
        ]
        .iter()
        .map(|text| Value::from(text.parse::<f64>().expect("number")))
        .collect();
        let bytes = to_vec(&value).expect("finite");
        assert_eq!(
            String::from_utf8(bytes).expect("UTF-8"),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
             \"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting_by_utf16() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
            \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canonical(input), expected);
    }

    #[test]
    fn rfc8785_appendix_b_numbers() {
        let table: [(u64, &str); 24] = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, expected) in table {
            assert_eq!(double(bits), expected, "bits {bits:016x}");
        }
        let mut out = Vec::new();
        assert!(write_f64(f64::NAN, &mut out).is_err());
        assert!(write_f64(f64::INFINITY, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn integers_and_large_integers() {
        assert_eq!(
            canonical("[0,-0,1,-1,9007199254740991,18446744073709551615]"),
            "[0,0,1,-1,9007199254740991,18446744073709552000]"
        );
        assert_eq!(canonical("-9223372036854775808"), "-9223372036854776000");
        assert_eq!(canonical("[1.0,100,1e2,0.1]"), "[1,100,100,0.1]");
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            canonical(r#""\u0000\u001f\u007f\b\f\t/<>\u2028""#),
            "\"\\u0000\\u001f\u{7f}\\b\\f\\t/<>\u{2028}\""
        );
        assert_eq!(
            canonical(r#"{"b":{},"a":[],"":"x"}"#),
            r#"{"":"x","a":[],"b":{}}"#
        );
    }
}
