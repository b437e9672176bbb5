//! flowgate-store (skeleton; filled in by its issue).
