//! Event ingestion for Switchyard: the event schema and its validation, the
//! embedded durable event log, the [`EventStream`] trait it implements,
//! the dead-letter store and exposure logging.
//!
//! # Layout
//! - `schema.rs`: the JSON event schema; one-pass batch parsing into
//!   borrowed fields ([`RawEvent`]) and per-event validation ([`EventRef`]
//!   or a [`Rejection`] with a stable code).
//! - `record.rs`: the compact binary form of an event, record framing
//!   (length + CRC-32) and [`EncodedBatch`], the unit of one log write.
//! - `segment.rs`: segment files: naming, listing, checked scans, and
//!   [`read_dir`], the read-only reader that tools and checkers use.
//! - `log.rs`: [`EventLog`], the durable log: one writer thread, group
//!   commit, recovery, retention, consumer offsets, backpressure.
//! - `stream.rs`: the [`EventStream`] trait and [`MemoryStream`] for tests.
//! - `jetstream.rs`: [`JetStreamEvents`], the [`EventStream`] on NATS
//!   JetStream (one message per partition per append, a local spool
//!   forwarded by a background task while NATS is away), and
//!   [`PartitionConsumer`], how workers read a partition.
//! - `dedup.rs`: the bounded id window and the time window of exposures.
//! - `deadletter.rs`: rejected events with reasons; list and replay.
//! - `exposure.rs`: batched, deduplicated exposure logging.
//! - `export.rs`: raw events out, as NDJSON, a chunk at a time.
//! - `ingest.rs`: [`Events`], the service the HTTP layer calls.
//! - `metrics.rs`: Prometheus metrics in the crate's own registry.
//!
//! # Why our own log rather than an embedded storage crate
//! What ingestion needs is narrow: append batches, fsync once for many
//! requests, acknowledge after the fsync, read sequentially from an offset,
//! delete whole old segments. That is a few hundred lines whose every
//! failure mode we can test (the crash test kills the server with SIGKILL in
//! a loop and checks each acknowledged event is there exactly once).
//! The candidates each bring what we do not need and miss what we do:
//! key-value engines (sled, redb, fjall, RocksDB) index every record and
//! rewrite data (B-tree pages, LSM compaction) that is only ever appended
//! and read in order, and their commit is per transaction: group commit
//! across concurrent HTTP requests would still be ours to build on top.
//! Write-ahead-log crates (e.g. okaywal, simple wal crates) are closer but
//! are young, each with a single maintainer, with their own record format
//! and recovery rules that we would have to trust and learn anyway; none
//! gives consumer offsets or size/age retention in the shape JetStream has.
//! Owning the format also keeps replay and export (and the checker) a
//! plain sequential read of files any tool can parse.
//!
//! # Durability contract
//! An append resolves only after `sync_data` of the segment that holds it
//! (and of the directory when a segment was created). Recovery keeps every
//! record whose length and CRC-32 check, and truncates the last segment at
//! its first bad record (a torn write). Offsets are byte positions.
//!
//! # Deduplication window
//! Event ids are remembered as 64-bit hashes of (project, environment, id)
//! for the newest [`LogConfig::dedup_ids`] distinct ids (default 4M, about
//! 80 MB), rebuilt from the log at start. A repeated id is stored once if
//! the first copy is among those; events without an id are never
//! deduplicated.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod deadletter;
pub mod dedup;
pub mod export;
pub mod exposure;
pub mod ingest;
pub mod jetstream;
pub mod log;
pub mod metrics;
pub mod record;
pub mod schema;
pub mod segment;
pub mod stream;

pub use deadletter::{DeadLetter, Filter as DeadLetterFilter, Page as DeadLetterPage};
pub use export::{Export, ExportFilter};
pub use exposure::ExposureConfig;
pub use ingest::{
    BodyFormat, Events, EventsConfig, IngestError, IngestReport, RejectedEvent, ReplayReport,
};
pub use jetstream::{
    JetStreamConfig, JetStreamEvents, PartitionConsumer, PartitionMessage, SpoolStatus,
    partition_of,
};
pub use log::{EventLog, LogConfig};
pub use metrics::{EventMetrics, LogMetrics};
pub use record::{EncodedBatch, StoredEvent, decode_event};
pub use schema::{EventRef, KindRef, Limits, RawEvent, Rejection};
pub use segment::read_dir;
pub use stream::{Appended, EventStream, MemoryStream, ReadBatch, StoredRecord, StreamError};
