//! flowgate-policy (skeleton; filled in by its issue).
