//! The dead-letter store: rejected events with their reasons, in a log of
//! their own (JSON payloads), listed and replayed through the API.
//!
//! A dead letter's id is its offset in that log. Replaying one re-validates
//! it with today's rules; those that pass are appended to the event log
//! (with the id `dead-letter-<offset>` when they had none, so that a replay
//! repeated after a crash is deduplicated) and a `replayed` marker is
//! appended to the dead-letter log. The set of replayed ids is rebuilt at
//! start by reading the log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::record::{EncodedBatch, id_hash};
use crate::schema::Rejection;
use crate::stream::{EventStream, StreamError};

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
    /// The event's recognised fields, as sent.
    event: Box<RawValue>,
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
    pub replayed: bool,
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
    fn matches(&self, id: u64, l: &Letter, replayed: bool) -> bool {
        id >= self.from
            && self.project.as_ref().is_none_or(|p| *p == l.project)
            && self
                .environment
                .as_ref()
                .is_none_or(|e| *e == l.environment)
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

impl DeadLetters {
    /// Reads the replay markers of `stream`.
    pub async fn open(stream: Arc<dyn EventStream>) -> Result<Self, StreamError> {
        let store = DeadLetters {
            stream,
            replayed: Mutex::new(HashSet::new()),
        };
        store.scan(0, usize::MAX, |_, _| false).await.map(|_| store)
    }

    pub fn stream(&self) -> &Arc<dyn EventStream> {
        &self.stream
    }

    /// Encodes letters for one append. Identical letters (same place, same
    /// text) share an id, so a retried batch stores its rejections once.
    pub fn encode(at: i64, letters: &[NewLetter<'_>]) -> EncodedBatch {
        let mut batch = EncodedBatch::default();
        for l in letters {
            let event = RawValue::from_string(l.event.to_string()).or_else(|_| {
                RawValue::from_string(serde_json::to_string(l.event).unwrap_or_default())
            });
            let Ok(event) = event else { continue };
            let entry = Entry::Rejected(Letter {
                at,
                project: l.project.to_string(),
                environment: l.environment.to_string(),
                index: l.index,
                reason: l.reason.clone(),
                event,
            });
            if let Ok(json) = serde_json::to_vec(&entry) {
                let key = format!("dead-letter:{}:{}", l.index, l.event);
                batch.push_raw(&json, Some(id_hash(l.project, l.environment, &key)));
            }
        }
        batch
    }

    /// Visits stored letters from `from` on; `f` returns `true` to stop.
    /// Replay markers met on the way are applied.
    async fn scan(
        &self,
        from: u64,
        max: usize,
        mut f: impl FnMut(u64, Letter) -> bool,
    ) -> Result<u64, StreamError> {
        let (_, end) = self.stream.bounds();
        let mut next = from;
        let mut seen = 0usize;
        while next < end && seen < max {
            let batch = self.stream.read(next, 1 << 20).await?;
            if batch.records.is_empty() {
                break;
            }
            next = batch.next;
            for rec in batch.records {
                match serde_json::from_slice::<Entry>(&rec.payload) {
                    Ok(Entry::Rejected(l)) => {
                        seen += 1;
                        if f(rec.offset, l) {
                            return Ok(next);
                        }
                    }
                    Ok(Entry::Replayed { ids }) => {
                        if let Ok(mut set) = self.replayed.lock() {
                            set.extend(ids);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(next)
    }

    fn is_replayed(&self, id: u64) -> bool {
        self.replayed
            .lock()
            .map(|s| s.contains(&id))
            .unwrap_or(false)
    }

    /// Up to `limit` letters matching `filter`, oldest first.
    pub async fn list(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StreamError> {
        let mut out = Vec::new();
        let mut letters = Vec::new();
        self.scan(filter.from, usize::MAX, |id, l| {
            letters.push((id, l));
            false
        })
        .await?;
        for (id, l) in letters {
            let replayed = self.is_replayed(id);
            if filter.matches(id, &l, replayed) {
                out.push(DeadLetter {
                    id,
                    at: l.at,
                    project: l.project,
                    environment: l.environment,
                    index: l.index,
                    reason: l.reason,
                    event: l.event,
                    replayed,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
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
