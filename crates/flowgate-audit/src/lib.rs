//! flowgate-audit (skeleton; filled in by its issue).
