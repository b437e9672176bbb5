//! flowgate-test-support (skeleton; filled in by its issue).
