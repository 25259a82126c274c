//! The [`EventStream`] trait and its in-memory implementation.
//!
//! The trait is shaped for both backends: the embedded log (offsets are byte
//! positions) and NATS JetStream (offsets would be stream sequence numbers,
//! a batch one message, consumer offsets a durable consumer's ack floor).
//! Callers treat an offset as opaque: they read from one and resume from
//! the `next` a read returned.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use crate::dedup::IdWindow;
use crate::record::EncodedBatch;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an append did. Duplicates (by event id) were not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record written (or where it would have been).
    pub first: u64,
    /// Offset after the last record written.
    pub next: u64,
    pub written: usize,
    /// Indices, within the batch, of the records dropped as duplicates.
    pub duplicates: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBatch {
    pub records: Vec<StoredRecord>,
    /// Where the next read starts.
    pub next: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Too much is waiting to be written, or a consumer is too far behind.
    #[error("the event stream is overloaded; retry after {retry_after:?}")]
    Overloaded { retry_after: Duration },
    /// The stream failed (a write or fsync error) and accepts nothing more.
    #[error("the event stream is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An ordered, durable stream of event records.
pub trait EventStream: Send + Sync + std::fmt::Debug {
    /// Appends a batch as one unit; resolves once it is durable. Records
    /// whose id was seen recently are dropped and reported. Admission
    /// (backpressure) is decided when this is called, not when polled.
    fn append(&self, batch: EncodedBatch) -> BoxFuture<'_, Result<Appended, StreamError>>;

    /// Durable records from `from` on, about `max_bytes` of them at most
    /// (at least one when there is one).
    fn read(&self, from: u64, max_bytes: usize) -> BoxFuture<'_, Result<ReadBatch, StreamError>>;

    /// Records that `consumer` has processed everything before `next`.
    fn commit(&self, consumer: &str, next: u64) -> BoxFuture<'_, Result<(), StreamError>>;

    /// Where `consumer` resumes; `None` if it never committed.
    fn committed(&self, consumer: &str) -> BoxFuture<'_, Result<Option<u64>, StreamError>>;

    /// The first retained offset and the end of the durable records.
    fn bounds(&self) -> (u64, u64);

    /// `Err(why)` while the stream cannot accept appends (a full disk, a
    /// failed write); readiness checks report it.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether [`EventStream::read`] gives the stream's records (false for
    /// a stream that only workers read, partition by partition).
    fn readable(&self) -> bool {
        true
    }

    /// The local spool of a stream that keeps events on disk while its
    /// remote store is away (JetStream); `None` for the others.
    fn spool(&self) -> Option<crate::jetstream::SpoolStatus> {
        None
    }

    /// Appends the stream's own metric families (Prometheus text).
    fn encode_metrics(&self, _out: &mut String) {}
}

/// An in-memory stream for unit tests: offsets are record indices.
#[derive(Debug)]
pub struct MemoryStream {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug)]
struct MemoryInner {
    records: Vec<Vec<u8>>,
    ids: IdWindow,
    consumers: HashMap<String, u64>,
}

impl Default for MemoryStream {
    fn default() -> Self {
        MemoryStream::new(1 << 20)
    }
}

impl MemoryStream {
    pub fn new(dedup_ids: usize) -> Self {
        MemoryStream {
            inner: Mutex::new(MemoryInner {
                records: Vec::new(),
                ids: IdWindow::new(dedup_ids),
                consumers: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Splits a batch into its framed records, checking the lengths.
pub fn split_batch(batch: &EncodedBatch) -> Result<Vec<&[u8]>, StreamError> {
    let mut out = Vec::with_capacity(batch.records.len());
    let mut at = 0usize;
    for m in &batch.records {
        let end = at + m.len as usize;
        let rec = batch
            .data
            .get(at..end)
            .ok_or_else(|| StreamError::InvalidBatch("record lengths exceed the data".into()))?;
        out.push(rec);
        at = end;
    }
    if at != batch.data.len() {
        return Err(StreamError::InvalidBatch(
            "record lengths do not cover the data".into(),
        ));
    }
    Ok(out)
}

impl EventStream for MemoryStream {
    fn append(&self, batch: EncodedBatch) -> BoxFuture<'_, Result<Appended, StreamError>> {
        let result = split_batch(&batch).map(|recs| {
            let mut g = self.lock();
            let first = g.records.len() as u64;
            let mut duplicates = Vec::new();
            for (i, (rec, meta)) in recs.iter().zip(&batch.records).enumerate() {
                if let Some(id) = meta.id
                    && !g.ids.insert(id)
                {
                    duplicates.push(i);
                    continue;
                }
                g.records.push(rec[crate::record::HEADER..].to_vec());
            }
            let next = g.records.len() as u64;
            Appended {
                first,
                next,
                written: (next - first) as usize,
                duplicates,
            }
        });
        Box::pin(async move { result })
    }

    fn read(&self, from: u64, max_bytes: usize) -> BoxFuture<'_, Result<ReadBatch, StreamError>> {
        let g = self.lock();
        let mut out = ReadBatch {
            records: Vec::new(),
            next: from,
        };
        let mut bytes = 0;
        for (i, r) in g.records.iter().enumerate().skip(from as usize) {
            if bytes > 0 && bytes + r.len() > max_bytes {
                break;
            }
            bytes += r.len();
            out.records.push(StoredRecord {
                offset: i as u64,
                payload: r.clone(),
            });
            out.next = i as u64 + 1;
        }
        Box::pin(async move { Ok(out) })
    }

    fn commit(&self, consumer: &str, next: u64) -> BoxFuture<'_, Result<(), StreamError>> {
        self.lock().consumers.insert(consumer.to_string(), next);
        Box::pin(async { Ok(()) })
    }

    fn committed(&self, consumer: &str) -> BoxFuture<'_, Result<Option<u64>, StreamError>> {
        let v = self.lock().consumers.get(consumer).copied();
        Box::pin(async move { Ok(v) })
    }

    fn bounds(&self) -> (u64, u64) {
        (0, self.lock().records.len() as u64)
    }
}

/// Consumer offsets of the embedded log, kept in `consumers.json`.
pub type ConsumerOffsets = BTreeMap<String, u64>;
