//! Raw events out: the stored events of one environment and a time range,
//! as NDJSON, read a chunk at a time.
//!
//! One line per event, in log order (the order they were stored, which is
//! not event-time order), with the fields an event is sent with plus its
//! `project` and `environment`; `time` is in milliseconds since the Unix
//! epoch. A line is therefore also a valid event for `POST /api/v1/events`
//! (the two extra fields are ignored there).
//!
//! The log interleaves every environment and is ordered by arrival, not by
//! event time, so an export reads the whole retained log, up to where it
//! ended when the export began; memory is one chunk, whatever the size.

use crate::record::{StoredEvent, decode_event};
use crate::stream::{EventStream, StreamError};

/// Bytes of log read per chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Which events to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFilter {
    pub project: String,
    pub environment: String,
    /// Only events at or after this time (ms since the Unix epoch).
    pub from_ms: Option<i64>,
    /// Only events before this time.
    pub to_ms: Option<i64>,
}

impl ExportFilter {
    pub fn matches(&self, ev: &StoredEvent<'_>) -> bool {
        ev.project == self.project
            && ev.environment == self.environment
            && self.from_ms.is_none_or(|t| ev.time >= t)
            && self.to_ms.is_none_or(|t| ev.time < t)
    }
}

/// Appends the NDJSON line of every matching event payload to `out`;
/// returns how many. Payloads that are not events are skipped.
pub fn write_lines<'a>(
    payloads: impl IntoIterator<Item = &'a [u8]>,
    filter: &ExportFilter,
    out: &mut Vec<u8>,
) -> usize {
    let mut n = 0;
    for p in payloads {
        let Some(ev) = decode_event(p) else { continue };
        if filter.matches(&ev) && serde_json::to_writer(&mut *out, &ev).is_ok() {
            out.push(b'\n');
            n += 1;
        }
    }
    n
}

/// A running export over an [`EventStream`]: each [`Export::next_chunk`]
/// reads about [`CHUNK_BYTES`] of log and returns the NDJSON of the
/// matching events in it (possibly empty), until `None`.
#[derive(Debug)]
pub struct Export {
    filter: ExportFilter,
    next: u64,
    end: u64,
    /// Events written so far.
    pub events: usize,
}

impl Export {
    /// Starts at the oldest retained record; ends where the log ended now.
    pub fn new(stream: &dyn EventStream, filter: ExportFilter) -> Self {
        let (next, end) = stream.bounds();
        Export {
            filter,
            next,
            end,
            events: 0,
        }
    }

    pub async fn next_chunk(
        &mut self,
        stream: &dyn EventStream,
    ) -> Result<Option<Vec<u8>>, StreamError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let batch = stream.read(self.next, CHUNK_BYTES).await?;
        if batch.records.is_empty() || batch.next <= self.next {
            self.next = self.end;
            return Ok(None);
        }
        self.next = batch.next;
        let mut out = Vec::new();
        let payloads = batch
            .records
            .iter()
            .filter(|r| r.offset < self.end)
            .map(|r| r.payload.as_slice());
        self.events += write_lines(payloads, &self.filter, &mut out);
        Ok(Some(out))
    }
}

/// Exports from a log directory on disk (no server needed, read-only, no
/// lock taken): for the CLI. Stops at the first write error (a closed
/// pipe ends the read too).
pub fn export_dir(
    dir: &std::path::Path,
    filter: &ExportFilter,
    out: &mut impl std::io::Write,
) -> std::io::Result<usize> {
    use std::ops::ControlFlow;
    let mut n = 0;
    let mut line = Vec::new();
    let mut failed = None;
    for seg in crate::segment::list_segments(dir)? {
        let scanned = crate::segment::scan_segment(&seg, 0, None, |_, payload| {
            line.clear();
            if write_lines([payload], filter, &mut line) == 1 {
                if let Err(e) = out.write_all(&line) {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
                n += 1;
            }
            ControlFlow::Continue(())
        });
        match scanned {
            // Deleted by retention while we listed: nothing to export.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(n)
}

/// A time bound as users write it: milliseconds since the Unix epoch or an
/// RFC 3339 time.
pub fn parse_time_bound(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}
