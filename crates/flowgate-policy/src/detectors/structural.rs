//! The structural scanner: one pass over the bytes of the normalised text that stops only at
//! digits, `@`, `:`, `+` and `(`, and turns what it finds there into candidates for payment
//! cards, IBANs, US SSNs, phone numbers, IPv4/IPv6 addresses and e-mail addresses, each then
//! checked by its validator. Leaves out literal-anchored detectors (secrets, injection
//! phrases, keywords), which the Aho-Corasick pass handles.

use std::net::Ipv6Addr;

use super::{Hit, card, iban, secret};
use crate::detector::{Confidence, DetectorId};

/// What the scanner should look for (built from the compiled rules).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StructuralSet {
    pub(crate) card: bool,
    pub(crate) iban: bool,
    pub(crate) ssn: bool,
    pub(crate) phone: bool,
    pub(crate) ip: bool,
    pub(crate) email: bool,
    /// Keyword-anchored secret assignments, found from their `=` / `:` operator.
    pub(crate) assignment: bool,
}

impl StructuralSet {
    pub(crate) fn any(self) -> bool {
        self.card || self.iban || self.ssn || self.phone || self.ip || self.email || self.assignment
    }
}

const DIGIT: u8 = 1;
const AT: u8 = 2;
const COLON: u8 = 3;
const PHONE_START: u8 = 4;
const EQUALS: u8 = 5;

/// Byte classes: zero for every byte the scanner skips.
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = b'0';
    while b <= b'9' {
        table[b as usize] = DIGIT;
        b += 1;
    }
    table[b'@' as usize] = AT;
    table[b':' as usize] = COLON;
    table[b'+' as usize] = PHONE_START;
    table[b'(' as usize] = PHONE_START;
    table[b'=' as usize] = EQUALS;
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `word` strictly between `low` and `high` (`high` <= 128);
/// exact, bytes >= 128 never count.
#[inline]
fn between_mask(word: u64, low: u8, high: u8) -> u64 {
    let low7 = word & (ONES * 127);
    (ONES * (127 + u64::from(high))).wrapping_sub(low7)
        & !word
        & low7.wrapping_add(ONES * (127 - u64::from(low)))
        & HIGHS
}

/// The next index at or after `i` whose byte has a class, or `bytes.len()`. Reads eight
/// bytes at a time and only looks at bytes in `(`..=`@` (a superset of the classified bytes,
/// so nothing is missed; one range test is cheaper than two exact ones).
#[inline]
fn next_interesting(bytes: &[u8], mut i: usize) -> usize {
    let n = bytes.len();
    while i < n {
        if let Some(word) = bytes
            .get(i..i + 8)
            .and_then(|chunk| <[u8; 8]>::try_from(chunk).ok())
        {
            let packed = u64::from_le_bytes(word);
            let mut mask = between_mask(packed, b'(' - 1, b'@' + 1);
            while mask != 0 {
                let offset = (mask.trailing_zeros() / 8) as usize;
                if CLASS[word[offset] as usize] != 0 {
                    return i + offset;
                }
                mask &= mask - 1;
            }
            i += 8;
        } else {
            if CLASS[bytes[i] as usize] != 0 {
                return i;
            }
            i += 1;
        }
    }
    n
}

/// Longest run of digit groups the scanner assembles (bytes).
const MAX_RUN_BYTES: usize = 48;
/// Most digit groups in one run.
const MAX_GROUPS: usize = 12;

pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Runs the scanner over `text`, appending validated hits.
pub(crate) fn scan(
    text: &str,
    set: StructuralSet,
    regions: &[phonenumber::country::Id],
    hits: &mut Vec<Hit>,
) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let digits_wanted = set.card || set.iban || set.ssn || set.phone || set.ip;
    let mut i = 0;
    loop {
        i = next_interesting(bytes, i);
        if i >= n {
            break;
        }
        let class = CLASS[bytes[i] as usize];
        i = match class {
            DIGIT => {
                if !digits_wanted || (i > 0 && bytes[i - 1].is_ascii_digit()) {
                    i + 1
                } else {
                    digit_run(text, i, set, regions, hits)
                }
            }
            AT if set.email => email(bytes, i, hits),
            COLON => {
                if set.assignment
                    && let Some(hit) = secret::assignment_at(bytes, i)
                {
                    let end = hit.end;
                    hits.push(hit);
                    end
                } else if set.ip {
                    ipv6(text, i, hits)
                } else {
                    i + 1
                }
            }
            EQUALS if set.assignment => match secret::assignment_at(bytes, i) {
                Some(hit) => {
                    let end = hit.end;
                    hits.push(hit);
                    end
                }
                None => i + 1,
            },
            PHONE_START if set.phone => phone_at(text, i, regions, hits).unwrap_or(i + 1),
            _ => i + 1,
        };
    }
}

/// A run of digit groups joined by one consistent separator.
struct Run {
    groups: [(usize, usize); MAX_GROUPS],
    count: usize,
    separator: Option<u8>,
}

impl Run {
    fn end(&self) -> usize {
        self.groups[self.count - 1].1
    }
}

fn read_run(bytes: &[u8], start: usize) -> Run {
    let mut run = Run {
        groups: [(0, 0); MAX_GROUPS],
        count: 0,
        separator: None,
    };
    let mut i = start;
    loop {
        let group_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() && i - start < MAX_RUN_BYTES {
            i += 1;
        }
        run.groups[run.count] = (group_start, i);
        run.count += 1;
        if run.count == MAX_GROUPS || i + 1 >= bytes.len() || i - start >= MAX_RUN_BYTES {
            return run;
        }
        let sep = bytes[i];
        if !matches!(sep, b' ' | b'-' | b'.') || !bytes[i + 1].is_ascii_digit() {
            return run;
        }
        match run.separator {
            None => run.separator = Some(sep),
            Some(existing) if existing == sep => {}
            Some(_) => return run,
        }
        i += 1;
    }
}

fn collect_digits(bytes: &[u8], groups: &[(usize, usize)], out: &mut [u8; MAX_RUN_BYTES]) -> usize {
    let mut count = 0;
    for &(s, e) in groups {
        for &b in &bytes[s..e] {
            if count < out.len() {
                out[count] = b - b'0';
                count += 1;
            }
        }
    }
    count
}

fn digit_run(
    text: &str,
    start: usize,
    set: StructuralSet,
    regions: &[phonenumber::country::Id],
    hits: &mut Vec<Hit>,
) -> usize {
    let bytes = text.as_bytes();
    // IBAN: two upper-case letters and two check digits, the digits being where we stopped.
    if set.iban
        && start >= 2
        && bytes[start - 2].is_ascii_uppercase()
        && bytes[start - 1].is_ascii_uppercase()
        && (start == 2 || !is_word(bytes[start - 3]))
        && let Some(end) = iban_at(bytes, start - 2)
    {
        hits.push(Hit::new(
            DetectorId::Iban,
            Confidence::Validated,
            start - 2,
            end,
        ));
        return end;
    }
    // Fast path: a lone number shorter than any card, not followed by a separator and a
    // digit, can only be a national phone number, which needs separators: nothing to do.
    let mut lone_end = start;
    while lone_end < bytes.len() && bytes[lone_end].is_ascii_digit() {
        lone_end += 1;
    }
    if lone_end - start < 13
        && !(lone_end + 1 < bytes.len()
            && matches!(bytes[lone_end], b' ' | b'-' | b'.')
            && bytes[lone_end + 1].is_ascii_digit())
    {
        return lone_end;
    }
    let prev = if start > 0 {
        Some(bytes[start - 1])
    } else {
        None
    };
    let run = read_run(bytes, start);
    let run_end = run.end();
    if prev.is_some_and(|p| is_word(p) || p == b'.') {
        return run_end.max(start + 1);
    }
    let next = bytes.get(run_end).copied();
    if next.is_some_and(is_word) {
        return run_end.max(start + 1);
    }
    let groups = &run.groups[..run.count];
    let mut found = false;

    if set.card && run.separator != Some(b'.') && prev != Some(b'#') {
        found = cards_in_run(bytes, groups, hits);
    }

    if !found && set.ssn && groups.len() == 3 && matches!(run.separator, Some(b'-' | b' ')) {
        let lens = [
            groups[0].1 - groups[0].0,
            groups[1].1 - groups[1].0,
            groups[2].1 - groups[2].0,
        ];
        if lens == [3, 2, 4] {
            let area = number(&bytes[groups[0].0..groups[0].1]);
            let group = number(&bytes[groups[1].0..groups[1].1]);
            let serial = number(&bytes[groups[2].0..groups[2].1]);
            if ssn_valid(area, group, serial) {
                hits.push(Hit::new(
                    DetectorId::UsSsn,
                    Confidence::Pattern,
                    start,
                    run_end,
                ));
                found = true;
            }
        }
    }

    if !found && set.ip && run.separator == Some(b'.') && groups.len() == 4 {
        let valid = groups.iter().all(|&(s, e)| {
            let len = e - s;
            len <= 3 && (len == 1 || bytes[s] != b'0') && number(&bytes[s..e]) <= 255
        });
        if valid {
            hits.push(Hit::new(
                DetectorId::IpAddress,
                Confidence::Validated,
                start,
                run_end,
            ));
            found = true;
        }
    }

    if !found
        && set.phone
        && prev != Some(b'#')
        && prev != Some(b'+')
        && prev != Some(b'(')
        && let Some(end) = phone_at(text, start, regions, hits)
    {
        return end;
    }
    run_end.max(start + 1)
}

/// Card numbers in a run. A grouped number is written in groups of 3 to 6 digits starting
/// with a group of 4 (`4111 1111 1111 1111`, `3782 822463 10005`). A run of 13 to 19 digits
/// is judged as a whole (a failing whole is not searched for a passing part: that part would
/// be a 1-in-10 Luhn accident); only longer runs (a card followed by more numbers) are
/// searched for card-shaped windows.
fn cards_in_run(bytes: &[u8], groups: &[(usize, usize)], hits: &mut Vec<Hit>) -> bool {
    let group_len = |g: (usize, usize)| g.1 - g.0;
    if groups.len() > 1 && !groups.iter().all(|&g| (3..=6).contains(&group_len(g))) {
        return false;
    }
    let mut digits = [0u8; MAX_RUN_BYTES];
    let total = collect_digits(bytes, groups, &mut digits);
    if (13..=19).contains(&total) {
        if (groups.len() == 1 || group_len(groups[0]) == 4) && card::is_card(&digits[..total]) {
            hits.push(Hit::new(
                DetectorId::CreditCard,
                Confidence::Validated,
                groups[0].0,
                groups[groups.len() - 1].1,
            ));
            return true;
        }
        return false;
    }
    if total < 13 || groups.len() == 1 {
        return false;
    }
    let mut found = false;
    let mut s = 0;
    while s < groups.len() {
        let mut best: Option<usize> = None;
        if group_len(groups[s]) == 4 {
            for e in s + 1..groups.len() {
                let count = collect_digits(bytes, &groups[s..=e], &mut digits);
                if count > 19 {
                    break;
                }
                if count >= 13 && card::is_card(&digits[..count]) {
                    best = Some(e);
                }
            }
        }
        if let Some(e) = best {
            hits.push(Hit::new(
                DetectorId::CreditCard,
                Confidence::Validated,
                groups[s].0,
                groups[e].1,
            ));
            found = true;
            s = e + 1;
        } else {
            s += 1;
        }
    }
    found
}

fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |acc, &b| {
        acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    })
}

/// US SSN ranges that were never issued: area 000, 666 and 900-999; group 00; serial 0000.
pub(crate) fn ssn_valid(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// An IBAN starting at `start` (country code), compact or grouped by single spaces.
fn iban_at(bytes: &[u8], start: usize) -> Option<usize> {
    let country = [bytes[start], bytes[start + 1]];
    let len = iban::country_length(country)?;
    let mut compact = [0u8; iban::MAX_LENGTH];
    let mut count = 0;
    let mut i = start;
    while count < len {
        let b = *bytes.get(i)?;
        if b.is_ascii_digit() || b.is_ascii_uppercase() {
            compact[count] = b;
            count += 1;
            i += 1;
        } else if b == b' ' && count >= 4 && bytes.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
        {
            i += 1;
        } else {
            return None;
        }
    }
    if bytes.get(i).is_some_and(|&b| is_word(b)) {
        return None;
    }
    iban::is_iban(&compact[..count]).then_some(i)
}

/// A phone number candidate starting at `start` (`+`, `(` or a digit), validated with
/// libphonenumber metadata. Returns the end of the hit.
fn phone_at(
    text: &str,
    start: usize,
    regions: &[phonenumber::country::Id],
    hits: &mut Vec<Hit>,
) -> Option<usize> {
    let bytes = text.as_bytes();
    if start > 0
        && (is_word(bytes[start - 1]) || matches!(bytes[start - 1], b'#' | b'.' | b'/' | b'-'))
    {
        return None;
    }
    let international = bytes[start] == b'+';
    let mut i = start + usize::from(international);
    let mut digits = 0usize;
    let mut separators = 0usize;
    let mut parens = false;
    let mut last_digit_end = start;
    let mut last_was_sep = false;
    while i < bytes.len() && i - start < 26 {
        let b = bytes[i];
        if b.is_ascii_digit() {
            digits += 1;
            last_digit_end = i + 1;
            last_was_sep = false;
        } else if matches!(b, b' ' | b'-' | b'.' | b'(' | b')') {
            if b == b'(' || b == b')' {
                parens = true;
            }
            let after_paren = i > 0 && bytes[i - 1] == b')' && b == b' ';
            if last_was_sep && !after_paren {
                break;
            }
            separators += 1;
            last_was_sep = true;
        } else {
            break;
        }
        i += 1;
    }
    let end = last_digit_end;
    if end <= start || bytes.get(end).is_some_and(|&b| is_word(b) || b == b':') {
        return None;
    }
    // Phone numbers end in a group of at least three digits; dates and times do not.
    let last_group = bytes[start..end]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if last_group < 3 {
        return None;
    }
    // An ISO date (`2024-03-06`) at the start is a timestamp, not a phone number.
    let head = &bytes[start..end];
    if head.len() >= 7
        && head[..4].iter().all(u8::is_ascii_digit)
        && head[4] == b'-'
        && head[5..7].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    if !(7..=15).contains(&digits) {
        return None;
    }
    if !(international || parens || separators >= 2) {
        return None;
    }
    if !international && !(10..=11).contains(&digits) {
        return None;
    }
    let candidate = &text[start..end];
    // Dots separate phone groups only in the North American 3.3.4 layout; other dotted
    // numbers are addresses, versions or amounts.
    if !international && candidate.contains('.') {
        let groups: Vec<usize> = candidate.split('.').map(str::len).collect();
        if groups != [3, 3, 4] || !candidate.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return None;
        }
    }
    let valid = if international {
        phonenumber::parse(None, candidate).is_ok_and(|number| phonenumber::is_valid(&number))
    } else {
        // Outside the North American plan national numbers start with the trunk prefix 0;
        // without it, only NANP regions are tried (this keeps order numbers out).
        let first_digit = candidate.bytes().find(u8::is_ascii_digit);
        regions.iter().any(|&region| {
            let nanp = matches!(
                region,
                phonenumber::country::Id::US | phonenumber::country::Id::CA
            );
            (nanp || first_digit == Some(b'0'))
                && phonenumber::parse(Some(region), candidate)
                    .is_ok_and(|number| phonenumber::is_valid(&number))
        })
    };
    if valid {
        hits.push(Hit::new(
            DetectorId::Phone,
            Confidence::Validated,
            start,
            end,
        ));
        Some(end)
    } else {
        None
    }
}

fn is_email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_email_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// An e-mail address around the `@` at `at`. Returns where scanning continues.
fn email(bytes: &[u8], at: usize, hits: &mut Vec<Hit>) -> usize {
    let mut start = at;
    while start > 0 && is_email_local(bytes[start - 1]) && at - start < 64 {
        start -= 1;
    }
    if start > 0 && is_email_local(bytes[start - 1]) {
        return at + 1;
    }
    // Trim leading dots/hyphens that belong to the surrounding text.
    while start < at && matches!(bytes[start], b'.' | b'-') {
        start += 1;
    }
    if start == at || bytes[at - 1] == b'.' {
        return at + 1;
    }
    let mut end = at + 1;
    while end < bytes.len() && is_email_domain(bytes[end]) && end - at <= 190 {
        end += 1;
    }
    if end < bytes.len() && is_email_domain(bytes[end]) {
        return at + 1;
    }
    while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &bytes[at + 1..end];
    let Some(last_dot) = domain.iter().rposition(|&b| b == b'.') else {
        return at + 1;
    };
    let tld = &domain[last_dot + 1..];
    let labels_ok = domain
        .split(|&b| b == b'.')
        .all(|label| !label.is_empty() && label[0] != b'-' && label[label.len() - 1] != b'-');
    if tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) || !labels_ok {
        return at + 1;
    }
    if bytes.get(end).is_some_and(|&b| b == b'@' || b == b'_') {
        return at + 1;
    }
    hits.push(Hit::new(DetectorId::Email, Confidence::Pattern, start, end));
    end
}

/// An IPv6 address around the `:` at `colon`. Returns where scanning continues.
fn ipv6(text: &str, colon: usize, hits: &mut Vec<Hit>) -> usize {
    let bytes = text.as_bytes();
    let mut start = colon;
    while start > 0
        && (bytes[start - 1].is_ascii_hexdigit() || bytes[start - 1] == b':')
        && colon - start < 39
    {
        start -= 1;
    }
    let mut end = colon + 1;
    while end < bytes.len()
        && (bytes[end].is_ascii_hexdigit() || bytes[end] == b':' || bytes[end] == b'.')
        && end - start < 45
    {
        end += 1;
    }
    let resume = end.max(colon + 1);
    // Trailing punctuation belongs to the sentence.
    while end > colon + 1
        && matches!(bytes[end - 1], b'.' | b':')
        && !text[start..end].ends_with("::")
    {
        end -= 1;
    }
    if start > 0 && (is_word(bytes[start - 1]) || bytes[start - 1] == b'.') {
        return resume;
    }
    if bytes.get(end).is_some_and(|&b| is_word(b)) {
        return resume;
    }
    let candidate = &text[start..end];
    let colons = candidate.bytes().filter(|&b| b == b':').count();
    let has_digit = candidate.bytes().any(|b| b.is_ascii_digit());
    let groups = candidate.split(':').filter(|g| !g.is_empty()).count();
    let compressed = candidate.contains("::");
    if !has_digit || !(colons == 7 || (compressed && groups >= 2)) {
        return resume;
    }
    if candidate.parse::<Ipv6Addr>().is_ok() {
        hits.push(Hit::new(
            DetectorId::IpAddress,
            Confidence::Validated,
            start,
            end,
        ));
    }
    resume
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ipv4_octet_boundaries(a in 0u32..300, b in 0u32..256, c in 0u32..256, d in 0u32..256) {
            let text = format!("host {a}.{b}.{c}.{d} up");
            let hits = found(&text);
            if a <= 255 {
                prop_assert_eq!(hits, vec![(DetectorId::IpAddress, &text[5..text.len() - 3])]);
            } else {
                prop_assert!(hits.is_empty());
            }
        }

        #[test]
        fn ssn_ranges_match_the_rule(area in 0u32..1000, group in 0u32..100, serial in 0u32..10000) {
            let text = format!("ssn {area:03}-{group:02}-{serial:04} ok");
            let valid = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
            let is_ssn = found(&text).iter().any(|(d, _)| *d == DetectorId::UsSsn);
            prop_assert_eq!(is_ssn, valid);
        }

        #[test]
        fn scanning_arbitrary_text_never_panics(text in "\\PC{0,80}") {
            let _ = found(&text);
        }
    }

    fn all() -> StructuralSet {
        StructuralSet {
            card: true,
            iban: true,
            ssn: true,
            phone: true,
            ip: true,
            email: true,
            assignment: true,
        }
    }

    fn found(text: &str) -> Vec<(DetectorId, &str)> {
        let regions = [phonenumber::country::Id::US, phonenumber::country::Id::GB];
        let mut hits = Vec::new();
        scan(text, all(), &regions, &mut hits);
        hits.iter()
            .map(|h| (h.detector, &text[h.start..h.end]))
            .collect()
    }

    #[test]
    fn cards_in_common_layouts() {
        assert_eq!(
            found("pay 4111 1111 1111 1111 now"),
            vec![(DetectorId::CreditCard, "4111 1111 1111 1111")]
        );
        assert_eq!(
            found("pay 4111-1111-1111-1111."),
            vec![(DetectorId::CreditCard, "4111-1111-1111-1111")]
        );
        assert_eq!(
            found("4111111111111111"),
            vec![(DetectorId::CreditCard, "4111111111111111")]
        );
        assert_eq!(
            found("amex 3782 822463 10005 cvv 123"),
            vec![(DetectorId::CreditCard, "3782 822463 10005")]
        );
        assert_eq!(
            found("ref 1234 4111 1111 1111 1111"),
            vec![(DetectorId::CreditCard, "4111 1111 1111 1111")]
        );
    }

    #[test]
    fn card_near_misses_are_ignored() {
        assert!(found("4111 1111 1111 1112").is_empty());
        assert!(found("id a4111111111111111").is_empty());
        assert!(found("hash 4111111111111111ab").is_empty());
        assert!(found("order #4111111111111111").is_empty());
        assert!(found("v1.4111111111111111").is_empty());
        // A failing 19-digit number is not searched for a passing 16-digit prefix.
        assert!(found("4111 1111 1111 1111 468").is_empty());
        assert!(found("row 675 998 682 632 830").is_empty());
    }

    #[test]
    fn iban_compact_and_grouped() {
        assert_eq!(
            found("IBAN DE89370400440532013000."),
            vec![(DetectorId::Iban, "DE89370400440532013000")]
        );
        assert_eq!(
            found("to GB29 NWBK 6016 1331 9268 19 thanks"),
            vec![(DetectorId::Iban, "GB29 NWBK 6016 1331 9268 19")]
        );
        assert!(found("DE89370400440532013001").is_empty());
        assert!(found("XDE89370400440532013000").is_empty());
    }

    #[test]
    fn ssn_ranges() {
        assert_eq!(
            found("ssn 123-45-6789"),
            vec![(DetectorId::UsSsn, "123-45-6789")]
        );
        assert!(found("ssn 666-45-6789").is_empty());
        assert!(found("ssn 900-45-6789").is_empty());
        assert!(found("ssn 000-45-6789").is_empty());
        assert!(found("ssn 123-00-6789").is_empty());
        assert!(found("ssn 123-45-0000").is_empty());
        assert!(ssn_valid(899, 99, 9999));
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(
            found("host 192.168.1.20 up"),
            vec![(DetectorId::IpAddress, "192.168.1.20")]
        );
        assert!(found("version 1.2.3").is_empty());
        assert!(found("bad 256.1.1.1").is_empty());
        assert!(
            found("host 256.20.10.100 up").is_empty(),
            "not a dotted phone number either"
        );
        assert!(found("bad 01.2.3.4").is_empty());
        assert_eq!(
            found("v6 2001:db8::1 ok"),
            vec![(DetectorId::IpAddress, "2001:db8::1")]
        );
        assert_eq!(
            found("at fe80::1."),
            vec![(DetectorId::IpAddress, "fe80::1")]
        );
        assert!(found("use std::vector and Foo::bar").is_empty());
        assert!(found("at 12:30:45 today").is_empty());
        assert!(found("mac 00:1A:2B:3C:4D:5E").is_empty());
    }

    #[test]
    fn next_interesting_matches_a_byte_loop() {
        let text = b"ab(c)d*e+f,g.h-i/j0k9l:m;n<o=p>q?r@s\xC3\xA9t" as &[u8];
        for start in 0..text.len() {
            let expected = (start..text.len())
                .find(|&i| CLASS[text[i] as usize] != 0)
                .unwrap_or(text.len());
            assert_eq!(next_interesting(text, start), expected, "from {start}");
        }
    }

    #[test]
    fn word_filters_have_no_false_negatives() {
        for byte in 0u8..=255 {
            let word = u64::from_le_bytes([b'a', b'b', byte, b'c', b'd', b'e', b'f', b'g']);
            let interesting = CLASS[byte as usize] != 0;
            let flagged = between_mask(word, b'(' - 1, b'@' + 1) != 0;
            assert!(!interesting || flagged, "byte {byte:#x}");
        }
        let text = "no digits here at all, just words. ".repeat(5) + "7";
        assert_eq!(next_interesting(text.as_bytes(), 0), text.len() - 1);
    }

    #[test]
    fn assignments_are_found_from_their_operator() {
        assert_eq!(
            found("export API_TOKEN=Zq8vT3kLm9pW2xR7 &&"),
            vec![(
                DetectorId::Secret(crate::detector::SecretKind::Generic),
                "Zq8vT3kLm9pW2xR7"
            )]
        );
        assert_eq!(
            found("{\"password\": \"Zq8vT3kLm9pW2xR7\"}"),
            vec![(
                DetectorId::Secret(crate::detector::SecretKind::Generic),
                "Zq8vT3kLm9pW2xR7"
            )]
        );
    }

    #[test]
    fn emails() {
        assert_eq!(
            found("mail jane.doe+x@example.co.uk."),
            vec![(DetectorId::Email, "jane.doe+x@example.co.uk")]
        );
        assert!(found("@Override").is_empty());
        assert!(found("user@localhost").is_empty());
        assert!(found("a@b.c").is_empty());
    }

    #[test]
    fn phones() {
        assert_eq!(
            found("call +44 20 7946 0958 today"),
            vec![(DetectorId::Phone, "+44 20 7946 0958")]
        );
        assert_eq!(
            found("call (202) 456-1111"),
            vec![(DetectorId::Phone, "(202) 456-1111")]
        );
        assert_eq!(
            found("call 202-456-1111"),
            vec![(DetectorId::Phone, "202-456-1111")]
        );
        assert!(found("order 123-456-7890").is_empty());
        assert!(found("date 2024-05-01").is_empty());
        assert!(found("placed on 2024-03-06 14:35:39.").is_empty());
        assert!(found("n 2024567890").is_empty());
        assert_eq!(
            found("ring 020 7946 0958"),
            vec![(DetectorId::Phone, "020 7946 0958")]
        );
    }
}
