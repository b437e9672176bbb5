//! Reading token usage out of OpenAI-format answers: the `usage` object of a JSON answer, and
//! the usage chunk at the end of a stream (`stream_options.include_usage`). The stream sniffer
//! keeps only the current incomplete line and parses just the lines that mention `"usage"`.

use flowgate_types::Usage;
use serde::Deserialize;

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<OpenAiUsage>,
}

fn convert(usage: OpenAiUsage) -> Usage {
    Usage {
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        cached_tokens: usage
            .prompt_tokens_details
            .map_or(0, |details| details.cached_tokens),
        estimated: false,
    }
}

/// Usage from a complete OpenAI JSON answer, if reported.
pub fn from_json(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(body)
        .ok()?
        .usage
        .map(convert)
}

/// Watches an OpenAI SSE stream go by and remembers the last reported usage.
#[derive(Debug, Default)]
pub struct UsageSniffer {
    partial_line: Vec<u8>,
    usage: Option<Usage>,
}

const NEEDLE: &[u8] = b"\"usage\"";

impl UsageSniffer {
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(newline) = rest.iter().position(|byte| *byte == b'\n') {
            let (line, tail) = rest.split_at(newline);
            rest = &tail[1..];
            if self.partial_line.is_empty() {
                self.inspect(line);
            } else {
                let mut joined = std::mem::take(&mut self.partial_line);
                joined.extend_from_slice(line);
                self.inspect(&joined);
            }
        }
        if !rest.is_empty() {
            // Keep at most one event's worth of an unfinished line (usage chunks are small).
            if self.partial_line.len() + rest.len() <= 64 * 1024 {
                self.partial_line.extend_from_slice(rest);
            } else {
                self.partial_line.clear();
            }
        }
    }

    fn inspect(&mut self, line: &[u8]) {
        let Some(json) = line.strip_prefix(b"data:") else {
            return;
        };
        if !json.windows(NEEDLE.len()).any(|window| window == NEEDLE) {
            return;
        }
        if let Some(usage) = from_json(json.trim_ascii()) {
            self.usage = Some(usage);
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_usage_split_across_chunks() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut sniffer = UsageSniffer::default();
            sniffer.feed(&stream[..split]);
            sniffer.feed(&stream[split..]);
            let usage = sniffer
                .usage()
                .unwrap_or_else(|| panic!("no usage at split {split}"));
            assert_eq!(
                (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
                (11, 7, 2)
            );
        }
    }

    #[test]
    fn null_usage_is_ignored() {
        let mut sniffer = UsageSniffer::default();
        sniffer.feed(b"data: {\"usage\":null,\"choices\":[]}\n\n");
        assert_eq!(sniffer.usage(), None);
    }
}
