//! flowgate-ratelimit (skeleton; filled in by its issue).
