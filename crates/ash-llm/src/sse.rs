//! An incremental, bounded parser for `text/event-stream` (the WHATWG server-sent events format).
//!
//! Owns line splitting (`\n`, `\r\n`, `\r`, across chunk boundaries), the `event`/`data` fields,
//! comments and dispatch on a blank line. Never interprets `data`: the wire decoders do.
//! Memory is bounded by `max_event_bytes`: a line or event larger than that is an error, not a
//! reason to buffer forever.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, empty when absent.
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// Why the byte stream is not a valid event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseError {
    /// A line is not UTF-8.
    NotUtf8 {
        /// 1-based line number.
        line: u64,
    },
    /// A line or event is larger than the limit.
    TooLarge,
}

pub(crate) struct SseParser {
    max_event_bytes: usize,
    /// Bytes of the current, incomplete line.
    partial: Vec<u8>,
    /// The previous chunk ended in `\r`: a leading `\n` belongs to that line ending.
    skip_lf: bool,
    event: String,
    data: String,
    has_data: bool,
    line: u64,
}

impl SseParser {
    pub(crate) fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            partial: Vec::new(),
            skip_lf: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            line: 0,
        }
    }

    /// Feeds bytes; calls `on_event` for every event completed by them.
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        on_event: &mut dyn FnMut(SseEvent),
    ) -> Result<(), SseError> {
        if self.skip_lf {
            self.skip_lf = false;
            if let [b'\n', rest @ ..] = bytes {
                bytes = rest;
            }
        }
        while !bytes.is_empty() {
            let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.partial.len() + bytes.len() > self.max_event_bytes {
                    return Err(SseError::TooLarge);
                }
                self.partial.extend_from_slice(bytes);
                return Ok(());
            };
            let (line, rest) = bytes.split_at(end);
            let mut rest = &rest[1..];
            if bytes[end] == b'\r' {
                match rest {
                    [b'\n', tail @ ..] => rest = tail,
                    [] => self.skip_lf = true,
                    _ => {}
                }
            }
            if self.partial.is_empty() {
                self.line(line, on_event)?;
            } else {
                if self.partial.len() + line.len() > self.max_event_bytes {
                    return Err(SseError::TooLarge);
                }
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, on_event)?;
                whole.clear();
                self.partial = whole;
            }
            bytes = rest;
        }
        Ok(())
    }

    /// Ends the stream: an event without its terminating blank line is still dispatched, as
    /// servers that close right after the last `data:` line are common.
    pub(crate) fn finish(&mut self, on_event: &mut dyn FnMut(SseEvent)) -> Result<(), SseError> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line(&last, on_event)?;
        }
        self.dispatch(on_event);
        Ok(())
    }

    fn line(&mut self, line: &[u8], on_event: &mut dyn FnMut(SseEvent)) -> Result<(), SseError> {
        self.line += 1;
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8 { line: self.line })?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    return Err(SseError::TooLarge);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            // `id` and `retry` steer browser reconnection; a model response is never resumed.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(SseEvent)) {
        if self.has_data {
            on_event(SseEvent {
                event: std::mem::take(&mut self.event),
                data: std::mem::take(&mut self.data),
            });
        } else {
            self.event.clear();
        }
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Result<Vec<(String, String)>, SseError> {
        let mut parser = SseParser::new(64);
        let mut out = Vec::new();
        let mut push = |e: SseEvent| out.push((e.event, e.data));
        for chunk in chunks {
            parser.feed(chunk, &mut push)?;
        }
        parser.finish(&mut push)?;
        Ok(out)
    }

    fn owned(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    type Case<'a> = (&'a [&'a [u8]], &'a [(&'a str, &'a str)]);

    #[test]
    fn line_endings_and_fields() {
        let cases: &[Case<'_>] = &[
            (&[b"data: a\n\n"], &[("", "a")]),
            (&[b"data: a\r\n\r\n"], &[("", "a")]),
            (&[b"data: a\r\r"], &[("", "a")]),
            (&[b"data: a\r", b"\n\r", b"\ndata: b\n\n"], &[("", "a"), ("", "b")]),
            (&[b"event: x\ndata: 1\ndata: 2\n\n"], &[("x", "1\n2")]),
            (&[b"da", b"ta:no-space\n", b"\n"], &[("", "no-space")]),
            (&[b": comment\n\ndata: a\n\n"], &[("", "a")]),
            (&[b"event: lonely\n\n"], &[]),
            (&[b"data\n\n"], &[("", "")]),
            (&[b"id: 7\nretry: 10\nunknown: z\ndata: a\n\n"], &[("", "a")]),
            (&[b"data: unterminated"], &[("", "unterminated")]),
            (&["data: \u{e9}t\u{e9}\n\n".as_bytes()], &[("", "\u{e9}t\u{e9}")]),
        ];
        for (chunks, want) in cases {
            assert_eq!(parse(chunks), Ok(owned(want)), "{chunks:?}");
        }
    }

    #[test]
    fn utf8_split_across_chunks() {
        let bytes = "data: \u{1f600}\n\n".as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(parse(&[a, b]), Ok(owned(&[("", "\u{1f600}")])), "cut at {cut}");
        }
    }

    #[test]
    fn bad_input() {
        assert_eq!(parse(&[b"data: \xff\n\n"]), Err(SseError::NotUtf8 { line: 1 }));
        assert_eq!(parse(&[&[b'x'; 65]]), Err(SseError::TooLarge));
        assert_eq!(parse(&[&[b'x'; 40], &[b'x'; 40]]), Err(SseError::TooLarge));
        let many = "data: 0123456789\n".repeat(8);
        assert_eq!(parse(&[many.as_bytes()]), Err(SseError::TooLarge));
    }
}
