//! Secret detectors: the literal anchors each kind of credential starts with, and the
//! validators that run where an anchor was found (exact prefix case, alphabet, length,
//! boundaries, checksums such as GitHub's CRC32, JWT header decoding, placeholder allowlists
//! and randomness for keyword-anchored assignments). Leaves out the search for anchors (the
//! compiled Aho-Corasick automaton in `crate::policy`).

use base64::Engine;

use super::Hit;
use super::structural::is_word;
use crate::detector::{Confidence, DetectorId, SecretKind};

/// Which validator runs where an anchor literal is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretAnchor {
    Aws,
    GithubClassic,
    GithubPat,
    SkDash,
    SlackToken,
    SlackWebhook,
    Stripe,
    GoogleApiKey,
    Flowgate,
    PemBegin,
    Jwt,
    UrlScheme,
}

impl SecretAnchor {
    /// The secret kinds this anchor can produce (used to skip anchors no rule needs).
    pub(crate) fn kinds(self) -> &'static [SecretKind] {
        match self {
            SecretAnchor::Aws => &[SecretKind::AwsAccessKey],
            SecretAnchor::GithubClassic | SecretAnchor::GithubPat => &[SecretKind::GithubToken],
            SecretAnchor::SkDash => &[SecretKind::Openai, SecretKind::Anthropic],
            SecretAnchor::SlackToken | SecretAnchor::SlackWebhook => &[SecretKind::Slack],
            SecretAnchor::Stripe => &[SecretKind::Stripe],
            SecretAnchor::GoogleApiKey => &[SecretKind::GoogleApiKey],
            SecretAnchor::Flowgate => &[SecretKind::FlowgateKey],
            SecretAnchor::PemBegin => &[SecretKind::PrivateKey],
            SecretAnchor::Jwt => &[SecretKind::Jwt],
            SecretAnchor::UrlScheme => &[SecretKind::ConnectionString],
        }
    }
}

/// Anchor literals (case-sensitive). Keyword-anchored assignments are found from their
/// operator instead (see [`assignment_at`]).
pub(crate) const ANCHORS: &[(&str, SecretAnchor)] = &[
    ("AKIA", SecretAnchor::Aws),
    ("ASIA", SecretAnchor::Aws),
    ("ABIA", SecretAnchor::Aws),
    ("ACCA", SecretAnchor::Aws),
    ("ghp_", SecretAnchor::GithubClassic),
    ("gho_", SecretAnchor::GithubClassic),
    ("ghu_", SecretAnchor::GithubClassic),
    ("ghs_", SecretAnchor::GithubClassic),
    ("ghr_", SecretAnchor::GithubClassic),
    ("github_pat_", SecretAnchor::GithubPat),
    ("sk-", SecretAnchor::SkDash),
    ("xoxb-", SecretAnchor::SlackToken),
    ("xoxp-", SecretAnchor::SlackToken),
    ("xoxa-", SecretAnchor::SlackToken),
    ("xoxr-", SecretAnchor::SlackToken),
    ("xoxs-", SecretAnchor::SlackToken),
    ("xoxe-", SecretAnchor::SlackToken),
    ("hooks.slack.com/services/", SecretAnchor::SlackWebhook),
    ("sk_live_", SecretAnchor::Stripe),
    ("sk_test_", SecretAnchor::Stripe),
    ("rk_live_", SecretAnchor::Stripe),
    ("rk_test_", SecretAnchor::Stripe),
    ("AIza", SecretAnchor::GoogleApiKey),
    ("fgk_", SecretAnchor::Flowgate),
    ("-----BEGIN ", SecretAnchor::PemBegin),
    ("eyJ", SecretAnchor::Jwt),
    ("://", SecretAnchor::UrlScheme),
];

/// Anchors whose literal is case-sensitive in the real format.
fn exact_case(anchor: SecretAnchor) -> bool {
    !matches!(anchor, SecretAnchor::UrlScheme | SecretAnchor::SlackWebhook)
}

/// The cap on a PEM block or JWT (bytes): longer ones are redacted up to the cap.
pub(crate) const LONG_SECRET_CAP: usize = 16 * 1024;

/// Placeholder fragments that mark a value as documentation rather than a credential.
const PLACEHOLDERS: &[&str] = &[
    "your",
    "here",
    "example",
    "placeholder",
    "changeme",
    "change_me",
    "dummy",
    "sample",
    "replace",
    "xxxx",
    "****",
    "....",
    "redacted",
    "insert",
    "todo",
    "fixme",
    "secret",
    "password",
    "token",
    "test123",
    "foobar",
    "lorem",
    "<",
    ">",
    "{",
    "}",
    "$",
];

fn hit(kind: SecretKind, confidence: Confidence, start: usize, end: usize) -> Hit {
    Hit::new(DetectorId::Secret(kind), confidence, start, end)
}

fn run_of(bytes: &[u8], from: usize, max: usize, allowed: impl Fn(u8) -> bool) -> usize {
    let mut end = from;
    while end < bytes.len() && end - from < max && allowed(bytes[end]) {
        end += 1;
    }
    end
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn left_boundary(bytes: &[u8], pos: usize) -> bool {
    pos == 0 || !(is_word(bytes[pos - 1]) || bytes[pos - 1] == b'-')
}

/// Runs the validator for `anchor` found at `pos` (the anchor literal is `len` bytes long).
pub(crate) fn validate(text: &str, anchor: SecretAnchor, literal: &str, pos: usize) -> Option<Hit> {
    let bytes = text.as_bytes();
    let after = pos + literal.len();
    if exact_case(anchor) && bytes.get(pos..after)? != literal.as_bytes() {
        return None;
    }
    match anchor {
        SecretAnchor::Aws => {
            if !left_boundary(bytes, pos) {
                return None;
            }
            let end = run_of(bytes, after, 17, |b| {
                b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)
            });
            (end - after == 16 && !bytes.get(end).is_some_and(|&b| is_token_char(b)))
                .then(|| hit(SecretKind::AwsAccessKey, Confidence::Pattern, pos, end))
        }
        SecretAnchor::GithubClassic => {
            if !left_boundary(bytes, pos) {
                return None;
            }
            let end = run_of(bytes, after, 37, is_base62);
            if end - after != 36 || bytes.get(end).is_some_and(|&b| is_token_char(b)) {
                return None;
            }
            github_checksum_ok(&bytes[after..end])
                .then(|| hit(SecretKind::GithubToken, Confidence::Validated, pos, end))
        }
        SecretAnchor::GithubPat => {
            if !left_boundary(bytes, pos) {
                return None;
            }
            let end = run_of(bytes, after, 100, |b| {
                b.is_ascii_alphanumeric() || b == b'_'
            });
            ((70..=95).contains(&(end - after))
                && !bytes.get(end).is_some_and(|&b| is_token_char(b)))
            .then(|| hit(SecretKind::GithubToken, Confidence::Pattern, pos, end))
        }
        SecretAnchor::SkDash => {
            if !left_boundary(bytes, pos) {
                return None;
            }
            let end = run_of(bytes, after, 240, is_token_char);
            if bytes.get(end).is_some_and(|&b| is_token_char(b)) {
                return None;
            }
            let body = &bytes[after..end];
            if body.starts_with(b"ant-") {
                return ((60..=200).contains(&body.len()) && mixed(body))
                    .then(|| hit(SecretKind::Anthropic, Confidence::Pattern, pos, end));
            }
            if !(32..=220).contains(&body.len()) || !mixed(body) {
                return None;
            }
            let confidence = if contains(body, b"T3BlbkFJ") {
                Confidence::Validated
            } else {
                Confidence::Pattern
            };
            Some(hit(SecretKind::Openai, confidence, pos, end))
        }
        SecretAnchor::SlackToken => {
            if !left_boundary(bytes, pos) {
                return None;
            }
            let end = run_of(bytes, after, 250, |b| {
                b.is_ascii_alphanumeric() || b == b'-'
            });
            let body = &bytes[after..end];
            (body.len() >= 20
                && body.iter().any(u8::is_ascii_digit)
                && !bytes.get(end).is_some_and(|&b| is_word(b)))
            .then(|| hit(SecretKind::Slack, Confidence::Pattern, pos, end))
        }
        SecretAnchor::SlackWebhook => {
            let end = run_of(bytes, after, 120, |b| {
                b.is_ascii_alphanumeric() || b == b'/' || b == b'_'
            });
            let path = &bytes[after..end];
            if path.iter().filter(|&&b| b == b'/').count() < 2 || path.len() < 30 {
                return None;
            }
            let start = if pos >= 8 && &bytes[pos - 8..pos] == b"https://" {
                pos - 8
            } else {
                pos
            };
            Some(hit(SecretKind::Slack, Confidence::Pattern, start, end))
        }
        SecretAnchor::Stripe => {
            if !left_boundary(bytes, pos) {
                return None;
            }
            let end = run_of(bytes, after, 248, is_base62);
            ((24..=247).contains(&(end - after))
                && !bytes.get(end).is_some_and(|&b| is_token_char(b)))
            .then(|| hit(SecretKind::Stripe, Confidence::Pattern, pos, end))
        }
        SecretAnchor::GoogleApiKey => {
            if !left_boundary(bytes, pos) {
                return None;
            }
            let end = run_of(bytes, after, 36, is_token_char);
            (end - after == 35 && !bytes.get(end).is_some_and(|&b| is_token_char(b)))
                .then(|| hit(SecretKind::GoogleApiKey, Confidence::Pattern, pos, end))
        }
        SecretAnchor::Flowgate => {
            if !left_boundary(bytes, pos) {
                return None;
            }
            let end = run_of(bytes, after, 50, is_base62);
            (end - after == 49 && !bytes.get(end).is_some_and(|&b| is_token_char(b)))
                .then(|| hit(SecretKind::FlowgateKey, Confidence::Pattern, pos, end))
        }
        SecretAnchor::PemBegin => pem(text, pos, after),
        SecretAnchor::Jwt => jwt(bytes, pos),
        SecretAnchor::UrlScheme => url_password(bytes, pos),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Random keys mix upper case, lower case and digits; words and slugs do not.
fn mixed(body: &[u8]) -> bool {
    body.iter().any(u8::is_ascii_digit)
        && body.iter().any(u8::is_ascii_uppercase)
        && body.iter().any(u8::is_ascii_lowercase)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes a value as `width` base62 digits (most significant first, zero padded).
pub(crate) fn base62_fixed(mut value: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out.into_iter().map(char::from).collect()
}

/// GitHub's token format: 30 random base62 characters, then the CRC32 of those characters as
/// 6 base62 digits.
pub(crate) fn github_checksum_ok(body: &[u8]) -> bool {
    if body.len() != 36 {
        return false;
    }
    let (random, checksum) = body.split_at(30);
    let expected = base62_fixed(u64::from(crc32fast::hash(random)), 6);
    expected.as_bytes() == checksum
}

fn pem(text: &str, pos: usize, after: usize) -> Option<Hit> {
    let bytes = text.as_bytes();
    // The label: "-----BEGIN [RSA |EC |OPENSSH |ENCRYPTED |...]PRIVATE KEY-----".
    let label_end = run_of(bytes, after, 40, |b| b.is_ascii_uppercase() || b == b' ');
    let label = &text[after..label_end];
    if !label.ends_with("PRIVATE KEY") || !bytes[label_end..].starts_with(b"-----") {
        return None;
    }
    let body_start = label_end + 5;
    let limit = (pos + LONG_SECRET_CAP).min(text.len());
    let window = text.get(body_start..limit).unwrap_or("");
    let end = match window.find("-----END ") {
        Some(at) => {
            let end_marker = body_start + at;
            let tail = &bytes[end_marker..limit];
            match tail
                .get(9..)
                .and_then(|rest| rest.windows(5).position(|w| w == b"-----"))
            {
                Some(close) => end_marker + 9 + close + 5,
                None => limit,
            }
        }
        None => floor_char_boundary(text, limit),
    };
    Some(hit(SecretKind::PrivateKey, Confidence::Validated, pos, end))
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn jwt(bytes: &[u8], pos: usize) -> Option<Hit> {
    if !left_boundary(bytes, pos) {
        return None;
    }
    let header_end = run_of(bytes, pos, 2048, is_b64url);
    if bytes.get(header_end) != Some(&b'.') {
        return None;
    }
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&bytes[pos..header_end])
        .ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&decoded).ok()?;
    if !header.contains_key("alg") {
        return None;
    }
    let payload_start = header_end + 1;
    let cap = pos + LONG_SECRET_CAP;
    let payload_end = run_of(
        bytes,
        payload_start,
        cap.saturating_sub(payload_start),
        is_b64url,
    );
    if payload_end - payload_start < 2 {
        return None;
    }
    let mut end = payload_end;
    if bytes.get(payload_end) == Some(&b'.') {
        end = run_of(
            bytes,
            payload_end + 1,
            cap.saturating_sub(payload_end + 1),
            is_b64url,
        );
    }
    Some(hit(SecretKind::Jwt, Confidence::Validated, pos, end))
}

fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')
}

/// `scheme://user:password@host`: reports the password only.
fn url_password(bytes: &[u8], pos: usize) -> Option<Hit> {
    if pos == 0 || !is_scheme_char(bytes[pos - 1]) {
        return None;
    }
    let authority_start = pos + 3;
    let authority_end = run_of(bytes, authority_start, 256, |b| {
        !matches!(
            b,
            b'/' | b'?' | b'#' | b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\'' | b'<' | b'>' | b'`'
        )
    });
    let authority = &bytes[authority_start..authority_end];
    let at = authority.iter().rposition(|&b| b == b'@')?;
    let userinfo = &authority[..at];
    let colon = userinfo.iter().position(|&b| b == b':')?;
    let password = &userinfo[colon + 1..];
    if password.is_empty() || is_placeholder(password) || at + 1 >= authority.len() {
        return None;
    }
    let start = authority_start + colon + 1;
    Some(hit(
        SecretKind::ConnectionString,
        Confidence::Pattern,
        start,
        start + password.len(),
    ))
}

fn is_placeholder(value: &[u8]) -> bool {
    let lower: Vec<u8> = value.iter().map(u8::to_ascii_lowercase).collect();
    if PLACEHOLDERS.iter().any(|p| contains(&lower, p.as_bytes())) {
        return true;
    }
    value
        .first()
        .is_some_and(|&first| value.iter().all(|&b| b == first))
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[b as usize] += 1;
    }
    let len = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

fn is_value_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/=_-.~!@#%^&*".contains(&b)
}

/// Identifier fragments that mark an assignment as a credential.
const SECRET_KEYWORDS: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"pwd",
    b"secret",
    b"token",
    b"api_key",
    b"apikey",
    b"api-key",
    b"access_key",
    b"private_key",
    b"credential",
    b"auth",
];

/// `DB_PASSWORD = "…"`, `api_key: …`, `"token": "…"`: a credential-ish identifier, an
/// assignment operator (at `op`, a `=` or `:`) and a random-looking value. Reports the value
/// only. Anchoring on the operator keeps the scan to one cheap byte pass.
pub(crate) fn assignment_at(bytes: &[u8], op: usize) -> Option<Hit> {
    let op_len = match bytes.get(op..) {
        Some([b':', b'=', ..] | [b'=', b'>', ..]) => 2,
        Some([b'=', b'=', ..]) => return None,
        Some([b'=' | b':', ..]) => 1,
        _ => return None,
    };
    if op > 0 && matches!(bytes[op - 1], b'=' | b'!' | b'<' | b'>' | b':') {
        return None;
    }
    // Back over blanks and a closing quote to the identifier.
    let mut ident_end = op;
    while ident_end > 0 && op - ident_end < 4 && matches!(bytes[ident_end - 1], b' ' | b'\t') {
        ident_end -= 1;
    }
    if ident_end > 0 && matches!(bytes[ident_end - 1], b'"' | b'\'') {
        ident_end -= 1;
    }
    let mut ident_start = ident_end;
    while ident_start > 0
        && ident_end - ident_start < 64
        && (is_word(bytes[ident_start - 1]) || matches!(bytes[ident_start - 1], b'-' | b'.'))
    {
        ident_start -= 1;
    }
    let ident = &bytes[ident_start..ident_end];
    // The shortest keyword is three letters; times (`14:31`) and numbers never qualify.
    if ident.len() < 3 || !ident.iter().any(u8::is_ascii_alphabetic) {
        return None;
    }
    let mut lower = [0u8; 64];
    let lower = &mut lower[..ident.len()];
    for (slot, &b) in lower.iter_mut().zip(ident) {
        *slot = b.to_ascii_lowercase();
    }
    if !SECRET_KEYWORDS
        .iter()
        .any(|keyword| contains(lower, keyword))
    {
        return None;
    }
    let mut i = op + op_len;
    i = run_of(bytes, i, 4, |b| b == b' ' || b == b'\t');
    let quote = match bytes.get(i) {
        Some(&q @ (b'"' | b'\'' | b'`')) => {
            i += 1;
            Some(q)
        }
        _ => None,
    };
    let value_start = i;
    let value_end = run_of(bytes, value_start, 201, is_value_char);
    let value = &bytes[value_start..value_end];
    let terminator_ok = match quote {
        Some(q) => bytes.get(value_end) == Some(&q),
        None => bytes.get(value_end).is_none_or(|&b| {
            matches!(
                b,
                b' ' | b'\t' | b'\n' | b'\r' | b';' | b',' | b'}' | b')' | b']'
            )
        }),
    };
    if !terminator_ok || !(8..=200).contains(&value.len()) {
        return None;
    }
    if is_placeholder(value) {
        return None;
    }
    if looks_like_slug(value) {
        return None;
    }
    let has_digit = value.iter().any(u8::is_ascii_digit);
    let has_alpha = value.iter().any(u8::is_ascii_alphabetic);
    let threshold = if value.len() >= 16 { 3.3 } else { 2.8 };
    if !has_digit || !has_alpha || entropy(value) < threshold {
        return None;
    }
    Some(hit(
        SecretKind::Generic,
        Confidence::Pattern,
        value_start,
        value_end,
    ))
}

/// Names such as `prod-db-credentials-33` or `my_service.v2`: every segment is a plain word or
/// a plain number. Random values mix letters and digits (or cases) inside segments.
fn looks_like_slug(value: &[u8]) -> bool {
    value
        .split(|&b| matches!(b, b'-' | b'_' | b'.' | b'/'))
        .all(|segment| {
            segment.iter().all(u8::is_ascii_digit)
                || segment.iter().all(u8::is_ascii_lowercase)
                || segment.iter().all(u8::is_ascii_uppercase)
                || (segment.len() > 1
                    && segment[0].is_ascii_uppercase()
                    && segment[1..].iter().all(u8::is_ascii_lowercase))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs every anchor over `text` the slow way (the policy uses Aho-Corasick).
    pub(crate) fn find(text: &str) -> Vec<(SecretKind, String)> {
        let mut out = Vec::new();
        for (op, b) in text.bytes().enumerate() {
            if (b == b'=' || b == b':')
                && let Some(h) = assignment_at(text.as_bytes(), op)
            {
                out.push((SecretKind::Generic, text[h.start..h.end].to_owned()));
            }
        }
        for &(literal, anchor) in ANCHORS {
            let mut from = 0;
            while let Some(at) = text[from..].find(literal) {
                let pos = from + at;
                if let Some(h) = validate(text, anchor, literal, pos) {
                    let DetectorId::Secret(kind) = h.detector else {
                        unreachable!()
                    };
                    out.push((kind, text[h.start..h.end].to_owned()));
                }
                from = pos + 1;
            }
        }
        out
    }

    pub(crate) fn github_token(prefix: &str, random: &str) -> String {
        let checksum = base62_fixed(u64::from(crc32fast::hash(random.as_bytes())), 6);
        format!("{prefix}{random}{checksum}")
    }

    #[test]
    fn github_crc_is_checked() {
        let token = github_token("ghp_", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1");
        assert_eq!(
            find(&format!("token {token} end")),
            vec![(SecretKind::GithubToken, token.clone())]
        );
        let mut broken = token.into_bytes();
        broken[10] = if broken[10] == b'x' { b'y' } else { b'x' };
        let broken = String::from_utf8(broken).unwrap();
        assert!(find(&format!("token {broken} end")).is_empty());
    }

    #[test]
    fn base62_fixed_pads() {
        assert_eq!(base62_fixed(0, 6), "000000");
        assert_eq!(base62_fixed(61, 2), "0z");
        assert_eq!(base62_fixed(62, 2), "10");
    }

    #[test]
    fn provider_keys() {
        let aws = "AKIAIOSFODNN7EXAMPLE";
        assert_eq!(
            find(&format!("key={aws};")),
            vec![(SecretKind::AwsAccessKey, aws.to_owned())]
        );
        assert!(find("akiaiosfodnn7example").is_empty());
        assert!(find("AKIAIOSFODNN7EXAMPL").is_empty());
        let google = "AIzaSyD-1234567890abcdefghijklmnopqrstu";
        assert_eq!(
            find(google),
            vec![(SecretKind::GoogleApiKey, google.to_owned())]
        );
        let stripe = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
        assert_eq!(find(stripe), vec![(SecretKind::Stripe, stripe.to_owned())]);
        let fgk = format!("fgk_{}", "aZ09".repeat(12) + "x");
        assert_eq!(find(&fgk), vec![(SecretKind::FlowgateKey, fgk.clone())]);
        let openai = "sk-proj-Ab3De5Fg7Hj9Kl1Mn3Pq5Rs7Tu9Vw1Xy3Za5Bc7De9";
        assert_eq!(find(openai), vec![(SecretKind::Openai, openai.to_owned())]);
        assert!(find("use sk-learn-something-for-models here").is_empty());
        let anthropic = format!("sk-ant-api03-{}AA", "Ab3De5Fg7Hj9".repeat(7));
        assert_eq!(
            find(&anthropic),
            vec![(SecretKind::Anthropic, anthropic.clone())]
        );
        let slack = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
        assert_eq!(find(slack), vec![(SecretKind::Slack, slack.to_owned())]);
    }

    #[test]
    fn pem_block_spans_to_end_marker() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow==\n-----END RSA PRIVATE KEY-----";
        let text = format!("x {pem} y");
        assert_eq!(find(&text), vec![(SecretKind::PrivateKey, pem.to_owned())]);
        assert!(find("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----").is_empty());
    }

    #[test]
    fn jwt_needs_a_decodable_header() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(
            find(&format!("Bearer {jwt}")),
            vec![(SecretKind::Jwt, jwt.to_owned())]
        );
        assert!(find("eyJub3Rqc29u.eyJzdWIiOiIxIn0.sig").is_empty());
        assert!(find("eyJfoo is not a token").is_empty());
    }

    #[test]
    fn url_passwords() {
        assert_eq!(
            find("postgres://app:s3cr3tPw@db.internal:5432/app"),
            vec![(SecretKind::ConnectionString, "s3cr3tPw".to_owned())]
        );
        assert!(find("postgres://app:password@db/app").is_empty());
        assert!(find("https://example.com/a:b@c").is_empty());
        assert!(find("https://user@example.com/").is_empty());
    }

    #[test]
    fn keyword_assignments() {
        assert_eq!(
            find("DB_PASSWORD=\"Zq8vT3kLm9pW2xR7\""),
            vec![(SecretKind::Generic, "Zq8vT3kLm9pW2xR7".to_owned())]
        );
        assert_eq!(
            find("aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY2"),
            Vec::<(SecretKind, String)>::new(),
            "values containing 'example' are placeholders"
        );
        assert_eq!(
            find("api_key = 'q7W9eR2tY4uI6oP8aS1dF3gH5jK'"),
            vec![(
                SecretKind::Generic,
                "q7W9eR2tY4uI6oP8aS1dF3gH5jK".to_owned()
            )]
        );
        assert!(find("api_key = 'your_api_key_here'").is_empty());
        assert!(find("token = getToken()").is_empty());
        assert!(find("max_tokens = 4096").is_empty());
        assert!(find("if password == other").is_empty());
        assert!(find("password: hunter").is_empty());
        assert!(find("tokenizer = 'bert-base-uncased'").is_empty());
        assert!(find("secret_name = \"prod-db-credentials-33\"").is_empty());
    }

    #[test]
    fn entropy_of_uniform_and_constant() {
        assert!(entropy(b"aaaaaaaa") < 0.01);
        assert!((entropy(b"abcdefgh") - 3.0).abs() < 1e-9);
    }
}
