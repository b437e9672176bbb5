//! Prints recall and false-positive rate per detector family on the generated corpus.
//!
//! `cargo run -p flowgate-policy --release --example evaluate [SEED] [PER_FAMILY]`

use flowgate_policy::corpus::{Corpus, DEFAULT_SEED};
use flowgate_policy::{Policy, Preset};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seed = match args.next() {
        Some(raw) => raw.parse()?,
        None => DEFAULT_SEED,
    };
    let per_family = match args.next() {
        Some(raw) => raw.parse()?,
        None => 2_000,
    };
    let corpus = Corpus::generate(seed, per_family);
    // `strict` enables every built-in detector (default leaves IP addresses out).
    let policy = Policy::compile(Some(Preset::Strict), &[])?;
    let started = std::time::Instant::now();
    let report = corpus.evaluate(&policy);
    let elapsed = started.elapsed();
    let mut out = String::new();
    out.push_str(&format!(
        "corpus: seed {seed:#x}, {} samples ({per_family} positives + {per_family} near misses per family, {per_family} shared hard negatives), screened in {:.1} ms\n\n",
        corpus.samples.len(),
        elapsed.as_secs_f64() * 1000.0
    ));
    out.push_str(&report.to_markdown());
    if let Ok(family) = std::env::var("FLOWGATE_EXPLAIN") {
        let (missed, false_positives) = corpus.mistakes(&policy, &family);
        for sample in missed.iter().take(20) {
            out.push_str(&format!("missed: {:?}\n", sample.text));
        }
        for sample in false_positives.iter().take(20) {
            out.push_str(&format!("false positive: {:?}\n", sample.text));
        }
    }
    #[expect(clippy::print_stdout, reason = "the example's output is the report")]
    {
        print!("{out}");
    }
    Ok(())
}
