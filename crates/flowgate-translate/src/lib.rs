//! flowgate-translate (skeleton; filled in by its issue).
