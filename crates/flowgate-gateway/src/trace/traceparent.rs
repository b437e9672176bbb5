//! W3C Trace Context `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`):
//! parsing an incoming header and formatting the one sent upstream. Malformed headers parse to
//! `None` (the request starts a new trace); `tracestate` is not handled.

use super::{SpanId, TraceId};
use http::HeaderValue;

/// A valid incoming `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The caller's span: the parent of this request's root span.
    pub parent_id: SpanId,
    /// The caller recorded its side (`flags & 1`); followed as the sampling decision.
    pub sampled: bool,
    /// Version `00` and nothing after the flags: the header can be forwarded as is.
    pub canonical: bool,
}

/// Length of a version-00 header.
const LENGTH: usize = 55;

/// Parses a `traceparent` value per W3C Trace Context level 1: lowercase hex only, version
/// `ff` refused, version `00` exactly 55 characters, a later version at least 55 followed by
/// `-`; all-zero trace and parent ids refused.
pub fn parse(value: &[u8]) -> Option<TraceParent> {
    if value.len() < LENGTH {
        return None;
    }
    let version = hex_byte(value[0], value[1])?;
    if version == 0xff || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    if version == 0 && value.len() != LENGTH {
        return None;
    }
    if value.len() > LENGTH && value[LENGTH] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (index, byte) in trace_id.iter_mut().enumerate() {
        *byte = hex_byte(value[3 + 2 * index], value[4 + 2 * index])?;
    }
    let mut parent_id = [0u8; 8];
    for (index, byte) in parent_id.iter_mut().enumerate() {
        *byte = hex_byte(value[36 + 2 * index], value[37 + 2 * index])?;
    }
    let flags = hex_byte(value[53], value[54])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId(trace_id),
        parent_id: SpanId(parent_id),
        sampled: flags & 1 == 1,
        canonical: version == 0 && value.len() == LENGTH,
    })
}

/// The version-00 header for a span of `trace_id`.
pub fn format(trace_id: TraceId, span_id: SpanId, sampled: bool) -> HeaderValue {
    let mut buffer = [0u8; LENGTH];
    buffer[..3].copy_from_slice(b"00-");
    write_hex(&trace_id.0, &mut buffer[3..35]);
    buffer[35] = b'-';
    write_hex(&span_id.0, &mut buffer[36..52]);
    buffer[52] = b'-';
    buffer[53] = b'0';
    buffer[54] = if sampled { b'1' } else { b'0' };
    // Every byte written above is ASCII hex or `-`, which a header value always accepts.
    HeaderValue::from_bytes(&buffer).unwrap_or_else(|_| HeaderValue::from_static(""))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(super) fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (index, byte) in bytes.iter().enumerate() {
        out[2 * index] = HEX[usize::from(byte >> 4)];
        out[2 * index + 1] = HEX[usize::from(byte & 0x0f)];
    }
}

fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    Some(hex_digit(high)? << 4 | hex_digit(low)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_gives_ids_and_the_sampled_flag() {
        let parsed = parse(VALID.as_bytes()).expect("valid");
        assert_eq!(
            parsed.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(parsed.sampled);
        assert!(parsed.canonical);
        let unsampled =
            parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!unsampled.sampled);
        // Other flag bits do not make a request sampled.
        let other_flags =
            parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").expect("valid");
        assert!(!other_flags.sampled);
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let parsed = parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
            .expect("a future version is read as version 00");
        assert!(!parsed.canonical);
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_none());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            // version ff is invalid
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // wrong lengths
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "",
            // uppercase and non-hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // wrong separators
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?} should be refused");
        }
    }

    #[test]
    fn format_round_trips() {
        let parsed = parse(VALID.as_bytes()).expect("valid");
        let header = format(parsed.trace_id, parsed.parent_id, true);
        assert_eq!(header, VALID);
        let unsampled = format(parsed.trace_id, parsed.parent_id, false);
        assert_eq!(
            unsampled,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }
}
