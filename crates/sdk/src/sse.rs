//! A server-sent events reader for `/sdk/v1/stream`: bytes in, events out.
//!
//! Lines end with `\n` or `\r\n`; a line starting with `:` is a comment
//! (the server's keep-alive); an empty line ends an event. Only the
//! fields the stream uses are kept (`event`, `data`, `id`). An event
//! larger than the reader's limit is an error rather than a buffer that
//! grows without bound.

use bytes::BytesMut;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SseError {
    TooLarge(usize),
    NotUtf8,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::TooLarge(limit) => write!(f, "a stream event exceeds {limit} bytes"),
            SseError::NotUtf8 => f.write_str("a stream line is not UTF-8"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Reader {
    buffer: BytesMut,
    event: String,
    data: String,
    id: Option<String>,
    /// Data seen in the event being read (an event with no data line is
    /// not dispatched, as the specification says).
    has_data: bool,
    /// How much of `buffer` is known to hold no line end.
    scanned: usize,
    limit: usize,
}

impl Reader {
    pub fn new(limit: usize) -> Self {
        Reader {
            buffer: BytesMut::new(),
            event: String::new(),
            data: String::new(),
            id: None,
            has_data: false,
            scanned: 0,
            limit,
        }
    }

    /// Adds received bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        // Only the new bytes are searched: a document arriving in many
        // chunks is scanned once, not once per chunk.
        while let Some(end) = self.buffer[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| self.scanned + i)
        {
            let mut line = self.buffer.split_to(end + 1);
            self.scanned = 0;
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            let line = std::str::from_utf8(&line).map_err(|_| SseError::NotUtf8)?;
            if let Some(event) = self.line(line) {
                out.push(event);
            }
            if self.data.len() > self.limit {
                return Err(SseError::TooLarge(self.limit));
            }
        }
        self.scanned = self.buffer.len();
        if self.buffer.len() + self.data.len() > self.limit {
            return Err(SseError::TooLarge(self.limit));
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if !self.has_data {
                self.event.clear();
                return None;
            }
            self.has_data = false;
            let event = if self.event.is_empty() {
                "message".to_string()
            } else {
                std::mem::take(&mut self.event)
            };
            return Some(Event {
                event,
                id: self.id.clone(),
                data: std::mem::take(&mut self.data),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_put_back_together() {
        let text = b":keep-alive\n\nevent: config\nid: 7\ndata: {\"a\":1}\n\n:keep-alive\r\n\r\nevent: config\r\nid: 8\r\ndata: x\r\ndata: y\r\n\r\n";
        for split in 0..text.len() {
            let mut r = Reader::new(1 << 20);
            let mut got = r.push(&text[..split]).unwrap();
            got.extend(r.push(&text[split..]).unwrap());
            assert_eq!(
                got,
                vec![
                    Event {
                        event: "config".into(),
                        id: Some("7".into()),
                        data: "{\"a\":1}".into()
                    },
                    Event {
                        event: "config".into(),
                        id: Some("8".into()),
                        data: "x\ny".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_event_over_the_limit_is_an_error_not_a_growing_buffer() {
        let mut r = Reader::new(100);
        let mut line = b"data: ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 200));
        assert_eq!(r.push(&line), Err(SseError::TooLarge(100)));
        let mut r = Reader::new(100);
        let mut err = None;
        for _ in 0..10 {
            if let Err(e) = r.push(b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxx\n") {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(SseError::TooLarge(100)));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_error() {
        let mut r = Reader::new(100);
        assert_eq!(r.push(b"data: \xff\n"), Err(SseError::NotUtf8));
    }
}
