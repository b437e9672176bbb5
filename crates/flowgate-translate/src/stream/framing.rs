//! Byte framing of upstream streams: lines (NDJSON) and Server-Sent Events.
//!
//! Owns splitting arbitrary chunks (cut anywhere, even inside a line or a UTF-8 sequence) into
//! complete lines and SSE events. Bytes are only interpreted once a line is complete, so a
//! split multi-byte character is never decoded in halves. It knows nothing about JSON.

use crate::error::TranslateError;

/// Longest line buffered before the stream is refused (a misbehaving upstream must not make
/// the gateway buffer without bound).
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Splits a byte stream into lines ending in `\n` (a preceding `\r` is removed).
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl LineSplitter {
    /// Calls `on_line` for every line completed by `chunk`.
    pub(crate) fn feed(
        &mut self,
        mut chunk: &[u8],
        on_line: &mut impl FnMut(&[u8]) -> Result<(), TranslateError>,
    ) -> Result<(), TranslateError> {
        if !self.pending.is_empty() {
            let Some(newline) = memchr::memchr(b'\n', chunk) else {
                return self.keep(chunk);
            };
            self.pending.extend_from_slice(&chunk[..newline]);
            chunk = &chunk[newline + 1..];
            let mut line = std::mem::take(&mut self.pending);
            let result = on_line(trim_cr(&line));
            line.clear();
            self.pending = line;
            result?;
        }
        while let Some(newline) = memchr::memchr(b'\n', chunk) {
            on_line(trim_cr(&chunk[..newline]))?;
            chunk = &chunk[newline + 1..];
        }
        self.keep(chunk)
    }

    fn keep(&mut self, rest: &[u8]) -> Result<(), TranslateError> {
        if self.pending.len() + rest.len() > MAX_LINE_BYTES {
            return Err(TranslateError::LineTooLong {
                limit: MAX_LINE_BYTES,
            });
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    /// Hands over a final line that had no terminating newline.
    pub(crate) fn finish(
        &mut self,
        on_line: &mut impl FnMut(&[u8]) -> Result<(), TranslateError>,
    ) -> Result<(), TranslateError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.pending);
        on_line(trim_cr(&line))
    }
}

/// Parses Server-Sent Events: `event:` and `data:` fields, dispatched on a blank line.
/// Comments (`:` lines, used for keep-alives) and other fields are ignored.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    lines: LineSplitter,
    event: String,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// Calls `on_event(event_name, data)` for every event completed by `chunk`.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        on_event: &mut impl FnMut(&str, &[u8]) -> Result<(), TranslateError>,
    ) -> Result<(), TranslateError> {
        let Self {
            lines,
            event,
            data,
            has_data,
        } = self;
        lines.feed(chunk, &mut |line| {
            Self::line(event, data, has_data, line, on_event)
        })
    }

    /// Ends the stream. As the SSE specification requires, an event without its terminating
    /// blank line is discarded: at end of stream it can only be a truncated one.
    pub(crate) fn finish(&mut self) {
        self.lines = LineSplitter::default();
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }

    fn line(
        event: &mut String,
        data: &mut Vec<u8>,
        has_data: &mut bool,
        line: &[u8],
        on_event: &mut impl FnMut(&str, &[u8]) -> Result<(), TranslateError>,
    ) -> Result<(), TranslateError> {
        if line.is_empty() {
            if *has_data {
                let result = on_event(event, data);
                data.clear();
                event.clear();
                *has_data = false;
                return result;
            }
            event.clear();
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|byte| *byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if *has_data {
                    data.push(b'\n');
                }
                data.extend_from_slice(value);
                *has_data = true;
            }
            b"event" => {
                event.clear();
                event.push_str(&String::from_utf8_lossy(value));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut parser = SseParser::default();
        let mut seen = Vec::new();
        let mut record = |name: &str, data: &[u8]| {
            seen.push((name.to_owned(), String::from_utf8_lossy(data).into_owned()));
            Ok(())
        };
        for chunk in chunks {
            parser.feed(chunk, &mut record).unwrap();
        }
        parser.finish();
        seen
    }

    #[test]
    fn sse_events_survive_any_split() {
        let stream = b"event: a\r\ndata: {\"x\":\"\xc3\xa9\"}\r\n\r\n: keep-alive\n\ndata: one\ndata: two\n\n";
        let expected = vec![
            ("a".to_owned(), "{\"x\":\"\u{e9}\"}".to_owned()),
            (String::new(), "one\ntwo".to_owned()),
        ];
        for split in 0..stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(events(&[head, tail]), expected, "split at {split}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events(&bytes), expected);
    }

    #[test]
    fn unterminated_last_event_is_discarded() {
        assert_eq!(
            events(&[b"data: complete\n\ndata: {\"trunc"]),
            vec![(String::new(), "complete".to_owned())]
        );
    }

    #[test]
    fn ndjson_lines_and_final_line_without_newline() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        let mut record = |line: &[u8]| {
            lines.push(line.to_vec());
            Ok(())
        };
        splitter.feed(b"{\"a\":1}\n{\"b\"", &mut record).unwrap();
        splitter.feed(b":2}\r\n{\"c\":3}", &mut record).unwrap();
        splitter.finish(&mut record).unwrap();
        assert_eq!(
            lines,
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"b\":2}".to_vec(),
                b"{\"c\":3}".to_vec()
            ]
        );
    }
}
