//! Token usage as the gateway accounts it, from the translator's figures.

use flowgate_types::Usage;

/// The gateway's usage from the translator's (cache writes are part of the input tokens).
pub fn to_usage(usage: flowgate_translate::Usage) -> Usage {
    Usage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cached_tokens: usage.cached_tokens,
        estimated: usage.estimated,
    }
}
