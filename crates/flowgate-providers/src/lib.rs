//! flowgate-providers (skeleton; filled in by its issue).
