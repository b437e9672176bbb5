//! flowgate-gateway (skeleton; filled in by its issue).
