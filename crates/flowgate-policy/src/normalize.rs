//! Text normalisation before matching, with a map back to the original bytes.
//!
//! Owns: NFKC (which also folds full-width digits and letters), removal of invisible and
//! bidirectional control characters (recording where they were, for the `invisible_text`
//! detector), the offset map from normalised byte offsets to original byte offsets, and the
//! ASCII fast path (plain ASCII text is already normalised, so nothing is copied or mapped).
//! Leaves out: matching itself, and case folding (matchers fold ASCII case themselves).

use std::borrow::Cow;
use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::canonical_combining_class;

/// Text as the detectors see it, plus how to get back to the original bytes.
pub(crate) struct Normalized<'a> {
    /// The normalised text (borrowed when the original was already normal).
    text: Cow<'a, str>,
    /// For normalised byte `j`, the original byte offset where the segment producing it
    /// starts. Empty on the fast path (identity map).
    starts: Vec<u32>,
    /// For normalised byte `j`, the original byte offset where that segment ends.
    ends: Vec<u32>,
    /// Original-byte spans of removed invisible characters (adjacent ones merged).
    invisible: Vec<(usize, usize)>,
}

impl fmt::Debug for Normalized<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the text: it may hold the secrets being screened.
        f.debug_struct("Normalized")
            .field("len", &self.text.len())
            .field("mapped", &!self.starts.is_empty())
            .field("invisible_spans", &self.invisible.len())
            .finish()
    }
}

/// Whether a character is removed before matching and reported as invisible text.
///
/// `prev` and `next` are the neighbouring characters: a zero-width joiner between two
/// non-ASCII characters is part of an emoji or script sequence and is kept.
pub(crate) fn is_invisible(c: char, prev: Option<char>, next: Option<char>) -> bool {
    match c {
        '\u{200D}' => prev.is_none_or(|p| p.is_ascii()) || next.is_none_or(|n| n.is_ascii()),
        '\u{00AD}'
        | '\u{180E}'
        | '\u{200B}'
        | '\u{200C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}'
        | '\u{E0000}'..='\u{E007F}' => true,
        _ => false,
    }
}

impl<'a> Normalized<'a> {
    /// Normalises `original`. Plain ASCII takes the fast path: no copy, no map.
    pub(crate) fn new(original: &'a str) -> Self {
        if original.is_ascii() {
            return Normalized {
                text: Cow::Borrowed(original),
                starts: Vec::new(),
                ends: Vec::new(),
                invisible: Vec::new(),
            };
        }
        Self::slow(original)
    }

    fn slow(original: &'a str) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut starts: Vec<u32> = Vec::with_capacity(original.len());
        let mut ends: Vec<u32> = Vec::with_capacity(original.len());
        let mut invisible: Vec<(usize, usize)> = Vec::new();
        let mut segment = String::new();
        let mut segment_start = 0usize;
        let mut prev: Option<char> = None;

        // Offsets are stored as u32: texts of 4 GiB and more are not screened by one call.
        let flush = |segment: &mut String,
                     segment_start: usize,
                     segment_end: usize,
                     text: &mut String,
                     starts: &mut Vec<u32>,
                     ends: &mut Vec<u32>| {
            if segment.is_empty() {
                return;
            }
            let before = text.len();
            if segment.is_ascii() {
                text.push_str(segment);
            } else {
                text.extend(segment.nfkc());
            }
            let added = text.len() - before;
            starts.extend(std::iter::repeat_n(to_u32(segment_start), added));
            ends.extend(std::iter::repeat_n(to_u32(segment_end), added));
            segment.clear();
        };

        let bytes = original.as_bytes();
        let mut offset = 0;
        while offset < bytes.len() {
            if bytes[offset].is_ascii() {
                // A run of ASCII: every character but the last goes straight through (no
                // combining mark can follow it); the last may start a segment with marks.
                let run_end = ascii_run_end(bytes, offset);
                flush(
                    &mut segment,
                    segment_start,
                    offset,
                    &mut text,
                    &mut starts,
                    &mut ends,
                );
                let direct_end = if run_end < bytes.len() {
                    run_end - 1
                } else {
                    run_end
                };
                text.push_str(&original[offset..direct_end]);
                let (run_start, run_stop) = (to_u32(offset), to_u32(direct_end));
                starts.extend(run_start..run_stop);
                ends.extend(run_start.saturating_add(1)..run_stop.saturating_add(1));
                if direct_end < run_end {
                    segment_start = direct_end;
                    segment.push(char::from(bytes[direct_end]));
                }
                prev = Some(char::from(bytes[run_end - 1]));
                offset = run_end;
                continue;
            }
            let Some(c) = original[offset..].chars().next() else {
                break;
            };
            let next = original[offset + c.len_utf8()..].chars().next();
            if is_invisible(c, prev, next) {
                flush(
                    &mut segment,
                    segment_start,
                    offset,
                    &mut text,
                    &mut starts,
                    &mut ends,
                );
                let end = offset + c.len_utf8();
                match invisible.last_mut() {
                    Some(last) if last.1 == offset => last.1 = end,
                    _ => invisible.push((offset, end)),
                }
                segment_start = end;
                offset = end;
                // The neighbour of the next character is still the last visible one.
                continue;
            }
            // A new segment starts at every starter (combining class 0): composition only
            // ever joins a starter with the marks that follow it.
            if canonical_combining_class(c) == 0 {
                flush(
                    &mut segment,
                    segment_start,
                    offset,
                    &mut text,
                    &mut starts,
                    &mut ends,
                );
                segment_start = offset;
            }
            segment.push(c);
            prev = Some(c);
            offset += c.len_utf8();
        }
        flush(
            &mut segment,
            segment_start,
            original.len(),
            &mut text,
            &mut starts,
            &mut ends,
        );
        Normalized {
            text: Cow::Owned(text),
            starts,
            ends,
            invisible,
        }
    }

    /// The normalised text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Original-byte spans of the invisible characters that were removed.
    pub(crate) fn invisible_spans(&self) -> &[(usize, usize)] {
        &self.invisible
    }

    /// Maps a normalised span back to the original bytes it came from. The result always
    /// covers whole original characters and whole normalisation segments.
    pub(crate) fn to_original(&self, start: usize, end: usize) -> (usize, usize) {
        if self.starts.is_empty() {
            return (start, end);
        }
        let len = self.starts.len();
        let original_start = if start < len {
            self.starts[start] as usize
        } else {
            self.ends.last().map_or(0, |&e| e as usize)
        };
        let original_end = if end == 0 {
            original_start
        } else {
            self.ends
                .get(end.min(len) - 1)
                .map_or(original_start, |&e| e as usize)
        };
        (original_start, original_end.max(original_start))
    }
}

/// The end of the run of ASCII bytes starting at `from` (eight bytes at a time).
fn ascii_run_end(bytes: &[u8], mut from: usize) -> usize {
    while let Some(word) = bytes
        .get(from..from + 8)
        .and_then(|chunk| <[u8; 8]>::try_from(chunk).ok())
    {
        if u64::from_le_bytes(word) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        from += 8;
    }
    bytes[from..]
        .iter()
        .position(|b| !b.is_ascii())
        .map_or(bytes.len(), |p| from + p)
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_is_borrowed_and_identity() {
        let n = Normalized::new("card 4111 1111");
        assert!(matches!(n.text, Cow::Borrowed(_)));
        assert_eq!(n.to_original(5, 9), (5, 9));
    }

    #[test]
    fn full_width_digits_fold_and_map_back() {
        let original = "pay ４１１１ now";
        let n = Normalized::new(original);
        assert_eq!(n.text(), "pay 4111 now");
        let (s, e) = n.to_original(4, 8);
        assert_eq!(&original[s..e], "４１１１");
    }

    #[test]
    fn zero_width_is_stripped_and_recorded() {
        let original = "41\u{200B}11 ok";
        let n = Normalized::new(original);
        assert_eq!(n.text(), "4111 ok");
        assert_eq!(n.invisible_spans(), &[(2, 5)]);
        let (s, e) = n.to_original(0, 4);
        assert_eq!(&original[s..e], "41\u{200B}11");
    }

    #[test]
    fn combining_marks_compose() {
        let original = "cafe\u{301} x";
        let n = Normalized::new(original);
        assert_eq!(n.text(), "café x");
        let (s, e) = n.to_original(3, 5);
        assert_eq!(&original[s..e], "e\u{301}");
    }

    #[test]
    fn emoji_zero_width_joiner_is_kept() {
        let family = "\u{1F468}\u{200D}\u{1F469}";
        let n = Normalized::new(family);
        assert!(n.invisible_spans().is_empty());
        assert_eq!(n.text(), family);
    }

    #[test]
    fn bidi_override_and_tags_are_invisible() {
        let n = Normalized::new("a\u{202E}b\u{E0041}c");
        assert_eq!(n.text(), "abc");
        assert_eq!(n.invisible_spans().len(), 2);
    }

    proptest! {
        #[test]
        fn mapped_spans_are_char_boundaries_and_ordered(original in "\\PC{0,40}") {
            let n = Normalized::new(&original);
            let len = n.text().len();
            let mut last_start = 0;
            for start in 0..=len {
                if !n.text().is_char_boundary(start) { continue; }
                for end in start..=len {
                    if !n.text().is_char_boundary(end) { continue; }
                    let (s, e) = n.to_original(start, end);
                    prop_assert!(s <= e && e <= original.len());
                    prop_assert!(original.is_char_boundary(s) && original.is_char_boundary(e));
                }
                let (s, _) = n.to_original(start, start);
                prop_assert!(s >= last_start);
                last_start = s;
            }
        }

        #[test]
        fn matches_whole_string_nfkc(original in "[a-z0-9 .é\u{301}\u{308}ＡＢ１２ﬁ①]{0,40}") {
            let n = Normalized::new(&original);
            let expected: String = original.nfkc().collect();
            prop_assert_eq!(n.text(), expected.as_str());
        }

        #[test]
        fn ascii_digits_survive_with_exact_offsets(prefix in "[a-z ]{0,10}", digits in "[0-9]{1,12}", noise in "[é\u{200B}ü]{1,3}") {
            let original = format!("{noise}{prefix}{digits}");
            let n = Normalized::new(&original);
            let at = n.text().find(&digits).unwrap();
            let (s, e) = n.to_original(at, at + digits.len());
            prop_assert_eq!(&original[s..e], digits.as_str());
        }
    }
}
