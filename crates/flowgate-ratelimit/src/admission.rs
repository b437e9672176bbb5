//! What the gateway passes in and gets back on every request.
//!
//! Owns the request description ([`AdmissionRequest`]), the outcome types ([`Admission`],
//! [`Rejection`]) and the rate-limit header values ([`RateLimitHeaders`]) with their
//! OpenAI-style rendering of reset times. Leaves out the limit arithmetic (in `gcra`), the
//! backends (`local`, `redis`) and HTTP: the gateway turns these values into headers and 429s.

use std::fmt;
use std::time::Duration;

use crate::cluster::RedisPermit;
use crate::local::LocalPermit;
use crate::spec::LimitSpec;

/// Hint sent as `retry_after` when the concurrency limit refused a request: when a slot frees
/// up cannot be known, so clients are told to come back after a short pause.
pub const CONCURRENCY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One limited subject of a request: its id and its current limits.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Stable id (tenant id or API key id, never the secret key itself).
    pub id: &'a str,
    /// Limits that apply to this subject right now.
    pub limits: &'a LimitSpec,
}

/// Everything the limiter needs to admit one request.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionRequest<'a> {
    /// The tenant the request belongs to.
    pub tenant: Subject<'a>,
    /// The API key used, if keys carry their own limits.
    pub key: Option<Subject<'a>>,
    /// Tokens to reserve now: estimated prompt tokens plus the requested maximum output tokens.
    pub reserve_tokens: u64,
}

/// Which subject's limit decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// The tenant's limits.
    Tenant,
    /// The API key's limits.
    Key,
}

/// Which kind of limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Requests per window (with burst).
    Requests,
    /// Tokens per window.
    Tokens,
    /// Requests in flight.
    Concurrency,
}

impl LimitKind {
    /// Low-cardinality label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Concurrency => "concurrency",
        }
    }
}

impl SubjectKind {
    /// Low-cardinality label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Key => "key",
        }
    }
}

/// One limit as shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSnapshot {
    /// Maximum that may be used at once (`x-ratelimit-limit-*`): the burst for requests, the
    /// per-window limit for tokens.
    pub limit: u64,
    /// What is left now (`x-ratelimit-remaining-*`).
    pub remaining: u64,
    /// Time until the limit is back to its full value (`x-ratelimit-reset-*`).
    pub reset: Duration,
}

impl LimitSnapshot {
    /// The reset time in OpenAI's format (`"1s"`, `"6m0s"`, `"20ms"`, `"1.2s"`).
    pub fn reset_display(&self) -> ResetDisplay {
        ResetDisplay(self.reset)
    }

    /// Keeps the more restrictive of two snapshots: less remaining, then the longer reset.
    fn tighter(self, other: Self) -> Self {
        if (other.remaining, std::cmp::Reverse(other.reset))
            < (self.remaining, std::cmp::Reverse(self.reset))
        {
            other
        } else {
            self
        }
    }
}

/// Header values for one answer. `None` means no limit of that kind applies.
///
/// When both the tenant and the key have a limit of one kind, the more restrictive is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitHeaders {
    /// Values for `x-ratelimit-{limit,remaining,reset}-requests`.
    pub requests: Option<LimitSnapshot>,
    /// Values for `x-ratelimit-{limit,remaining,reset}-tokens`.
    pub tokens: Option<LimitSnapshot>,
}

impl RateLimitHeaders {
    /// Folds one subject's snapshots in, keeping the more restrictive of each kind.
    pub(crate) fn merge(&mut self, requests: Option<LimitSnapshot>, tokens: Option<LimitSnapshot>) {
        self.requests = tighter(self.requests, requests);
        self.tokens = tighter(self.tokens, tokens);
    }
}

fn tighter(current: Option<LimitSnapshot>, new: Option<LimitSnapshot>) -> Option<LimitSnapshot> {
    match (current, new) {
        (Some(current), Some(new)) => Some(current.tighter(new)),
        (current, None) => current,
        (None, new) => new,
    }
}

/// Displays a duration the way OpenAI's reset headers do (Go duration syntax).
#[derive(Debug, Clone, Copy)]
pub struct ResetDisplay(Duration);

impl fmt::Display for ResetDisplay {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_ms = self.0.as_millis();
        if total_ms == 0 {
            return formatter.write_str("0s");
        }
        if total_ms < 1_000 {
            return write!(formatter, "{total_ms}ms");
        }
        let hours = total_ms / 3_600_000;
        let minutes = (total_ms / 60_000) % 60;
        let seconds = (total_ms / 1_000) % 60;
        let millis = total_ms % 1_000;
        if hours > 0 {
            write!(formatter, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(formatter, "{minutes}m")?;
        }
        write!(formatter, "{seconds}")?;
        if millis > 0 {
            let (digits, width) = if millis.is_multiple_of(100) {
                (millis / 100, 1)
            } else if millis.is_multiple_of(10) {
                (millis / 10, 2)
            } else {
                (millis, 3)
            };
            write!(formatter, ".{digits:0width$}")?;
        }
        formatter.write_str("s")
    }
}

/// Why a request was not admitted (the gateway answers 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} {} limit exceeded", subject.as_str(), limit.as_str())]
pub struct Rejection {
    /// Whose limit refused.
    pub subject: SubjectKind,
    /// Which limit refused. When several refused, the one that lasts longest is reported.
    pub limit: LimitKind,
    /// When a retry can succeed (`Retry-After`). `None` when waiting never helps: the request
    /// asks for more tokens than the window allows.
    pub retry_after: Option<Duration>,
    /// Header values to send with the 429.
    pub headers: RateLimitHeaders,
}

impl Rejection {
    /// Keeps the rejection that lasts longer (a never-succeeding one wins).
    pub(crate) fn worse(self, other: Self) -> Self {
        let rank = |rejection: &Self| match rejection.retry_after {
            None => Duration::MAX,
            Some(after) => after,
        };
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }
}

/// Which backend admitted a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-process limiter (the configured backend, or the fallback while Redis is down).
    Local,
    /// The cluster-wide Redis limiter.
    Redis,
}

/// Token accounting of a settled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Tokens reserved at admission.
    pub reserved: u64,
    /// Tokens reported by the upstream.
    pub actual: u64,
}

impl Settlement {
    /// Tokens given back (reservation above actual use).
    pub fn refunded(&self) -> u64 {
        self.reserved.saturating_sub(self.actual)
    }

    /// Tokens charged on top of the reservation (actual use above the estimate).
    pub fn charged(&self) -> u64 {
        self.actual.saturating_sub(self.reserved)
    }
}

pub(crate) enum Permit {
    Local(LocalPermit),
    Redis(Box<RedisPermit>),
}

/// An admitted request. Holds a concurrency slot and a token reservation for the tenant and the
/// key until it is settled or dropped.
///
/// Call [`Admission::settle`] with the upstream's reported usage when the answer or stream ends.
/// Dropping it without settling (client went away, upstream error, task cancelled) gives back the
/// whole token reservation and the concurrency slot; the request itself still counts.
#[must_use = "dropping an Admission releases its concurrency slot and token reservation at once"]
pub struct Admission {
    pub(crate) headers: RateLimitHeaders,
    pub(crate) reserved_tokens: u64,
    pub(crate) permit: Permit,
}

impl fmt::Debug for Admission {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Admission")
            .field("backend", &self.backend())
            .field("reserved_tokens", &self.reserved_tokens)
            .field("headers", &self.headers)
            .finish()
    }
}

impl Admission {
    /// Header values to send with the answer.
    pub fn headers(&self) -> &RateLimitHeaders {
        &self.headers
    }

    /// Tokens reserved at admission.
    pub fn reserved_tokens(&self) -> u64 {
        self.reserved_tokens
    }

    /// Which backend admitted the request.
    pub fn backend(&self) -> Backend {
        match self.permit {
            Permit::Local(_) => Backend::Local,
            Permit::Redis(_) => Backend::Redis,
        }
    }

    /// Settles the token reservation against the usage the upstream reported (refunding or
    /// charging the difference) and frees the concurrency slot. Never blocks: on the Redis
    /// backend the update is queued to a background task (see
    /// [`crate::RedisLimiter::flush`]).
    pub fn settle(mut self, actual_tokens: u64) -> Settlement {
        let reserved = self.reserved_tokens;
        match &mut self.permit {
            Permit::Local(permit) => permit.finish(Some(actual_tokens)),
            Permit::Redis(permit) => permit.finish(Some(actual_tokens)),
        }
        Settlement {
            reserved,
            actual: actual_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(duration: Duration) -> String {
        LimitSnapshot {
            limit: 1,
            remaining: 0,
            reset: duration,
        }
        .reset_display()
        .to_string()
    }

    #[test]
    fn reset_renders_like_openai() {
        assert_eq!(reset(Duration::ZERO), "0s");
        assert_eq!(reset(Duration::from_micros(1)), "0s");
        assert_eq!(reset(Duration::from_millis(20)), "20ms");
        assert_eq!(reset(Duration::from_secs(1)), "1s");
        assert_eq!(reset(Duration::from_millis(1_200)), "1.2s");
        assert_eq!(reset(Duration::from_millis(61_050)), "1m1.05s");
        assert_eq!(reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(reset(Duration::from_secs(3_723)), "1h2m3s");
    }

    #[test]
    fn headers_keep_the_more_restrictive_subject() {
        let loose = LimitSnapshot {
            limit: 100,
            remaining: 90,
            reset: Duration::from_secs(6),
        };
        let tight = LimitSnapshot {
            limit: 10,
            remaining: 3,
            reset: Duration::from_secs(42),
        };
        let mut headers = RateLimitHeaders::default();
        headers.merge(Some(loose), None);
        headers.merge(Some(tight), Some(loose));
        assert_eq!(headers.requests, Some(tight));
        assert_eq!(headers.tokens, Some(loose));
        headers.merge(Some(loose), None);
        assert_eq!(headers.requests, Some(tight));
    }

    #[test]
    fn the_longer_rejection_wins() {
        let short = Rejection {
            subject: SubjectKind::Tenant,
            limit: LimitKind::Requests,
            retry_after: Some(Duration::from_secs(1)),
            headers: RateLimitHeaders::default(),
        };
        let long = Rejection {
            subject: SubjectKind::Key,
            limit: LimitKind::Tokens,
            retry_after: Some(Duration::from_secs(30)),
            ..short
        };
        let never = Rejection {
            retry_after: None,
            ..short
        };
        assert_eq!(short.worse(long), long);
        assert_eq!(long.worse(short), long);
        assert_eq!(long.worse(never), never);
        assert_eq!(short.to_string(), "tenant requests limit exceeded");
    }
}
