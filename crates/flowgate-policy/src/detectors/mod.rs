//! Built-in detectors. Owns [`Hit`] (a detector's raw result, in normalised-text offsets) and
//! the scanners and validators for each detector family; leaves out rules, actions and the
//! mapping back to original offsets (`crate::policy`).

pub(crate) mod card;
pub(crate) mod iban;
pub(crate) mod injection;
pub(crate) mod secret;
pub(crate) mod structural;

use crate::detector::{Confidence, DetectorId};

/// A detector's raw result: a span of the normalised text. Carries no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) detector: DetectorId,
    pub(crate) confidence: Confidence,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Hit {
    pub(crate) fn new(
        detector: DetectorId,
        confidence: Confidence,
        start: usize,
        end: usize,
    ) -> Self {
        Hit {
            detector,
            confidence,
            start,
            end,
        }
    }
}
