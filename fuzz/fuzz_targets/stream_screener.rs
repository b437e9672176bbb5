//! Fuzzes the stream screener: the first byte picks a preset and a chunk size pattern, the
//! rest is the streamed text. Nothing may panic, findings must lie inside the stream, and a
//! stream that was not blocked must forward exactly the whole-text redaction when the text
//! is shorter than the holdback (the screener then sees everything at once).
#![no_main]

use flowgate_policy::{EvalContext, Phase, Policy, Preset, StreamScreener, StreamStatus};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Compiled once: the target fuzzes screening, not compilation.
fn policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        [Preset::Default, Preset::Strict, Preset::AuditOnly]
            .into_iter()
            .filter_map(|preset| Policy::compile(Some(preset), &[]).ok())
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let Some(policy) = policies().get(usize::from(control % 3)) else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let mut screener = StreamScreener::new(policy.clone(), Phase::Response);
    let mut out = String::new();
    let step = usize::from(control / 3 % 29) + 1;
    let mut at = 0;
    let mut status = StreamStatus::Continue;
    while at < text.len() && status == StreamStatus::Continue {
        let mut end = (at + step).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        status = screener.push(&text[at..end], &mut out);
        at = end;
    }
    if status == StreamStatus::Continue {
        status = screener.finish(&mut out);
    }
    for finding in screener.findings() {
        assert!(finding.start <= finding.end && finding.end <= text.len());
    }
    if status == StreamStatus::Continue && text.len() <= policy.stream_holdback() {
        let whole = policy.evaluate(&text, &EvalContext::response());
        assert_eq!(out, whole.redact(&text));
    }
});
