//! The dead-letter store: rejected events with their reasons, in a log of
//! their own (JSON payloads), listed and replayed through the API.
//!
//! A dead letter's id is its offset in that log. Replaying one re-validates
//! it with today's rules; those that pass are appended to the event log
//! (with the id `dead-letter-<offset>` when they had none, so that a replay
//! repeated after a crash is deduplicated) and a `replayed` marker is
//! appended to the dead-letter log. The set of replayed ids is rebuilt at
//! start by reading the log.
//!
//! What is kept, and so what a replay sees: the event's recognised fields
//! as sent, a repeated field repeated (a replay rejects it again as
//! `duplicate_field`). An event whose text is longer than
//! [`MAX_STORED_EVENT`] is kept cut to that many bytes, as a JSON string,
//! with `truncated` set to its full size; such a letter is listed like any
//! other but never replayed (`still_rejected` with the code `truncated`).
//!
//! Listing is paged: one call reads at most [`SCAN_BUDGET`] bytes of the
//! log and returns at most a page of letters (by count and by bytes), with
//! the offset to continue from, so its memory and time are bounded however
//! large the log is. Rendering cannot fail: a letter's event is kept as
//! raw JSON text and written out as it is (never re-parsed, so no depth
//! limit applies), and a stored record that is not a letter is listed as
//! `unreadable` rather than skipped or failing the page.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::record::{EncodedBatch, id_hash};
use crate::schema::Rejection;
use crate::stream::{EventStream, StreamError};

/// Longest event text kept in a dead letter, in bytes; longer ones are cut.
pub const MAX_STORED_EVENT: usize = 64 * 1024;
/// Most log bytes one listing call reads.
pub const SCAN_BUDGET: usize = 8 << 20;
/// Most event bytes in one page of a listing (the first letter always fits).
pub const PAGE_BYTES: usize = 4 << 20;
/// Bytes asked for per read of the log while listing.
const READ_BYTES: usize = 256 * 1024;

#[derive(Debug, Serialize, Deserialize)]
// Externally tagged: an internally tagged enum buffers its content, and a
// `RawValue` cannot be read from that buffer.
#[serde(rename_all = "snake_case")]
enum Entry {
    Rejected(Letter),
    Replayed { ids: Vec<u64> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Letter {
    at: i64,
    project: String,
    environment: String,
    /// Position of the event in its batch.
    index: usize,
    reason: Rejection,
    /// The event's recognised fields, as sent; a JSON string holding the
    /// first bytes when `truncated` is set.
    event: Box<RawValue>,
    /// Size in bytes of the event text before it was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    truncated: Option<usize>,
}

/// One dead letter as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: u64,
    /// When it was rejected, in milliseconds since the Unix epoch.
    pub at: i64,
    pub project: String,
    pub environment: String,
    pub index: usize,
    pub reason: Rejection,
    pub event: Box<RawValue>,
    /// Set when only the first bytes of the event were kept: its full size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<usize>,
    pub replayed: bool,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Page {
    pub dead_letters: Vec<DeadLetter>,
    /// Where the next page starts (`from`); `None` once the end of the log
    /// was reached. A page may hold fewer letters than asked for (even
    /// none) and still have a `next`: the call stopped at its read budget.
    pub next: Option<u64>,
}

/// Which dead letters to list or replay.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub project: Option<String>,
    pub environment: Option<String>,
    /// Only ids (offsets) at or after this one.
    pub from: u64,
    pub include_replayed: bool,
}

impl Filter {
    fn matches(&self, project: &str, environment: &str, replayed: bool) -> bool {
        self.project.as_ref().is_none_or(|p| p == project)
            && self.environment.as_ref().is_none_or(|e| e == environment)
            && (self.include_replayed || !replayed)
    }
}

#[derive(Debug)]
pub struct DeadLetters {
    stream: Arc<dyn EventStream>,
    replayed: Mutex<HashSet<u64>>,
}

/// A rejected event about to be stored.
#[derive(Debug)]
pub struct NewLetter<'a> {
    pub project: &'a str,
    pub environment: &'a str,
    pub index: usize,
    pub reason: &'a Rejection,
    /// JSON text of the event.
    pub event: &'a str,
}

/// `text` as a stored event: itself when it is JSON of at most
/// [`MAX_STORED_EVENT`] bytes, else a JSON string of its first bytes (cut
/// at a character boundary) and its full size.
fn stored_event(text: &str) -> (Box<RawValue>, Option<usize>) {
    if text.len() <= MAX_STORED_EVENT
        && let Ok(raw) = RawValue::from_string(text.to_string())
    {
        return (raw, None);
    }
    let mut cut = text.len().min(MAX_STORED_EVENT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let quoted = serde_json::to_string(&text[..cut]).unwrap_or_else(|_| "\"\"".into());
    let raw = RawValue::from_string(quoted).unwrap_or_else(|_| null());
    let truncated = (cut < text.len()).then_some(text.len());
    (raw, truncated)
}

fn null() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

/// How a stored record is listed: a letter, or `unreadable` when the bytes
/// are not one (they are never skipped silently, and never fail a page).
fn unreadable(id: u64, payload: &[u8]) -> DeadLetter {
    DeadLetter {
        id,
        at: 0,
        project: String::new(),
        environment: String::new(),
        index: 0,
        reason: Rejection {
            code: "unreadable".into(),
            message: format!(
                "this record of the dead-letter log ({} bytes) is not a dead letter",
                payload.len()
            ),
            field: None,
        },
        event: null(),
        truncated: None,
        replayed: false,
    }
}

impl DeadLetters {
    /// Reads the replay markers of `stream`.
    pub async fn open(stream: Arc<dyn EventStream>) -> Result<Self, StreamError> {
        let store = DeadLetters {
            stream,
            replayed: Mutex::new(HashSet::new()),
        };
        let (mut next, end) = store.stream.bounds();
        while next < end {
            let batch = store.stream.read(next, READ_BYTES).await?;
            if batch.records.is_empty() {
                break;
            }
            next = batch.next;
            for rec in batch.records {
                store.apply_marker(&rec.payload);
            }
        }
        Ok(store)
    }

    pub fn stream(&self) -> &Arc<dyn EventStream> {
        &self.stream
    }

    /// Encodes letters for one append. Identical letters (same place, same
    /// text) share an id, so a retried batch stores its rejections once.
    pub fn encode(at: i64, letters: &[NewLetter<'_>]) -> EncodedBatch {
        let mut batch = EncodedBatch::default();
        for l in letters {
            let (event, truncated) = stored_event(l.event);
            let entry = Entry::Rejected(Letter {
                at,
                project: l.project.to_string(),
                environment: l.environment.to_string(),
                index: l.index,
                reason: l.reason.clone(),
                event,
                truncated,
            });
            let key = format!("dead-letter:{}:{}", l.index, l.event);
            let id = Some(id_hash(l.project, l.environment, &key));
            // A letter is at most a few hundred KiB (the cut event, escaped)
            // and always fits a record; should that ever change, say so.
            let pushed = serde_json::to_vec(&entry).is_ok_and(|json| batch.push_raw(&json, id));
            if !pushed {
                tracing::error!(
                    project = l.project,
                    environment = l.environment,
                    "a dead letter could not be encoded"
                );
            }
        }
        batch
    }

    /// Applies a `replayed` marker; `false` if `payload` is not one.
    fn apply_marker(&self, payload: &[u8]) -> bool {
        if !payload.starts_with(b"{\"replayed\"") {
            return false;
        }
        match serde_json::from_slice::<Entry>(payload) {
            Ok(Entry::Replayed { ids }) => {
                if let Ok(mut set) = self.replayed.lock() {
                    set.extend(ids);
                }
                true
            }
            _ => false,
        }
    }

    fn is_replayed(&self, id: u64) -> bool {
        self.replayed
            .lock()
            .map(|s| s.contains(&id))
            .unwrap_or(false)
    }

    /// Up to `limit` letters matching `filter`, oldest first, from
    /// `filter.from`; see [`Page`] for where to continue.
    pub async fn list(&self, filter: &Filter, limit: usize) -> Result<Page, StreamError> {
        let limit = limit.max(1);
        let (start, end) = self.stream.bounds();
        let mut next = filter.from.max(start);
        let mut page = Page::default();
        let (mut scanned, mut page_bytes) = (0usize, 0usize);
        while next < end {
            if scanned >= SCAN_BUDGET {
                page.next = Some(next);
                return Ok(page);
            }
            let batch = self.stream.read(next, READ_BYTES).await?;
            if batch.records.is_empty() {
                break;
            }
            let mut records = batch.records.into_iter().peekable();
            while let Some(rec) = records.next() {
                scanned += rec.payload.len();
                let Some(letter) = self.letter(rec.offset, &rec.payload) else {
                    continue;
                };
                let replayed = letter.replayed;
                if !filter.matches(&letter.project, &letter.environment, replayed) {
                    continue;
                }
                let bytes = letter.event.get().len();
                if !page.dead_letters.is_empty() && page_bytes + bytes > PAGE_BYTES {
                    page.next = Some(rec.offset);
                    return Ok(page);
                }
                page_bytes += bytes;
                page.dead_letters.push(letter);
                if page.dead_letters.len() >= limit {
                    let after = records.peek().map_or(batch.next, |r| r.offset);
                    page.next = (after < end).then_some(after);
                    return Ok(page);
                }
            }
            next = batch.next;
        }
        Ok(page)
    }

    /// The letter stored at `id`; `None` for a replay marker.
    fn letter(&self, id: u64, payload: &[u8]) -> Option<DeadLetter> {
        if self.apply_marker(payload) {
            return None;
        }
        let Ok(Entry::Rejected(l)) = serde_json::from_slice::<Entry>(payload) else {
            return Some(unreadable(id, payload));
        };
        Some(DeadLetter {
            id,
            at: l.at,
            project: l.project,
            environment: l.environment,
            index: l.index,
            reason: l.reason,
            event: l.event,
            truncated: l.truncated,
            replayed: self.is_replayed(id),
        })
    }

    /// Records that `ids` were replayed, durably.
    pub async fn mark_replayed(&self, ids: Vec<u64>) -> Result<(), StreamError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut batch = EncodedBatch::default();
        for chunk in ids.chunks(10_000) {
            let json = serde_json::to_vec(&Entry::Replayed {
                ids: chunk.to_vec(),
            })
            .map_err(|e| StreamError::InvalidBatch(e.to_string()))?;
            batch.push_raw(&json, None);
        }
        self.stream.append(batch).await?;
        if let Ok(mut set) = self.replayed.lock() {
            set.extend(ids);
        }
        Ok(())
    }
}
