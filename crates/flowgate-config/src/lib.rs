//! flowgate-config (skeleton; filled in by its issue).
