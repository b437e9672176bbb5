//! Everything the CLI prints goes through here: results on stdout, one-line errors on stderr.

#[expect(clippy::print_stdout, reason = "the CLI's output channel")]
pub fn line(text: &str) {
    println!("{text}");
}

#[expect(clippy::print_stderr, reason = "the CLI's error channel")]
pub fn error_line(text: &str) {
    let single = text.replace('\n', " ");
    eprintln!("error: {single}");
}

pub fn json(value: &serde_json::Value) {
    line(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

#[expect(clippy::print_stderr, reason = "the CLI's error channel")]
pub fn warn(text: &str) {
    let single = text.replace('\n', " ");
    eprintln!("warning: {single}");
}
