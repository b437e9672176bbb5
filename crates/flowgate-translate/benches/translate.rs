//! Placeholder so the workspace manifest parses; the translation benchmark replaces it.
fn main() {}
