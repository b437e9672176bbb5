//! Fast strict check of canonical schema-1 record bytes, used by the verifier's hot loop.
//!
//! Walks the exact member sequence [`crate::record::AuditRecord::write_canonical`] emits,
//! checking JSON syntax, canonical string escapes, canonical integers and enum values, and
//! returns the record's `time_ms`. It accepts exactly the canonical encodings of valid
//! records (a property test checks this against the encoder); anything else goes to the
//! slower serde path in [`crate::record`] for a precise diagnosis. Leaves out building a
//! record value.

use crate::canonical::MAX_SAFE_INTEGER;
use crate::record::SCHEMA_VERSION;

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    /// Consumes `expected` if the input continues with it. Fixed-size arrays let the
    /// compiler turn the comparison into a few word compares instead of a `memcmp` call.
    #[inline]
    fn literal<const N: usize>(&mut self, expected: &[u8; N]) -> Option<()> {
        let end = self.position.checked_add(N)?;
        let found: &[u8; N] = self.bytes.get(self.position..end)?.try_into().ok()?;
        if found == expected {
            self.position = end;
            Some(())
        } else {
            None
        }
    }

    #[inline]
    fn optional<const N: usize>(&mut self, expected: &[u8; N]) -> bool {
        self.literal(expected).is_some()
    }

    /// A string in canonical JCS escaping (the bytes were already checked to be UTF-8).
    fn string(&mut self) -> Option<()> {
        self.literal(b"\"")?;
        loop {
            self.position += find_special(self.bytes.get(self.position..)?)?;
            let byte = *self.bytes.get(self.position)?;
            self.position += 1;
            match byte {
                b'"' => return Some(()),
                b'\\' => {
                    let escape = *self.bytes.get(self.position)?;
                    self.position += 1;
                    match escape {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let digits = self.bytes.get(self.position..self.position + 4)?;
                            self.position += 4;
                            // Only control characters without a short escape use \u00xx.
                            let [b'0', b'0', high @ (b'0' | b'1'), low] = *digits else {
                                return None;
                            };
                            let low = match low {
                                b'0'..=b'9' => low - b'0',
                                b'a'..=b'f' => low - b'a' + 10,
                                _ => return None,
                            };
                            let value = (high - b'0') * 16 + low;
                            if matches!(value, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// A canonical non-negative integer no larger than 2^53 - 1.
    fn integer(&mut self) -> Option<u64> {
        let first = *self.bytes.get(self.position)?;
        if first == b'0' {
            self.position += 1;
            return match self.bytes.get(self.position) {
                Some(b'0'..=b'9') => None,
                _ => Some(0),
            };
        }
        let mut value: u64 = 0;
        let start = self.position;
        while let Some(&digit @ b'0'..=b'9') = self.bytes.get(self.position) {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            self.position += 1;
        }
        (self.position > start && value <= MAX_SAFE_INTEGER).then_some(value)
    }

    fn boolean(&mut self) -> Option<()> {
        if self.optional(b"true") || self.optional(b"false") {
            Some(())
        } else {
            None
        }
    }

    fn decision(&mut self) -> Option<()> {
        (self.optional(b"\"ALLOW\"")
            || self.optional(b"\"FLAG\"")
            || self.optional(b"\"REDACT\"")
            || self.optional(b"\"BLOCK\"")
            || self.optional(b"\"ERROR\""))
        .then_some(())
    }

    fn kind(&mut self) -> Option<()> {
        (self.optional(b"\"request\"")
            || self.optional(b"\"completion\"")
            || self.optional(b"\"gap\""))
        .then_some(())
    }
}

/// Offset of the first byte in `rest` that ends a run of plain string content: `"`, `\\`
/// or a control character. Scans eight bytes at a time (SWAR): for each test the lowest
/// flagged byte is exact, because borrows only propagate towards higher bytes.
fn find_special(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut offset = 0;
    let mut chunks = rest.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut word_bytes = [0u8; 8];
        word_bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word_bytes);
        let flagged = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS);
        if flagged != 0 {
            return Some(offset + (flagged.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        .map(|position| offset + position)
}

/// Returns the record's `time_ms` if `bytes` is a canonical schema-1 record, `None`
/// otherwise (including newer schemas, which the slow path reports precisely).
pub(crate) fn canonical_record_time(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?;
    let mut cursor = Cursor { bytes, position: 0 };
    cursor.literal(b"{\"decision\":")?;
    cursor.decision()?;
    if cursor.optional(b",\"encrypted_content\":") {
        cursor.string()?;
    }
    cursor.literal(b",\"findings\":[")?;
    if !cursor.optional(b"]") {
        loop {
            cursor.literal(b"{\"action\":")?;
            cursor.string()?;
            cursor.literal(b",\"count\":")?;
            cursor.integer()?;
            cursor.literal(b",\"rule_id\":")?;
            cursor.string()?;
            cursor.literal(b"}")?;
            if cursor.optional(b"]") {
                break;
            }
            cursor.literal(b",")?;
        }
    }
    if cursor.optional(b",\"gap\":{\"lost\":") {
        cursor.integer()?;
        cursor.literal(b",\"reason\":")?;
        cursor.string()?;
        cursor.literal(b"}")?;
    }
    if cursor.optional(b",\"http_status\":") && cursor.integer()? > u64::from(u16::MAX) {
        return None;
    }
    cursor.literal(b",\"key_id\":")?;
    cursor.string()?;
    cursor.literal(b",\"kind\":")?;
    cursor.kind()?;
    if cursor.optional(b",\"latency\":{") {
        // Members in order, each optional, at least one, comma-separated.
        let mut members = 0u32;
        let mut member = |cursor: &mut Cursor<'_>, present: fn(&mut Cursor<'_>) -> bool| {
            let saved = cursor.position;
            if (members == 0 || cursor.optional(b",")) && present(cursor) {
                members += 1;
                cursor.integer().map(|_| ())
            } else {
                cursor.position = saved;
                Some(())
            }
        };
        member(&mut cursor, |c| c.optional(b"\"overhead_us\":"))?;
        member(&mut cursor, |c| c.optional(b"\"total_us\":"))?;
        member(&mut cursor, |c| c.optional(b"\"ttft_us\":"))?;
        member(&mut cursor, |c| c.optional(b"\"upstream_us\":"))?;
        if members == 0 {
            return None;
        }
        cursor.literal(b"}")?;
    }
    cursor.literal(b",\"model\":")?;
    cursor.string()?;
    cursor.literal(b",\"provider\":")?;
    cursor.string()?;
    if cursor.optional(b",\"request_hash\":") {
        cursor.string()?;
    }
    cursor.literal(b",\"request_id\":")?;
    cursor.string()?;
    if cursor.optional(b",\"response_hash\":") {
        cursor.string()?;
    }
    cursor.literal(b",\"route\":")?;
    cursor.string()?;
    cursor.literal(b",\"schema\":")?;
    if cursor.integer()? != u64::from(SCHEMA_VERSION) {
        return None;
    }
    cursor.literal(b",\"stream\":")?;
    cursor.boolean()?;
    cursor.literal(b",\"tenant_id\":")?;
    cursor.string()?;
    cursor.literal(b",\"time_ms\":")?;
    let time_ms = cursor.integer()?;
    if cursor.optional(b",\"usage\":{\"cached\":") {
        cursor.integer()?;
        cursor.literal(b",\"estimated\":")?;
        cursor.boolean()?;
        cursor.literal(b",\"input\":")?;
        cursor.integer()?;
        cursor.literal(b",\"output\":")?;
        cursor.integer()?;
        cursor.literal(b"}")?;
    }
    cursor.literal(b"}")?;
    (cursor.position == bytes.len()).then_some(time_ms)
}

#[cfg(test)]
mod tests {
    use super::find_special;

    #[test]
    fn find_special_matches_the_simple_scan() {
        let simple = |rest: &[u8]| {
            rest.iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        };
        let samples: [&[u8]; 8] = [
            b"",
            b"abc",
            b"abcdefgh\"",
            b"abcdefghijklmnop\\x",
            b"\xff\xfe\xa0\x80\x7f abc\x1f",
            b"\x1f\"",
            b"12345678\x00",
            "\u{e9}\u{1f600}xyzxyzxyz\"".as_bytes(),
        ];
        for sample in samples {
            assert_eq!(find_special(sample), simple(sample), "{sample:?}");
        }
        for byte in 0..=255u8 {
            for at in 0..17 {
                let mut buffer = vec![b'a'; 20];
                buffer[at] = byte;
                assert_eq!(
                    find_special(&buffer),
                    simple(&buffer),
                    "byte {byte} at {at}"
                );
            }
        }
    }
}
