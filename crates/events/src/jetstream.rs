//! [`JetStreamEvents`]: the [`EventStream`] on NATS JetStream, with a local
//! spool, and [`PartitionConsumer`], how workers read a partition.
//!
//! # Layout in JetStream
//! One stream (`SWITCHYARD_EVENTS` by default; file storage, limits
//! retention, [`JetStreamConfig::max_age`] / [`JetStreamConfig::max_bytes`],
//! the duplicate window) over the subjects `prefix.0` … `prefix.{P-1}`:
//! partition `p` of a unit is [`partition_of`]`(unit, P)`, so all events of
//! a unit are in one partition, in the order this node stored them. A
//! message is a run of framed records (`len u32, crc u32, payload`, the
//! bytes of [`EncodedBatch::data`]); an append sends one message per
//! partition it touches (more when one would pass the server's
//! `max_payload`, at most 1 MiB less 1 KiB here). The partition count is
//! chosen when the stream is created ([`JetStreamConfig::partitions`]);
//! afterwards it is read from the stream's subjects.
//!
//! # Appends
//! An append resolves `Ok` once JetStream acknowledged each of its
//! messages, or once those it did not acknowledge (an error, or no
//! acknowledgment within [`JetStreamConfig::publish_timeout`]) are in the
//! spool: an [`EventLog`] in `spool_dir`, synced before it answers. A
//! failure switches the node to *spooling*: appends then go to the spool
//! at once, without waiting for timeouts, until the spool is drained.
//! When the spool refuses too (its backlog bound, a full disk) the append
//! fails with the spool's error (429 / 503 upstream); what was
//! acknowledged is never lost. The publishing runs in a task of the
//! runtime `connect` ran in, so an append completes (or undoes its ids)
//! even if its caller stops waiting, and `append` may be called from
//! outside that runtime (the exposure logger's thread). Admission is
//! decided in that task, at once: the spool's backpressure applies only
//! when something is spooled. [`Appended::first`] and [`Appended::next`]
//! are positions in this node's count of records written since it
//! started (nothing reads them; they are not stream sequences).
//!
//! Message ids (`Nats-Msg-Id`) make resends harmless within the duplicate
//! window: a direct message is `{instance}-{counter}`, where `instance` is a
//! random 128-bit id kept in `spool_dir/instance` and the counter starts at
//! a random 63-bit value at each start (a counter from 0 would repeat the
//! previous run's ids within the window, and JetStream would drop the new
//! messages). A message that was sent but not acknowledged may still be
//! stored (its acknowledgment was lost, or the client sends it after it
//! reconnects): it goes to the spool *whole, with its id* (a
//! `SYJSMSG1` record, not an event), and the forwarder sends it again with
//! that id, so it is stored once. Records that were never sent (the
//! client was not connected, or the node was spooling) go to the spool as
//! plain event records.
//!
//! Durability: the spool syncs before it answers, like the embedded log;
//! JetStream acknowledges once the message is written to its store, and
//! nats-server (2.9) syncs its files to disk only every two minutes by
//! default: with one replica an acknowledged message survives a crash of
//! nats-server but not of its machine. Three replicas make it survive that.
//!
//! # The forwarder
//! A task started by [`JetStreamEvents::connect`] reads the spool from its
//! committed offset (consumer [`FORWARDER`]), at most about 1 MiB a step,
//! groups the plain records per partition and publishes them with the ids
//! `{instance}-spool-{offset}-{partition}` (`offset`: the spool offset of
//! the message's first record), and spooled messages with their own ids.
//! It commits the spool offset only when every message of the step was
//! acknowledged, and retries the others with a backoff (100 ms doubling to
//! 5 s) while NATS is away. Before publishing a step it writes where the
//! step ends (consumer `jetstream-forwarder-in-flight`), so that after a
//! restart the same step is read again, cut into the same messages with
//! the same ids, and JetStream drops what it already stored. Spooling ends
//! when the spool is drained (committed offset = end) just after a
//! successful publish (or, with nothing to send, a successful stream
//! request).
//!
//! The spool's settings are adjusted (see [`spool_log_config`]): appends
//! are refused while the forwarder is more than `max_consumer_lag` bytes
//! behind, and size retention keeps that much and a margin, so retention
//! never deletes an unforwarded record; age retention is off.
//!
//! # Deduplication
//! Event ids are deduplicated on this node as the embedded log does (an
//! [`IdWindow`] of `spool.dedup_ids` ids; duplicates are reported in
//! [`Appended::duplicates`] and not published; the ids of records that
//! could not be stored are forgotten). The window starts empty at each
//! start: a client's retry of a batch stored before a restart is stored
//! again (JetStream's duplicate window is per message, not per event).
//! A retry that arrives while the first copy is still being published is
//! reported as a duplicate even if that first copy then fails.
//!
//! # Reading
//! [`EventStream::read`], `commit` and `committed` answer
//! [`StreamError::Unavailable`]: partitions are read by workers with
//! [`PartitionConsumer`], which opens its own NATS connection
//! (`PartitionConsumer::open(&config, partition, holder, start_sequence)`;
//! one connection per partition consumer). `bounds()` is `(0, 0)`.
//!
//! Each holder of a partition (a worker's lease epoch, `holder`) has its
//! own durable consumer ([`consumer_name`]): opening deletes the one of the
//! same name and the previous holder's, whose next fetch then fails (its
//! pull request is refused, or the deliveries it gets do not continue its
//! own). A stalled former holder that opens again gets a consumer of its
//! own and cannot move the current holder's; the worker's lease fences
//! what it saves. Any fetch error means: reopen from
//! [`PartitionConsumer::next_sequence`]. A consumer nobody pulls from is
//! removed by the server after 10 minutes (`inactive_threshold`).
//!
//! # Starting while NATS is away
//! `connect` needs the partition count. When NATS or the stream cannot be
//! reached it uses the layout cached in `spool_dir/stream.json` by an
//! earlier successful start (same stream name and subject prefix) and
//! starts spooling; the client keeps connecting in the background and the
//! forwarder checks (or creates) the stream before it forwards. Without
//! that file `connect` fails with [`StreamError::Unavailable`] naming the
//! URL and the cause. A stream whose subjects are not `prefix.0..P-1` is
//! an error either way.
//!
//! # Shutdown
//! [`JetStreamEvents::close`] stops the forwarder (a step in flight is
//! abandoned uncommitted and sent again, with the same ids, at the next
//! start); [`JetStreamEvents::shutdown`] also waits for it to end, after
//! which dropping the handle frees the spool directory. Dropping the last
//! handle closes too. Appends still work after `close`, but what they
//! spool is forwarded only after a restart: close after the HTTP server
//! stopped taking events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot, watch};

use crate::dedup::IdWindow;
use crate::log::{EventLog, LogConfig};
use crate::metrics::EventMetrics;
use crate::record::{EncodedBatch, HEADER, MAX_PAYLOAD, check_record};
use crate::stream::{
    Appended, BoxFuture, EventStream, ReadBatch, StoredRecord, StreamError, split_batch,
};

/// The spool consumer whose offset is the forwarder's.
pub const FORWARDER: &str = "jetstream-forwarder";
/// Where the forwarder's step in flight ends.
const IN_FLIGHT: &str = "jetstream-forwarder-in-flight";
/// Spool bytes the forwarder reads per step, about.
const READ_BYTES: usize = 1 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long the forwarder sleeps with nothing to do (appends that spool
/// wake it at once).
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// The spool's backlog bound when its configuration sets none.
pub const DEFAULT_SPOOL_BACKLOG: u64 = 512 << 20;
/// Room left in a message for headers and the spool's envelope.
const ENVELOPE_ROOM: usize = 1024;
/// First bytes of a spooled message record (never those of an event: an
/// event payload starts with its kind, 1 to 3).
const MESSAGE_MAGIC: &[u8; 8] = b"SYJSMSG1";
const NOT_READABLE: &str = "the JetStream event stream is not read through the EventStream trait: \
     workers read its partitions with PartitionConsumer";

/// Where and how events are stored in JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    pub stream: String,
    /// Partition `p`'s subject is `{subject_prefix}.{p}`.
    pub subject_prefix: String,
    /// Used only when the stream is created.
    pub partitions: u32,
    pub replicas: usize,
    /// Retention by age.
    pub max_age: Duration,
    /// Retention by size; -1: unlimited.
    pub max_bytes: i64,
    pub duplicate_window: Duration,
    /// After this an unacknowledged publish counts as failed.
    pub publish_timeout: Duration,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "SWITCHYARD_EVENTS".into(),
            subject_prefix: "switchyard.events".into(),
            partitions: 4,
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: -1,
            duplicate_window: Duration::from_secs(600),
            publish_timeout: Duration::from_secs(2),
        }
    }
}

/// Stable partition of a unit: MurmurHash3 x86_32 of its UTF-8 bytes (seed
/// 0), modulo `partitions`.
pub fn partition_of(unit: &str, partitions: u32) -> u32 {
    switchyard_core::bucket::murmur3_x86_32(unit.as_bytes(), 0) % partitions.max(1)
}

fn subject(prefix: &str, partition: u32) -> String {
    format!("{prefix}.{partition}")
}

/// The durable consumer of one partition.
/// The durable consumer of `partition` for the holder of lease epoch
/// `holder`: each holder has its own, so a stalled former holder that
/// reopens its consumer cannot move the current holder's.
pub fn consumer_name(stream: &str, partition: u32, holder: u64) -> String {
    format!("{stream}_p{partition}_e{holder}")
}

/// The spool's settings as the forwarder needs them: a backlog bound
/// (`max_consumer_lag`, [`DEFAULT_SPOOL_BACKLOG`] when unset or, when only
/// `retention_bytes` is set, what it leaves past the margin), size
/// retention of at least the bound plus a margin (two segments, the
/// pending bytes and two write groups: what can be written past the bound
/// before it refuses), no age retention, and an id window of one (the
/// node's own window deduplicates; the spool stores no ids).
pub fn spool_log_config(mut c: LogConfig) -> LogConfig {
    let margin = c
        .segment_bytes
        .saturating_mul(2)
        .saturating_add(c.max_pending_bytes as u64)
        .saturating_add((c.max_group_bytes as u64).saturating_mul(2));
    let lag = match (c.max_consumer_lag, c.retention_bytes) {
        (Some(lag), Some(r)) if r > margin => lag.min(r - margin),
        (Some(lag), _) => lag,
        (None, Some(r)) if r > margin => r - margin,
        (None, _) => DEFAULT_SPOOL_BACKLOG,
    };
    c.max_consumer_lag = Some(lag);
    c.retention_bytes = Some(
        c.retention_bytes
            .unwrap_or(0)
            .max(lag.saturating_add(margin)),
    );
    c.retention_age = None;
    c.dedup_ids = 1;
    c
}

/// The stream as this node creates it.
fn stream_config(config: &JetStreamConfig, partitions: u32) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        subjects: (0..partitions.max(1))
            .map(|p| subject(&config.subject_prefix, p))
            .collect(),
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        max_age: config.max_age,
        max_bytes: config.max_bytes,
        max_messages: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        num_replicas: config.replicas.max(1),
        duplicate_window: config.duplicate_window,
        ..Default::default()
    }
}

/// The partition count of a stream whose subjects are `prefix.0..P-1`.
fn partitions_from_subjects(prefix: &str, subjects: &[String]) -> Result<u32, String> {
    let mut seen = BTreeSet::new();
    for s in subjects {
        let n = s
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|n| n.parse::<u32>().ok().filter(|v| v.to_string() == n));
        match n {
            Some(n) => {
                seen.insert(n);
            }
            None => {
                return Err(format!(
                    "the stream's subject {s:?} is not {prefix}.<partition>"
                ));
            }
        }
    }
    let count = seen.len() as u32;
    if count == 0 || seen.last() != Some(&(count - 1)) {
        return Err(format!(
            "the stream's subjects {subjects:?} are not {prefix}.0 to {prefix}.<P-1>"
        ));
    }
    Ok(count)
}

/// Why the stream could not be opened.
enum OpenError {
    /// NATS or JetStream did not answer: a cached layout may do.
    Unreachable(String),
    /// It answered, and the stream is not one this node can use.
    Layout(String),
}

/// Opens the stream, creating it (with `create_partitions`) if missing;
/// returns its partition count.
async fn open_stream(
    js: &jetstream::Context,
    config: &JetStreamConfig,
    create_partitions: u32,
) -> Result<u32, OpenError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
    let name = &config.stream;
    let mut created = false;
    for _ in 0..3 {
        match js.get_stream(name).await {
            Ok(s) => {
                let p = partitions_from_subjects(
                    &config.subject_prefix,
                    &s.cached_info().config.subjects,
                )
                .map_err(|e| OpenError::Layout(format!("stream {name}: {e}")))?;
                if !created && p != config.partitions {
                    tracing::warn!(
                        stream = %name,
                        partitions = p,
                        configured = config.partitions,
                        "the JetStream stream exists with another partition count; using its own"
                    );
                }
                return Ok(p);
            }
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {}
                GetStreamErrorKind::JetStream(j) => {
                    return Err(OpenError::Layout(format!("stream {name}: {j}")));
                }
                _ => {
                    return Err(OpenError::Unreachable(format!(
                        "cannot get stream {name}: {e}"
                    )));
                }
            },
        }
        match js
            .create_stream(stream_config(config, create_partitions))
            .await
        {
            Ok(_) => {
                tracing::info!(stream = %name, partitions = create_partitions, "created the JetStream stream");
                created = true;
            }
            // Another node created it meanwhile: read it again.
            Err(e) if matches!(e.kind(), CreateStreamErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
                {}
            Err(e) => {
                return Err(match e.kind() {
                    CreateStreamErrorKind::JetStream(j) => {
                        OpenError::Layout(format!("cannot create stream {name}: {j}"))
                    }
                    _ => OpenError::Unreachable(format!("cannot create stream {name}: {e}")),
                });
            }
        }
    }
    Err(OpenError::Unreachable(format!(
        "stream {name} could not be opened or created"
    )))
}

/// Opens the stream (creating it with `config.partitions` partitions if it
/// does not exist) and returns its partition count; what a worker calls
/// before it reads partitions. Fails when NATS cannot be reached.
pub async fn stream_partitions(config: &JetStreamConfig) -> Result<u32, StreamError> {
    let client = connect_client(config, false)
        .await
        .map_err(StreamError::Unavailable)?;
    let js = js_context(&client, config);
    open_stream(&js, config, config.partitions)
        .await
        .map_err(|e| match e {
            OpenError::Unreachable(m) | OpenError::Layout(m) => StreamError::Unavailable(m),
        })
}

/// A client that reconnects by itself, forever.
async fn connect_client(
    config: &JetStreamConfig,
    retry_initial: bool,
) -> Result<async_nats::Client, String> {
    let timeout = config.publish_timeout.max(Duration::from_secs(1));
    let mut options = async_nats::ConnectOptions::new()
        .name("switchyard")
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            let exp = attempts.min(5) as u32;
            Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(2))
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("NATS: disconnected"),
                async_nats::Event::Connected => tracing::info!("NATS: connected"),
                other => tracing::debug!(event = %other, "NATS"),
            }
        });
    if retry_initial {
        options = options.retry_on_initial_connect();
    }
    // A comma-separated list names several servers of a NATS cluster (the
    // client also learns the others from the one it reaches).
    let servers = config
        .url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid NATS URL {:?}: {e}", config.url))?;
    options
        .connect(servers)
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", config.url))
}

fn js_context(client: &async_nats::Client, config: &JetStreamConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(config.publish_timeout.max(Duration::from_millis(100)))
        .build(client.clone())
}

/// The stream layout last seen, for a start while NATS is away.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CachedLayout {
    stream: String,
    subject_prefix: String,
    partitions: u32,
}

const LAYOUT_FILE: &str = "stream.json";

fn write_layout(dir: &Path, config: &JetStreamConfig, partitions: u32) -> io::Result<()> {
    let layout = CachedLayout {
        stream: config.stream.clone(),
        subject_prefix: config.subject_prefix.clone(),
        partitions,
    };
    let bytes = serde_json::to_vec(&layout).map_err(io::Error::other)?;
    write_file_durably(dir, LAYOUT_FILE, &bytes)
}

fn read_layout(dir: &Path, config: &JetStreamConfig) -> Option<u32> {
    let bytes = std::fs::read(dir.join(LAYOUT_FILE)).ok()?;
    let layout: CachedLayout = serde_json::from_slice(&bytes).ok()?;
    (layout.stream == config.stream
        && layout.subject_prefix == config.subject_prefix
        && layout.partitions > 0)
        .then_some(layout.partitions)
}

fn write_file_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    crate::segment::sync_dir(dir)
}

/// 64 random bits: `RandomState` keys come from the OS's random source;
/// the time, the process and a counter make each call's input distinct.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// This node's id, kept in `dir/instance` (32 hex digits).
fn instance_id(dir: &Path) -> io::Result<String> {
    let path = dir.join("instance");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(id.to_ascii_lowercase());
        }
        tracing::warn!(path = %path.display(), "the instance file is not a 128-bit hex id; writing a new one");
    }
    let id = format!("{:016x}{:016x}", random_u64(), random_u64());
    write_file_durably(dir, "instance", id.as_bytes())?;
    Ok(id)
}

/// Frames `payload` as the log does (length, CRC-32 of length and payload).
fn push_framed(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// The payloads of the framed records in `data` that check, and how many
/// frames did not. A frame whose CRC fails is stepped over when its length
/// is plausible; otherwise the rest cannot be framed and counts as one.
pub fn split_frames(data: &[u8]) -> (Vec<&[u8]>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    let mut at = 0;
    while let Some(rest) = data.get(at..).filter(|r| !r.is_empty()) {
        if let Some(len) = check_record(rest) {
            out.push(&rest[HEADER..HEADER + len]);
            at += HEADER + len;
            continue;
        }
        bad += 1;
        let len = rest
            .get(0..4)
            .and_then(|b| b.try_into().ok())
            .map(|b| u32::from_le_bytes(b) as usize);
        match len {
            Some(len) if len > 0 && len <= MAX_PAYLOAD && rest.len() >= HEADER + len => {
                at += HEADER + len;
            }
            _ => break,
        }
    }
    (out, bad)
}

/// The unit of an event payload (see `record.rs`), read without decoding
/// the rest: kind, time, then id, project, environment and unit.
fn payload_unit(payload: &[u8]) -> Option<&str> {
    let mut at = 1 + 8;
    let mut field = || {
        let n = u16::from_le_bytes(payload.get(at..at + 2)?.try_into().ok()?) as usize;
        let s = payload.get(at + 2..at + 2 + n)?;
        at += 2 + n;
        Some(s)
    };
    for _ in 0..3 {
        field()?;
    }
    std::str::from_utf8(field()?).ok()
}

fn partition_for(payload: &[u8], partitions: u32) -> u32 {
    partition_of(payload_unit(payload).unwrap_or(""), partitions)
}

/// A spooled message: magic, partition u32 LE, id (u16 LE length), then
/// the message's payload.
fn encode_message_record(partition: u32, id: &str, payload: &[u8]) -> Vec<u8> {
    let id = &id.as_bytes()[..id.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(MESSAGE_MAGIC.len() + 6 + id.len() + payload.len());
    out.extend_from_slice(MESSAGE_MAGIC);
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(payload);
    out
}

fn decode_message_record(record: &[u8]) -> Option<(u32, &str, &[u8])> {
    let rest = record.strip_prefix(MESSAGE_MAGIC.as_slice())?;
    let partition = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
    let n = u16::from_le_bytes(rest.get(4..6)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(rest.get(6..6 + n)?).ok()?;
    Some((partition, id, rest.get(6 + n..)?))
}

/// Framed records of one partition, to be one message.
#[derive(Debug)]
struct Chunk {
    partition: u32,
    data: Vec<u8>,
    /// Ids of its events (the node's window), to forget if it is lost.
    ids: Vec<u64>,
    /// Framed length of each record.
    lens: Vec<u32>,
    records: usize,
    /// Spool position of its first record: offset, and the index within
    /// a spooled message (0 for a plain record).
    first: (u64, u32),
}

/// Groups framed records per partition, in order within each, cut into
/// chunks of at most `max` bytes (a larger record is a chunk of its own).
#[derive(Debug)]
struct Grouper {
    max: usize,
    open: BTreeMap<u32, Chunk>,
    done: Vec<Chunk>,
}

impl Grouper {
    fn new(max: usize) -> Self {
        Grouper {
            max,
            open: BTreeMap::new(),
            done: Vec::new(),
        }
    }

    fn push(&mut self, partition: u32, framed: &[u8], id: Option<u64>, first: (u64, u32)) {
        let new = || Chunk {
            partition,
            data: Vec::new(),
            ids: Vec::new(),
            lens: Vec::new(),
            records: 0,
            first,
        };
        let chunk = self.open.entry(partition).or_insert_with(new);
        if !chunk.data.is_empty() && chunk.data.len() + framed.len() > self.max {
            let full = std::mem::replace(chunk, new());
            self.done.push(full);
        }
        chunk.data.extend_from_slice(framed);
        chunk.ids.extend(id);
        chunk.lens.push(framed.len() as u32);
        chunk.records += 1;
    }

    fn finish(mut self) -> Vec<Chunk> {
        self.done.extend(self.open.into_values());
        self.done
    }
}

/// One message to publish.
#[derive(Debug, Clone)]
struct OutMsg {
    partition: u32,
    id: String,
    payload: Bytes,
}

/// Why a message was not acknowledged.
#[derive(Debug)]
enum Failure {
    /// It never reached the client: it cannot be stored.
    NotSent(String),
    /// It was sent; it may be stored.
    Unacked(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::NotSent(m) | Failure::Unacked(m) => m,
        }
    }
}

/// What [`JetStreamEvents::spool`] reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SpoolStatus {
    /// Appends go to the spool (NATS failed, and the spool is not drained).
    pub spooling: bool,
    /// Spool bytes not yet forwarded.
    pub pending_bytes: u64,
    /// Events forwarded from the spool to JetStream since the start.
    pub forwarded: u64,
    /// The last failure (cleared when spooling ends).
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Stats {
    published: Counter,
    failures: Counter,
    spooled: Counter,
    forwarded: Counter,
    spooling: Gauge,
    pending_bytes: Gauge,
    partitions: Gauge,
}

impl Stats {
    fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "switchyard_jetstream_published_messages",
            "Messages JetStream acknowledged (appends and the spool's forwarder)",
            self.published.clone(),
        );
        r.register(
            "switchyard_jetstream_publish_failures",
            "Messages JetStream did not acknowledge (an error or no answer within the publish timeout)",
            self.failures.clone(),
        );
        r.register(
            "switchyard_jetstream_partitions",
            "Partitions of the JetStream event stream",
            self.partitions.clone(),
        );
        r.register(
            "switchyard_spool_spooling",
            "1 while appends go to the local spool because JetStream failed",
            self.spooling.clone(),
        );
        r.register(
            "switchyard_spool_pending_bytes",
            "Bytes of the local spool not yet forwarded to JetStream",
            self.pending_bytes.clone(),
        );
        r.register(
            "switchyard_spool_spooled_events",
            "Events written to the local spool instead of JetStream",
            self.spooled.clone(),
        );
        r.register(
            "switchyard_spool_forwarded_events",
            "Events forwarded from the local spool to JetStream",
            self.forwarded.clone(),
        );
        r
    }
}

/// What `append` does at once: deduplicated, grouped.
#[derive(Debug)]
struct Prepared {
    chunks: Vec<Chunk>,
    written: usize,
    duplicates: Vec<usize>,
}

#[derive(Debug)]
struct Inner {
    config: JetStreamConfig,
    partitions: u32,
    instance: String,
    client: async_nats::Client,
    js: jetstream::Context,
    spool: EventLog,
    runtime: tokio::runtime::Handle,
    ids: Mutex<IdWindow>,
    next_message: AtomicU64,
    /// Records written, for [`Appended`]'s positions.
    written: AtomicU64,
    /// Largest message payload this node builds.
    max_message: usize,
    spooling: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// The forwarder's committed spool offset.
    forwarded_to: AtomicU64,
    wake: Notify,
    stats: Stats,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn next_message_id(&self) -> String {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.instance)
    }

    fn set_error(&self, message: String) {
        *lock(&self.last_error) = Some(message);
    }

    fn start_spooling(&self, why: &str) {
        if !self.spooling.swap(true, Ordering::AcqRel) {
            tracing::warn!(error = %why, "JetStream: publishing failed; spooling events locally");
        }
        self.stats.spooling.set(1);
    }

    fn stop_spooling(&self) {
        if self.spooling.swap(false, Ordering::AcqRel) {
            tracing::info!("JetStream: the spool is drained; publishing directly again");
        }
        self.stats.spooling.set(0);
        *lock(&self.last_error) = None;
    }

    fn pending_bytes(&self) -> u64 {
        self.spool
            .bounds()
            .1
            .saturating_sub(self.forwarded_to.load(Ordering::Acquire))
    }

    /// Checks, deduplicates and groups a batch.
    fn prepare(&self, batch: &EncodedBatch) -> Result<Prepared, StreamError> {
        let records = split_batch(batch)?;
        if let Some(r) = records.iter().find(|r| r.len() > self.max_message) {
            return Err(StreamError::InvalidBatch(format!(
                "a record of {} bytes exceeds the largest JetStream message this node sends ({} bytes)",
                r.len(),
                self.max_message
            )));
        }
        let mut grouper = Grouper::new(self.max_message);
        let mut duplicates = Vec::new();
        let mut written = 0;
        let mut ids = lock(&self.ids);
        for (i, (rec, meta)) in records.iter().zip(&batch.records).enumerate() {
            if let Some(id) = meta.id
                && !ids.insert(id)
            {
                duplicates.push(i);
                continue;
            }
            let p = partition_for(&rec[HEADER..], self.partitions);
            grouper.push(p, rec, meta.id, (0, 0));
            written += 1;
        }
        Ok(Prepared {
            chunks: grouper.finish(),
            written,
            duplicates,
        })
    }

    fn appended(&self, written: usize, duplicates: Vec<usize>) -> Appended {
        let first = self.written.fetch_add(written as u64, Ordering::AcqRel);
        Appended {
            first,
            next: first + written as u64,
            written,
            duplicates,
        }
    }

    /// Publishes `msgs` concurrently and waits for their acknowledgments,
    /// all within one publish timeout.
    async fn publish_all(&self, msgs: &[&OutMsg]) -> Vec<Result<(), Failure>> {
        if !self.connected() {
            self.stats.failures.inc_by(msgs.len() as u64);
            return msgs
                .iter()
                .map(|_| Err(Failure::NotSent("not connected to NATS".into())))
                .collect();
        }
        let deadline = tokio::time::Instant::now() + self.config.publish_timeout;
        let mut acks = Vec::with_capacity(msgs.len());
        for m in msgs {
            let publish = jetstream::message::PublishMessage::build()
                .payload(m.payload.clone())
                .message_id(&m.id);
            let subject = subject(&self.config.subject_prefix, m.partition);
            // Cut off before the client took it, a message is not sent.
            let sent =
                tokio::time::timeout_at(deadline, self.js.send_publish(subject, publish)).await;
            acks.push(match sent {
                Ok(Ok(ack)) => Ok(ack),
                Ok(Err(e)) => Err(Failure::NotSent(format!("publish failed: {e}"))),
                Err(_) => Err(Failure::NotSent(
                    "the NATS client took no message within the publish timeout".into(),
                )),
            });
        }
        let mut out = Vec::with_capacity(acks.len());
        for ack in acks {
            let result = match ack {
                Ok(ack) => {
                    match tokio::time::timeout_at(
                        deadline,
                        std::future::IntoFuture::into_future(ack),
                    )
                    .await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => {
                            Err(Failure::Unacked(format!("publish not acknowledged: {e}")))
                        }
                        Err(_) => Err(Failure::Unacked(format!(
                            "no acknowledgment within {:?}",
                            self.config.publish_timeout
                        ))),
                    }
                }
                Err(f) => Err(f),
            };
            let counter = match &result {
                Ok(()) => &self.stats.published,
                Err(_) => &self.stats.failures,
            };
            counter.inc();
            out.push(result);
        }
        out
    }

    /// Stores a prepared append: publishes it (unless spooling), then
    /// spools what JetStream did not acknowledge.
    async fn store(self: Arc<Self>, mut p: Prepared) -> Result<Appended, StreamError> {
        let payloads: Vec<Bytes> = p
            .chunks
            .iter_mut()
            .map(|c| Bytes::from(std::mem::take(&mut c.data)))
            .collect();
        let mut plain: Vec<(&Chunk, &Bytes)> = Vec::new();
        let mut sent: Vec<(&Chunk, &Bytes, String)> = Vec::new();
        let mut failure = None;
        if self.spooling.load(Ordering::Acquire) {
            plain.extend(p.chunks.iter().zip(&payloads));
        } else {
            let msgs: Vec<OutMsg> = p
                .chunks
                .iter()
                .zip(&payloads)
                .map(|(c, payload)| OutMsg {
                    partition: c.partition,
                    id: self.next_message_id(),
                    payload: payload.clone(),
                })
                .collect();
            let refs: Vec<&OutMsg> = msgs.iter().collect();
            let results = self.publish_all(&refs).await;
            for (((chunk, payload), msg), result) in
                p.chunks.iter().zip(&payloads).zip(msgs).zip(results)
            {
                match result {
                    Ok(()) => {}
                    Err(f) => {
                        failure.get_or_insert_with(|| f.message().to_string());
                        match f {
                            Failure::NotSent(_) => plain.push((chunk, payload)),
                            Failure::Unacked(_) => sent.push((chunk, payload, msg.id)),
                        }
                    }
                }
            }
        }
        if plain.is_empty() && sent.is_empty() {
            return Ok(self.appended(p.written, p.duplicates));
        }
        let mut batch = EncodedBatch::default();
        let mut events = 0;
        for (chunk, payload) in &plain {
            batch.data.extend_from_slice(payload);
            batch.records.extend(
                chunk
                    .lens
                    .iter()
                    .map(|&len| crate::record::RecordMeta { len, id: None }),
            );
            events += chunk.records;
        }
        for (chunk, payload, id) in &sent {
            let record = encode_message_record(chunk.partition, id, payload);
            if !batch.push_raw(&record, None) {
                return Err(self.lost(
                    &plain,
                    &sent,
                    StreamError::InvalidBatch("a message too large for the spool".into()),
                ));
            }
            events += chunk.records;
        }
        match self.spool.append(batch).await {
            Ok(_) => {
                self.stats.spooled.inc_by(events as u64);
                if let Some(why) = &failure {
                    self.set_error(why.clone());
                    self.start_spooling(why);
                }
                self.wake.notify_one();
                Ok(self.appended(p.written, p.duplicates))
            }
            Err(e) => Err(self.lost(&plain, &sent, e)),
        }
    }

    /// Chunks neither acknowledged nor spooled: their ids are forgotten,
    /// so that a retry is stored.
    fn lost(
        &self,
        plain: &[(&Chunk, &Bytes)],
        sent: &[(&Chunk, &Bytes, String)],
        e: StreamError,
    ) -> StreamError {
        let mut ids = lock(&self.ids);
        let chunks = plain.iter().map(|c| c.0).chain(sent.iter().map(|c| c.0));
        for c in chunks {
            ids.forget(&c.ids);
        }
        e
    }

    /// The messages of one forwarder step, the same for the same records.
    fn step_messages(&self, records: &[&StoredRecord]) -> (Vec<OutMsg>, usize) {
        let mut out = Vec::new();
        let mut grouper = Grouper::new(self.max_message);
        let mut events = 0;
        let mut framed = Vec::new();
        for r in records {
            if let Some((partition, id, payload)) = decode_message_record(&r.payload) {
                let (frames, bad) = split_frames(payload);
                if bad > 0 {
                    tracing::error!(
                        offset = r.offset,
                        bad,
                        "a spooled message has records that do not check"
                    );
                }
                events += frames.len();
                if partition < self.partitions {
                    out.push(OutMsg {
                        partition,
                        id: id.to_string(),
                        payload: Bytes::copy_from_slice(payload),
                    });
                } else {
                    // Spooled under another partition count: regrouped.
                    for (i, f) in frames.iter().enumerate() {
                        framed.clear();
                        push_framed(&mut framed, f);
                        let p = partition_for(f, self.partitions);
                        grouper.push(p, &framed, None, (r.offset, i as u32 + 1));
                    }
                }
                continue;
            }
            events += 1;
            framed.clear();
            push_framed(&mut framed, &r.payload);
            let p = partition_for(&r.payload, self.partitions);
            grouper.push(p, &framed, None, (r.offset, 0));
        }
        for c in grouper.finish() {
            let id = match c.first {
                (offset, 0) => format!("{}-spool-{offset}-{}", self.instance, c.partition),
                (offset, i) => format!("{}-spool-{offset}.{i}-{}", self.instance, c.partition),
            };
            out.push(OutMsg {
                partition: c.partition,
                id,
                payload: Bytes::from(c.data),
            });
        }
        (out, events)
    }

    /// Can JetStream be reached (a stream request answered)?
    async fn probe(&self) -> bool {
        if !self.connected() {
            return false;
        }
        match tokio::time::timeout(
            self.config.publish_timeout,
            self.js.get_stream(&self.config.stream),
        )
        .await
        {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                self.set_error(format!("stream {}: {e}", self.config.stream));
                false
            }
            Err(_) => false,
        }
    }
}

async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// 50% to 100% of `d`.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + (random_u64() % 1000) as f64 / 2000.0)
}

/// The forwarder: spool to JetStream (see the module doc).
async fn forward(inner: Arc<Inner>, mut stop: watch::Receiver<bool>, check_stream: bool) {
    let mut wait = BACKOFF_MIN;
    if check_stream {
        loop {
            let checked = if inner.connected() {
                open_stream(&inner.js, &inner.config, inner.partitions).await
            } else {
                Err(OpenError::Unreachable("not connected to NATS".into()))
            };
            match checked {
                Ok(p) => {
                    if p != inner.partitions {
                        let msg = format!(
                            "stream {} has {p} partitions, but this node started with the {} cached in its spool directory; restart it",
                            inner.config.stream, inner.partitions
                        );
                        tracing::error!(error = %msg, "JetStream");
                        inner.set_error(msg);
                    }
                    break;
                }
                Err(OpenError::Unreachable(e) | OpenError::Layout(e)) => inner.set_error(e),
            }
            if sleep_or_stop(&mut stop, jitter(wait)).await {
                return;
            }
            wait = (wait * 2).min(BACKOFF_MAX);
        }
    }
    let spool = &inner.spool;
    let mut from = match spool.committed(FORWARDER).await {
        Ok(Some(o)) => o,
        _ => spool.bounds().0,
    };
    // The note is a consumer of the spool too: kept at or past `from`, so
    // that it never holds back the spool's backlog bound.
    let mut noted = spool.committed(IN_FLIGHT).await.ok().flatten();
    let mut in_flight = noted.filter(|&t| t > from);
    loop {
        if *stop.borrow() {
            return;
        }
        let (first, end) = spool.bounds();
        if from < first {
            tracing::error!(
                lost_bytes = first - from,
                "the spool dropped events the forwarder had not sent (retention)"
            );
            from = first;
            in_flight = None;
        }
        if from > end {
            tracing::error!(
                offset = from,
                end,
                "the forwarder's offset is past the end of the spool; forwarding from the end"
            );
            from = end;
            in_flight = None;
        }
        inner.forwarded_to.store(from, Ordering::Release);
        inner
            .stats
            .pending_bytes
            .set(end.saturating_sub(from) as i64);
        if from >= end {
            if inner.spooling.load(Ordering::Acquire) {
                if inner.probe().await {
                    inner.stop_spooling();
                    wait = BACKOFF_MIN;
                } else {
                    if sleep_or_stop(&mut stop, jitter(wait)).await {
                        return;
                    }
                    wait = (wait * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_WAIT) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
        let limit = in_flight.map_or(READ_BYTES, |t| {
            usize::try_from(t - from).unwrap_or(usize::MAX)
        });
        let read = match spool.read(from, limit).await {
            Ok(r) => r,
            Err(e) => {
                inner.set_error(format!("reading the spool: {e}"));
                if sleep_or_stop(&mut stop, BACKOFF_MAX).await {
                    return;
                }
                continue;
            }
        };
        let to = in_flight.unwrap_or(read.next);
        if to <= from {
            // Nothing readable before the end (a record that does not
            // check): wait rather than spin, and say so.
            inner.set_error(format!(
                "the spool cannot be read past offset {from} (end {end})"
            ));
            if sleep_or_stop(&mut stop, BACKOFF_MAX).await {
                return;
            }
            continue;
        }
        let records: Vec<&StoredRecord> = read.records.iter().filter(|r| r.offset < to).collect();
        // Noted before publishing: a restart re-reads exactly this step.
        if in_flight.is_none() && !records.is_empty() {
            match spool.commit(IN_FLIGHT, to).await {
                Ok(()) => noted = Some(to),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot note the forwarder's step; after a crash it may send some events twice");
                }
            }
        }
        let (msgs, events) = inner.step_messages(&records);
        let mut acked = vec![false; msgs.len()];
        loop {
            let todo: Vec<(usize, &OutMsg)> = msgs
                .iter()
                .enumerate()
                .filter(|(i, _)| !acked[*i])
                .collect();
            if todo.is_empty() {
                break;
            }
            let refs: Vec<&OutMsg> = todo.iter().map(|(_, m)| *m).collect();
            let results = tokio::select! {
                r = inner.publish_all(&refs) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let mut failed = None;
            for ((i, _), r) in todo.iter().zip(results) {
                match r {
                    Ok(()) => acked[*i] = true,
                    Err(f) => {
                        failed.get_or_insert_with(|| f.message().to_string());
                    }
                }
            }
            if let Some(why) = failed {
                inner.set_error(format!("forwarding the spool: {why}"));
                if sleep_or_stop(&mut stop, jitter(wait)).await {
                    return;
                }
                wait = (wait * 2).min(BACKOFF_MAX);
            }
        }
        wait = BACKOFF_MIN;
        if let Err(e) = spool.commit(FORWARDER, to).await {
            // Sent but not committed: a restart sends the same messages
            // again and JetStream drops them by id.
            tracing::warn!(error = %e, "cannot commit the forwarder's spool offset");
        }
        if noted.is_some_and(|n| n < to) && spool.commit(IN_FLIGHT, to).await.is_ok() {
            noted = Some(to);
        }
        from = to;
        in_flight = None;
        inner.forwarded_to.store(from, Ordering::Release);
        inner.stats.forwarded.inc_by(events as u64);
        if from >= spool.bounds().1 && inner.spooling.load(Ordering::Acquire) && !msgs.is_empty() {
            inner.stop_spooling();
        }
    }
}

/// The [`EventStream`] on NATS JetStream; see the module doc.
pub struct JetStreamEvents {
    inner: Arc<Inner>,
    registry: Registry,
    stop: watch::Sender<bool>,
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl fmt::Debug for JetStreamEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamEvents")
            .field("url", &self.inner.config.url)
            .field("stream", &self.inner.config.stream)
            .field("partitions", &self.inner.partitions)
            .field("instance", &self.inner.instance)
            .field("spooling", &self.inner.spooling.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl JetStreamEvents {
    /// Connects, opens or creates the stream, opens the spool in
    /// `spool_dir` (its settings adjusted by [`spool_log_config`]; its log
    /// metrics are `metrics.log`) and starts the forwarder. Must run inside
    /// a Tokio runtime, which then runs the forwarder and the publishing.
    pub async fn connect(
        config: JetStreamConfig,
        spool_dir: &Path,
        spool: LogConfig,
        metrics: Arc<EventMetrics>,
    ) -> Result<Arc<JetStreamEvents>, StreamError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StreamError::Unavailable("JetStreamEvents::connect must run in a Tokio runtime".into())
        })?;
        if config.partitions == 0 {
            return Err(StreamError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "JetStreamConfig::partitions must be at least 1",
            )));
        }
        std::fs::create_dir_all(spool_dir)?;
        let instance = instance_id(spool_dir)?;
        let window = spool.dedup_ids;
        let log = EventLog::open(spool_dir, spool_log_config(spool), metrics.log.clone())?;
        if log.committed(FORWARDER).await?.is_none() {
            // From the first record on: the spool bounds its backlog
            // behind a committed consumer only.
            log.commit(FORWARDER, log.bounds().0).await?;
        }

        let mut client = None;
        let opened = match connect_client(&config, false).await {
            Ok(c) => {
                let js = js_context(&c, &config);
                client = Some(c);
                open_stream(&js, &config, config.partitions).await
            }
            Err(e) => Err(OpenError::Unreachable(e)),
        };
        let (partitions, deferred) = match opened {
            Ok(p) => {
                if let Err(e) = write_layout(spool_dir, &config, p) {
                    tracing::warn!(error = %e, "cannot cache the stream layout in the spool directory");
                }
                (p, false)
            }
            Err(OpenError::Layout(e)) => return Err(StreamError::Unavailable(e)),
            Err(OpenError::Unreachable(e)) => match read_layout(spool_dir, &config) {
                Some(p) => {
                    tracing::warn!(error = %e, partitions = p,
                        "JetStream cannot be reached; starting with the cached stream layout, spooling");
                    (p, true)
                }
                None => {
                    return Err(StreamError::Unavailable(format!(
                        "{e}; and {} holds no stream layout from an earlier start, so the partition count is unknown",
                        spool_dir.display()
                    )));
                }
            },
        };
        let client = match client {
            Some(c) => c,
            None => connect_client(&config, true)
                .await
                .map_err(StreamError::Unavailable)?,
        };
        let js = js_context(&client, &config);
        let server_max = match client.server_info().max_payload {
            0 => MAX_PAYLOAD,
            n => n,
        };
        let max_message = server_max.min(MAX_PAYLOAD).saturating_sub(ENVELOPE_ROOM);
        let (start, end) = log.bounds();
        let committed = log.committed(FORWARDER).await?.unwrap_or(start);
        let spooling = deferred || committed < end;
        let stats = Stats::default();
        stats.partitions.set(i64::from(partitions));
        stats.spooling.set(i64::from(spooling));
        let registry = stats.registry();
        let inner = Arc::new(Inner {
            config,
            partitions,
            instance,
            client,
            js,
            spool: log,
            runtime: runtime.clone(),
            ids: Mutex::new(IdWindow::new(window)),
            next_message: AtomicU64::new(random_u64() >> 1),
            written: AtomicU64::new(0),
            max_message,
            spooling: AtomicBool::new(spooling),
            last_error: Mutex::new(None),
            forwarded_to: AtomicU64::new(committed),
            wake: Notify::new(),
            stats,
        });
        let (stop, stop_rx) = watch::channel(false);
        let handle = runtime.spawn(forward(inner.clone(), stop_rx, deferred));
        Ok(Arc::new(JetStreamEvents {
            inner,
            registry,
            stop,
            forwarder: Mutex::new(Some(handle)),
        }))
    }

    pub fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    /// This node's id in message ids (kept in `spool_dir/instance`).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    pub fn spool(&self) -> SpoolStatus {
        SpoolStatus {
            spooling: self.inner.spooling.load(Ordering::Acquire),
            pending_bytes: self.inner.pending_bytes(),
            forwarded: self.inner.stats.forwarded.get(),
            last_error: lock(&self.inner.last_error).clone(),
        }
    }

    /// The metric families as OpenMetrics text (`# HELP`/`# TYPE`, no
    /// `# EOF`), to append to `/metrics`.
    pub fn encode_metrics(&self, out: &mut String) {
        let s = &self.inner.stats;
        s.spooling
            .set(i64::from(self.inner.spooling.load(Ordering::Acquire)));
        s.pending_bytes
            .set(i64::try_from(self.inner.pending_bytes()).unwrap_or(i64::MAX));
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }

    /// Stops the forwarder task. It ends at its next poll; the spool
    /// directory is free once it has and this handle is dropped (use
    /// [`Self::shutdown`] to wait for it).
    pub fn close(&self) {
        let _ = self.stop.send(true);
        if let Some(h) = lock(&self.forwarder).take() {
            h.abort();
        }
    }

    /// [`Self::close`], returning once the forwarder task has ended.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handle = lock(&self.forwarder).take();
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
    }
}

impl Drop for JetStreamEvents {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventStream for JetStreamEvents {
    fn append(&self, batch: EncodedBatch) -> BoxFuture<'_, Result<Appended, StreamError>> {
        let rx = match self.inner.prepare(&batch) {
            Err(e) => return Box::pin(async move { Err(e) }),
            Ok(p) if p.chunks.is_empty() => {
                let a = self.inner.appended(p.written, p.duplicates);
                return Box::pin(async move { Ok(a) });
            }
            Ok(p) => {
                let (tx, rx) = oneshot::channel();
                let inner = self.inner.clone();
                self.inner.runtime.spawn(async move {
                    let _ = tx.send(inner.store(p).await);
                });
                rx
            }
        };
        Box::pin(async move {
            rx.await.map_err(|_| {
                StreamError::Unavailable("the JetStream append task stopped (shutdown)".into())
            })?
        })
    }

    fn read(&self, _from: u64, _max_bytes: usize) -> BoxFuture<'_, Result<ReadBatch, StreamError>> {
        Box::pin(async { Err(StreamError::Unavailable(NOT_READABLE.into())) })
    }

    fn commit(&self, _consumer: &str, _next: u64) -> BoxFuture<'_, Result<(), StreamError>> {
        Box::pin(async { Err(StreamError::Unavailable(NOT_READABLE.into())) })
    }

    fn committed(&self, _consumer: &str) -> BoxFuture<'_, Result<Option<u64>, StreamError>> {
        Box::pin(async { Err(StreamError::Unavailable(NOT_READABLE.into())) })
    }

    fn bounds(&self) -> (u64, u64) {
        (0, 0)
    }

    /// `Err` only while the spool cannot write; spooling is not unhealthy
    /// (see [`JetStreamEvents::spool`]).
    fn health(&self) -> Result<(), String> {
        self.inner
            .spool
            .health()
            .map_err(|e| format!("JetStream spool: {e}"))
    }

    fn readable(&self) -> bool {
        false
    }

    fn spool(&self) -> Option<SpoolStatus> {
        Some(JetStreamEvents::spool(self))
    }

    fn encode_metrics(&self, out: &mut String) {
        JetStreamEvents::encode_metrics(self, out);
    }
}

/// One message of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMessage {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its record payloads (frames checked, headers stripped).
    pub records: Vec<Vec<u8>>,
}

/// Reads one partition, in stream order, from a durable pull consumer
/// `{stream}_p{partition}` that this opens afresh (see [`Self::open`]). It
/// has its own NATS connection.
pub struct PartitionConsumer {
    partition: u32,
    consumer: consumer::PullConsumer,
    /// The stream sequence after the last delivered message.
    next_sequence: u64,
    /// The consumer sequence of the last delivery.
    delivered: u64,
    bad_records: u64,
}

impl fmt::Debug for PartitionConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionConsumer")
            .field("partition", &self.partition)
            .field("next_sequence", &self.next_sequence)
            .field("bad_records", &self.bad_records)
            .finish_non_exhaustive()
    }
}

impl PartitionConsumer {
    /// Deletes and re-creates the durable pull consumer `{stream}_p{partition}`
    /// (filter subject `prefix.{partition}`, delivery from `start_sequence`,
    /// or from the first message when it is 0 or 1; no acknowledgments, so
    /// messages come in sequence order with no redeliveries). Re-creating
    /// makes the start point exact and cuts off any previous holder of the
    /// partition (its fetches fail).
    pub async fn open(
        config: &JetStreamConfig,
        partition: u32,
        holder: u64,
        start_sequence: u64,
    ) -> Result<PartitionConsumer, StreamError> {
        use async_nats::jetstream::ErrorCode;
        use async_nats::jetstream::stream::ConsumerErrorKind;
        let client = connect_client(config, false)
            .await
            .map_err(StreamError::Unavailable)?;
        let js = js_context(&client, config);
        let name = &config.stream;
        let stream = js
            .get_stream(name)
            .await
            .map_err(|e| StreamError::Unavailable(format!("cannot open stream {name}: {e}")))?;
        let partitions = partitions_from_subjects(
            &config.subject_prefix,
            &stream.cached_info().config.subjects,
        )
        .map_err(|e| StreamError::Unavailable(format!("stream {name}: {e}")))?;
        if partition >= partitions {
            return Err(StreamError::Unavailable(format!(
                "stream {name} has {partitions} partitions; there is no partition {partition}"
            )));
        }
        let durable = consumer_name(name, partition, holder);
        match js.delete_consumer_from_stream(&durable, name).await {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ConsumerErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
                {}
            Err(e) => {
                return Err(StreamError::Unavailable(format!(
                    "cannot delete consumer {durable}: {e}"
                )));
            }
        }
        // The previous holder's consumer: cut it off (best effort; an
        // idle one also goes by itself after `inactive_threshold`).
        if let Some(previous) = holder.checked_sub(1) {
            let _ = js
                .delete_consumer_from_stream(consumer_name(name, partition, previous), name)
                .await;
        }
        let deliver_policy = if start_sequence <= 1 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence }
        };
        let consumer: consumer::PullConsumer = js
            .create_consumer_on_stream(
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    deliver_policy,
                    ack_policy: consumer::AckPolicy::None,
                    replay_policy: consumer::ReplayPolicy::Instant,
                    filter_subject: subject(&config.subject_prefix, partition),
                    // A holder that died leaves its consumer behind; the
                    // server removes it after this long unused.
                    inactive_threshold: Duration::from_secs(600),
                    ..Default::default()
                },
                name,
            )
            .await
            .map_err(|e| {
                StreamError::Unavailable(format!("cannot create consumer {durable}: {e}"))
            })?;
        Ok(PartitionConsumer {
            partition,
            consumer,
            next_sequence: start_sequence.max(1),
            delivered: 0,
            bad_records: 0,
        })
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Where to reopen to resume after the last delivered message (after
    /// an error, for instance).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Frames that did not check (their records were skipped), so far.
    pub fn bad_records(&self) -> u64 {
        self.bad_records
    }

    /// Up to `max_messages` messages, waiting at most `wait` for the first;
    /// empty on timeout. An error (a lost connection, a delivery lost on
    /// the way, the consumer deleted by another holder) means: reopen from
    /// [`Self::next_sequence`].
    pub async fn fetch(
        &mut self,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<PartitionMessage>, StreamError> {
        let mut out = Vec::new();
        if max_messages == 0 {
            return Ok(out);
        }
        self.pull(max_messages, None, &mut out).await?;
        if out.is_empty() && !wait.is_zero() {
            self.pull(1, Some(wait), &mut out).await?;
            if !out.is_empty() && max_messages > 1 {
                self.pull(max_messages - 1, None, &mut out).await?;
            }
        }
        Ok(out)
    }

    /// One pull request, read to its end (with no acknowledgments, a
    /// message the server sent is delivered: a request is never left
    /// half read). `wait`: `None` asks for what is there now.
    async fn pull(
        &mut self,
        n: usize,
        wait: Option<Duration>,
        out: &mut Vec<PartitionMessage>,
    ) -> Result<(), StreamError> {
        let err = |what: &str, e: &dyn fmt::Display| {
            StreamError::Unavailable(format!("partition {}: {what}: {e}", self.partition))
        };
        let mut batch = match wait {
            None => self.consumer.fetch().max_messages(n).messages().await,
            Some(w) => {
                self.consumer
                    .batch()
                    .max_messages(n)
                    .expires(w)
                    .messages()
                    .await
            }
        }
        .map_err(|e| err("pull request failed", &e))?;
        let deadline =
            tokio::time::Instant::now() + wait.unwrap_or_default() + Duration::from_secs(10);
        loop {
            let next = tokio::time::timeout_at(deadline, batch.next())
                .await
                .map_err(|_| err("pull request", &"no end from the server"))?;
            let Some(message) = next else {
                return Ok(());
            };
            let message = message.map_err(|e| err("pull request failed", &e))?;
            let info = message
                .info()
                .map_err(|e| err("a message without JetStream metadata", &e))?;
            let (sequence, consumer_sequence) = (info.stream_sequence, info.consumer_sequence);
            if consumer_sequence != self.delivered + 1 {
                return Err(StreamError::Unavailable(format!(
                    "partition {}: deliveries {} to {} were lost on the way; reopen from sequence {}",
                    self.partition,
                    self.delivered + 1,
                    consumer_sequence.saturating_sub(1),
                    self.next_sequence
                )));
            }
            let (records, bad) = split_frames(&message.payload);
            if bad > 0 {
                tracing::error!(
                    partition = self.partition,
                    sequence,
                    bad,
                    "JetStream message with records that do not check; skipped"
                );
                self.bad_records += bad;
            }
            out.push(PartitionMessage {
                sequence,
                records: records.into_iter().map(<[u8]>::to_vec).collect(),
            });
            self.delivered = consumer_sequence;
            self.next_sequence = sequence + 1;
        }
    }

    /// Messages of the partition after the last delivered one (the
    /// consumer's `num_pending`).
    pub async fn pending(&mut self) -> Result<u64, StreamError> {
        let info = self.consumer.info().await.map_err(|e| {
            StreamError::Unavailable(format!("partition {}: consumer info: {e}", self.partition))
        })?;
        Ok(info.num_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(unit: &str, id: &str) -> EncodedBatch {
        use crate::schema::{EventRef, KindRef};
        let mut b = EncodedBatch::default();
        b.push_event(
            "p",
            "e",
            &EventRef {
                id: Some(id.into()),
                unit: unit.into(),
                time_ms: 1_767_225_600_000,
                kind: KindRef::Track {
                    name: "n".into(),
                    value: Some(1.0),
                    attributes: None,
                },
            },
        );
        b
    }

    #[test]
    fn the_partition_of_a_unit_is_its_murmur3_modulo_the_count() {
        // MurmurHash3 x86_32 of "hello", seed 0, is 0x248bfa47.
        assert_eq!(
            switchyard_core::bucket::murmur3_x86_32(b"hello", 0),
            0x248b_fa47
        );
        assert_eq!(partition_of("hello", 4), 0x248b_fa47 % 4);
        assert_eq!(partition_of("hello", 7), 0x248b_fa47 % 7);
        assert_eq!(partition_of("anything", 1), 0);
        assert_eq!(partition_of("anything", 0), 0, "no division by zero");
    }

    #[test]
    fn the_unit_is_read_from_an_event_record_without_decoding_it() {
        let b = event("user-17", "id-1");
        let payload = &b.data[HEADER..];
        assert_eq!(payload_unit(payload), Some("user-17"));
        assert_eq!(
            crate::record::decode_event(payload).map(|e| e.unit),
            Some("user-17")
        );
        assert_eq!(payload_unit(b"\x02short"), None);
    }

    #[test]
    fn the_partition_count_comes_from_the_subjects() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            partitions_from_subjects("a.b", &s(&["a.b.1", "a.b.0"])),
            Ok(2)
        );
        assert!(partitions_from_subjects("a.b", &s(&["a.b.0", "a.b.2"])).is_err());
        assert!(partitions_from_subjects("a.b", &s(&["a.b.0", "a.b.01"])).is_err());
        assert!(partitions_from_subjects("a.b", &s(&["a.b.>"])).is_err());
        assert!(partitions_from_subjects("a.b", &s(&["a.bc.0"])).is_err());
        assert!(partitions_from_subjects("a.b", &[]).is_err());
    }

    #[test]
    fn frames_that_do_not_check_are_counted_and_skipped() {
        let mut b = event("u1", "a");
        for (u, id) in [("u2", "b"), ("u3", "c")] {
            let e = event(u, id);
            b.data.extend_from_slice(&e.data);
        }
        let (ok, bad) = split_frames(&b.data);
        assert_eq!((ok.len(), bad), (3, 0));
        // Corrupt the second record's payload: its CRC fails, its length
        // still frames it, the third is kept.
        let second = b.data.len() / 3 + HEADER + 3;
        b.data[second] ^= 0xff;
        let (ok, bad) = split_frames(&b.data);
        assert_eq!(bad, 1);
        let units: Vec<_> = ok.iter().filter_map(|p| payload_unit(p)).collect();
        assert_eq!(units, ["u1", "u3"]);
        // A torn tail: what cannot be framed counts once.
        let (ok, bad) = split_frames(&b.data[..b.data.len() - 2]);
        assert_eq!((ok.len(), bad), (1, 2));
        assert_eq!(split_frames(&[]), (vec![], 0));
    }

    #[test]
    fn a_spooled_message_keeps_its_partition_id_and_bytes() {
        let b = event("u", "x");
        let r = encode_message_record(3, "abc-42", &b.data);
        assert_eq!(decode_message_record(&r), Some((3, "abc-42", &b.data[..])));
        assert_eq!(
            decode_message_record(&b.data[HEADER..]),
            None,
            "an event is not one"
        );
    }

    #[test]
    fn the_grouper_keeps_order_per_partition_and_cuts_at_the_size() {
        let mut g = Grouper::new(20);
        g.push(1, &[1; 8], Some(1), (0, 0));
        g.push(0, &[2; 8], Some(2), (8, 0));
        g.push(1, &[3; 8], None, (16, 0));
        g.push(1, &[4; 8], Some(4), (24, 0));
        g.push(1, &[5; 30], None, (32, 0));
        let chunks = g.finish();
        let view: Vec<_> = chunks
            .iter()
            .map(|c| {
                (
                    c.partition,
                    c.records,
                    c.first.0,
                    c.ids.clone(),
                    c.data.len(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (1, 2, 0, vec![1], 16),
                (1, 1, 24, vec![4], 8),
                (0, 1, 8, vec![2], 8),
                (1, 1, 32, vec![], 30),
            ]
        );
    }

    #[test]
    fn the_spool_never_deletes_what_its_backlog_bound_admits() {
        let c = spool_log_config(LogConfig::default());
        let margin =
            2 * c.segment_bytes + c.max_pending_bytes as u64 + 2 * c.max_group_bytes as u64;
        assert_eq!(c.max_consumer_lag, Some(DEFAULT_SPOOL_BACKLOG));
        assert_eq!(c.retention_bytes, Some(DEFAULT_SPOOL_BACKLOG + margin));
        assert_eq!(c.retention_age, None);
        assert_eq!(c.dedup_ids, 1);
        // A retention too small for the bound lowers the bound.
        let c = spool_log_config(LogConfig {
            retention_bytes: Some(margin + 1000),
            max_consumer_lag: Some(1 << 40),
            retention_age: Some(Duration::from_secs(60)),
            ..LogConfig::default()
        });
        assert_eq!(c.max_consumer_lag, Some(1000));
        assert_eq!(c.retention_bytes, Some(margin + 1000));
        assert_eq!(c.retention_age, None);
        // One smaller than the margin is raised.
        let c = spool_log_config(LogConfig {
            retention_bytes: Some(10),
            max_consumer_lag: Some(5000),
            ..LogConfig::default()
        });
        assert_eq!(c.max_consumer_lag, Some(5000));
        assert_eq!(c.retention_bytes, Some(5000 + margin));
    }

    #[test]
    fn the_stream_and_consumer_configs_hold_nothing_a_2_9_server_lacks() {
        let config = JetStreamConfig::default();
        let json = serde_json::to_value(stream_config(&config, 4)).unwrap();
        let keys: BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        // Fields of StreamConfig in nats-server 2.9.
        let known: BTreeSet<&str> = [
            "name",
            "description",
            "subjects",
            "retention",
            "max_consumers",
            "max_msgs",
            "max_bytes",
            "max_age",
            "max_msgs_per_subject",
            "max_msg_size",
            "discard",
            "storage",
            "num_replicas",
            "no_ack",
            "template_owner",
            "duplicate_window",
            "placement",
            "mirror",
            "sources",
            "sealed",
            "deny_delete",
            "deny_purge",
            "allow_rollup_hdrs",
            "republish",
            "allow_direct",
            "mirror_direct",
            "discard_new_per_subject",
        ]
        .into_iter()
        .collect();
        let extra: Vec<_> = keys.difference(&known).collect();
        assert!(
            extra.is_empty(),
            "fields a 2.9 server does not know: {extra:?}"
        );
        assert_eq!(json["subjects"][3], "switchyard.events.3");
        assert_eq!(json["duplicate_window"], 600_000_000_000u64);
        assert_eq!(json["storage"], "file");
        assert_eq!(json["retention"], "limits");

        use async_nats::jetstream::consumer::IntoConsumerConfig;
        let c = consumer::pull::Config {
            durable_name: Some("S_p1".into()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: 7 },
            ack_policy: consumer::AckPolicy::None,
            filter_subject: "switchyard.events.1".into(),
            ..Default::default()
        }
        .into_consumer_config();
        let json = serde_json::to_value(c).unwrap();
        let keys: BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "filter_subjects",
            "metadata",
            "priority_groups",
            "priority_policy",
            "pause_until",
        ] {
            assert!(!keys.contains(k), "{k} is a 2.10+ consumer field");
        }
        assert_eq!(json["opt_start_seq"], 7);
        assert_eq!(json["ack_policy"], "none");
    }
}
