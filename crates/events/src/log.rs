//! The embedded durable log: segment files, one writer thread, group commit.
//!
//! Requests ([`EventLog::append`]) go through a channel to the writer
//! thread. It takes every request waiting (up to `max_group_bytes`), drops
//! records whose id it has seen, writes the rest with one `write`, calls
//! `sync_data` once, and only then answers each request. While it syncs,
//! new requests queue: one fsync covers all of them.
//!
//! # When a write fails (a full disk)
//! A failed write or fsync refuses the whole group (503) and cuts the
//! active segment back to its last durable length, then fsyncs it: no
//! record of a refused request stays in the file, where recovery would
//! otherwise find it at the next start (events of a batch answered 503),
//! and the ids of the refused records are forgotten, so that a retry is
//! stored rather than taken for a duplicate. The log is then *unwritable*:
//! [`EventStream::health`] reports it (the server's `/readyz` answers 503),
//! appends are refused at once for a second, then tried again; while no
//! request comes, the writer probes the directory (a small file written,
//! synced and removed) every [`PROBE_EVERY`]. The first write or probe that
//! succeeds makes the log writable again, with no restart. Only when the
//! segment cannot be cut back (its state on disk is then unknown) does the
//! log stop for good and answer 503 until restarted; recovery then keeps
//! what is really on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::dedup::IdWindow;
use crate::metrics::LogMetrics;
use crate::record::{EncodedBatch, payload_id_hash};
use crate::segment::{Segment, list_segments, scan_segment, segment_path, sync_dir};
use crate::stream::{
    Appended, BoxFuture, ConsumerOffsets, EventStream, ReadBatch, StoredRecord, StreamError,
    split_batch,
};

/// Settings of an [`EventLog`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is closed and a new one begun past this size.
    pub segment_bytes: u64,
    /// Oldest closed segments are deleted while the log is larger.
    pub retention_bytes: Option<u64>,
    /// Closed segments last written longer ago are deleted.
    pub retention_age: Option<Duration>,
    /// Bytes accepted but not yet durable; past this, appends are refused
    /// with [`StreamError::Overloaded`].
    pub max_pending_bytes: usize,
    /// Most bytes written by one group commit.
    pub max_group_bytes: usize,
    /// Ids remembered for deduplication (about 20 bytes each).
    pub dedup_ids: usize,
    /// When set, appends are refused while the slowest committed consumer is
    /// more than this many bytes behind.
    pub max_consumer_lag: Option<u64>,
    /// A simulated size limit of the filesystem, for tests of a full disk:
    /// segment and probe writes past it fail as `ENOSPC` would.
    pub space: Option<Arc<SpaceLimit>>,
}

/// Free space as the log's writes see it, for tests: a write larger than
/// what is left writes what fits and fails with `StorageFull`, like a
/// full filesystem; cutting a file back gives the bytes back.
#[derive(Debug)]
pub struct SpaceLimit {
    free: AtomicU64,
}

impl SpaceLimit {
    pub fn new(free: u64) -> Arc<Self> {
        Arc::new(SpaceLimit {
            free: AtomicU64::new(free),
        })
    }

    pub fn set_free(&self, bytes: u64) {
        self.free.store(bytes, Ordering::Release);
    }

    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Acquire)
    }

    /// Takes up to `n` bytes; returns how many were granted.
    fn take(&self, n: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                granted = free.min(n);
                Some(free - granted)
            });
        granted
    }

    fn give_back(&self, n: u64) {
        self.free.fetch_add(n, Ordering::AcqRel);
    }
}

/// `file.write_all(buf)` under an optional [`SpaceLimit`].
fn write_limited(file: &mut File, buf: &[u8], space: Option<&SpaceLimit>) -> io::Result<()> {
    let Some(space) = space else {
        return file.write_all(buf);
    };
    let granted = space.take(buf.len() as u64) as usize;
    file.write_all(&buf[..granted])?;
    if granted < buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            "no space left on device (simulated)",
        ));
    }
    Ok(())
}

/// How often an unwritable log probes whether it can write again.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long appends are refused outright after a failed write.
const REFUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Bytes the probe writes and syncs.
const PROBE_BYTES: usize = 64 * 1024;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 128 << 20,
            retention_bytes: None,
            retention_age: None,
            max_pending_bytes: 64 << 20,
            max_group_bytes: 16 << 20,
            dedup_ids: 4_000_000,
            max_consumer_lag: None,
            space: None,
        }
    }
}

const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    config: LogConfig,
    segments: RwLock<Vec<Segment>>,
    durable_end: AtomicU64,
    start: AtomicU64,
    pending: AtomicUsize,
    /// Stopped for good: the state on disk is unknown until a restart.
    failed: AtomicBool,
    failure: Mutex<String>,
    /// The last write failed; since when. Cleared by a successful write or
    /// probe.
    unwritable: Mutex<Option<(String, Instant)>>,
    consumers: Mutex<ConsumerOffsets>,
    metrics: LogMetrics,
}

struct Request {
    batch: EncodedBatch,
    reply: tokio::sync::oneshot::Sender<Result<Appended, StreamError>>,
}

/// The embedded [`EventStream`]. Dropping it stops the writer thread after
/// it has answered every request sent.
#[derive(Debug)]
pub struct EventLog {
    /// Held for the log's lifetime: an exclusive lock on `dir/LOCK`, so a
    /// second process opening the same directory fails instead of
    /// interleaving its writes with ours.
    _lock: File,
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EventLog {
    /// Opens (creating if needed) the log in `dir`, recovering it: every
    /// complete record is kept, a torn or corrupt tail of the last segment
    /// is truncated, and the id window is rebuilt from the newest records.
    pub fn open(dir: &Path, config: LogConfig, metrics: LogMetrics) -> io::Result<EventLog> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        if let Err(e) = lock.try_lock() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the event log in {} is in use by another process ({e})",
                    dir.display()
                ),
            ));
        }
        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            File::create(segment_path(dir, 0))?.sync_all()?;
            sync_dir(dir)?;
            segments = list_segments(dir)?;
        }
        let Some(last) = segments.last().cloned() else {
            return Err(io::Error::other("no segment after creating one"));
        };
        let end = scan_segment(&last, 0, None, |_, _| ControlFlow::Continue(()))?;
        let file = OpenOptions::new().append(true).open(&last.path)?;
        if end.bad_tail {
            let had = file.metadata()?.len();
            tracing::warn!(
                segment = %last.path.display(),
                kept = end.pos,
                dropped = had - end.pos,
                "event log: truncating a torn tail"
            );
            file.set_len(end.pos)?;
            file.sync_all()?;
        }
        let ids = rebuild_ids(&segments, config.dedup_ids)?;
        let consumers = read_consumers(dir);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            start: AtomicU64::new(segments[0].base),
            durable_end: AtomicU64::new(last.base + end.pos),
            segments: RwLock::new(segments),
            pending: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(String::new()),
            unwritable: Mutex::new(None),
            consumers: Mutex::new(consumers),
            config,
            metrics,
        });
        let mut writer = Writer {
            shared: shared.clone(),
            file,
            base: last.base,
            size: end.pos,
            ids,
            new_ids: Vec::new(),
            buf: Vec::new(),
            last_retention: Instant::now(),
        };
        writer.enforce_retention();
        shared.update_lag();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("event-log-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(EventLog {
            _lock: lock,
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Sends `batch` to the writer; the receiver resolves once it is durable.
    fn submit(
        &self,
        batch: EncodedBatch,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Appended, StreamError>>, StreamError> {
        let s = &self.shared;
        if s.failed.load(Ordering::Acquire) {
            return Err(StreamError::Unavailable(lock(&s.failure).clone()));
        }
        if let Some((why, since)) = lock(&s.unwritable).as_ref()
            && since.elapsed() < REFUSE_AFTER_FAILURE
        {
            return Err(StreamError::Unavailable(why.clone()));
        }
        split_batch(&batch)?;
        if let Some(max) = s.config.max_consumer_lag
            && s.metrics.consumer_lag.get() as u64 > max
        {
            return Err(StreamError::Overloaded {
                retry_after: RETRY_AFTER,
            });
        }
        let bytes = batch.data.len();
        let before = s.pending.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > s.config.max_pending_bytes {
            s.pending.fetch_sub(bytes, Ordering::AcqRel);
            return Err(StreamError::Overloaded {
                retry_after: RETRY_AFTER,
            });
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = lock(&self.tx)
            .as_ref()
            .map(|tx| tx.send(Request { batch, reply }).is_ok());
        if sent != Some(true) {
            s.pending.fetch_sub(bytes, Ordering::AcqRel);
            return Err(StreamError::Unavailable("the event log is closed".into()));
        }
        Ok(rx)
    }

    /// [`EventStream::append`] for threads outside an async runtime.
    pub fn append_blocking(&self, batch: EncodedBatch) -> Result<Appended, StreamError> {
        let rx = self.submit(batch)?;
        rx.blocking_recv()
            .map_err(|_| StreamError::Unavailable("the event log writer stopped".into()))?
    }

    /// Stops the writer after the requests already sent; appends fail after.
    pub fn close(&self) {
        lock(&self.tx).take();
        if let Some(h) = lock(&self.writer).take() {
            let _ = h.join();
        }
    }

    /// Bytes held by the log's segments.
    pub fn size_bytes(&self) -> u64 {
        self.shared.metrics.bytes.get() as u64
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn fail(&self, what: &str, e: &io::Error) {
        let msg = format!("{what}: {e}");
        tracing::error!(error = %msg, "event log failed; refusing appends until restart");
        *lock(&self.failure) = msg;
        self.failed.store(true, Ordering::Release);
    }

    /// A write failed but the segment is back to its durable state.
    fn set_unwritable(&self, what: &str, e: &io::Error) -> String {
        let msg = format!("{what}: {e}");
        let mut u = lock(&self.unwritable);
        if u.is_none() {
            tracing::error!(dir = %self.dir.display(), error = %msg,
                "event log cannot write; refusing appends until a write succeeds");
        }
        *u = Some((msg.clone(), Instant::now()));
        msg
    }

    fn set_writable(&self) {
        if lock(&self.unwritable).take().is_some() {
            tracing::info!(dir = %self.dir.display(), "event log writes again");
        }
    }

    fn health(&self) -> Result<(), String> {
        if self.failed.load(Ordering::Acquire) {
            return Err(lock(&self.failure).clone());
        }
        match lock(&self.unwritable).as_ref() {
            Some((why, _)) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn update_lag(&self) {
        let end = self.durable_end.load(Ordering::Acquire);
        let slowest = lock(&self.consumers).values().copied().min();
        let lag = slowest.map_or(0, |o| end.saturating_sub(o));
        self.metrics.consumer_lag.set(lag as i64);
    }
}

/// The newest `capacity` ids of the log, oldest first into the window.
fn rebuild_ids(segments: &[Segment], capacity: usize) -> io::Result<IdWindow> {
    let mut chunks: Vec<Vec<u64>> = Vec::new();
    let mut count = 0;
    for seg in segments.iter().rev() {
        let mut ids = Vec::new();
        scan_segment(seg, 0, None, |_, p| {
            if let Some(id) = payload_id_hash(p) {
                ids.push(id);
            }
            ControlFlow::Continue(())
        })?;
        count += ids.len();
        chunks.push(ids);
        if count >= capacity {
            break;
        }
    }
    let mut window = IdWindow::new(capacity);
    for ids in chunks.iter().rev() {
        for id in ids {
            window.insert(*id);
        }
    }
    Ok(window)
}

fn read_consumers(dir: &Path) -> ConsumerOffsets {
    std::fs::read(dir.join("consumers.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_consumers(dir: &Path, offsets: &ConsumerOffsets) -> io::Result<()> {
    let tmp = dir.join("consumers.json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(offsets).map_err(io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("consumers.json"))?;
    sync_dir(dir)
}

struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Offset of the active segment's first byte.
    base: u64,
    /// Bytes in the active segment.
    size: u64,
    ids: IdWindow,
    /// Ids first seen in the group being written (undone if it fails).
    new_ids: Vec<u64>,
    buf: Vec<u8>,
    last_retention: Instant,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        let mut group = Vec::new();
        loop {
            let unwritable = lock(&self.shared.unwritable).is_some();
            let wait = if unwritable {
                PROBE_EVERY
            } else {
                Duration::from_secs(1)
            };
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut bytes = first.batch.data.len();
                    group.push(first);
                    while bytes < self.shared.config.max_group_bytes {
                        let Ok(next) = rx.try_recv() else { break };
                        bytes += next.batch.data.len();
                        group.push(next);
                    }
                    self.commit(&mut group);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if unwritable && !self.shared.failed.load(Ordering::Acquire) {
                        self.probe();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.last_retention.elapsed() > Duration::from_secs(10) {
                self.enforce_retention();
            }
        }
    }

    fn commit(&mut self, group: &mut Vec<Request>) {
        let shared = self.shared.clone();
        let pending: usize = group.iter().map(|r| r.batch.data.len()).sum();
        let result = if shared.failed.load(Ordering::Acquire) {
            Err(lock(&shared.failure).clone())
        } else {
            self.write_group(group)
        };
        shared.pending.fetch_sub(pending, Ordering::AcqRel);
        match result {
            Ok(results) => {
                for (req, res) in group.drain(..).zip(results) {
                    let _ = req.reply.send(Ok(res));
                }
            }
            Err(msg) => {
                for req in group.drain(..) {
                    let _ = req.reply.send(Err(StreamError::Unavailable(msg.clone())));
                }
            }
        }
    }

    fn write_group(&mut self, group: &[Request]) -> Result<Vec<Appended>, String> {
        let shared = self.shared.clone();
        let total: u64 = group.iter().map(|r| r.batch.data.len() as u64).sum();
        if self.size > 0
            && self.size + total > shared.config.segment_bytes
            && let Err(e) = self.roll()
        {
            // Nothing was written; the active segment is unchanged.
            return Err(shared.set_unwritable("cannot start a new segment", &e));
        }
        self.buf.clear();
        self.new_ids.clear();
        let mut pos = self.base + self.size;
        let mut results = Vec::with_capacity(group.len());
        for req in group {
            let first = pos;
            let mut duplicates = Vec::new();
            let mut at = 0usize;
            for (i, m) in req.batch.records.iter().enumerate() {
                let rec = &req.batch.data[at..at + m.len as usize];
                at += m.len as usize;
                if let Some(id) = m.id {
                    if !self.ids.insert(id) {
                        duplicates.push(i);
                        continue;
                    }
                    self.new_ids.push(id);
                }
                self.buf.extend_from_slice(rec);
                pos += u64::from(m.len);
            }
            results.push(Appended {
                first,
                next: pos,
                written: req.batch.records.len() - duplicates.len(),
                duplicates,
            });
        }
        if !self.buf.is_empty() {
            let t = Instant::now();
            let space = shared.config.space.as_deref();
            let written = write_limited(&mut self.file, &self.buf, space)
                .map_err(|e| ("write failed", e))
                .and_then(|()| self.file.sync_data().map_err(|e| ("fsync failed", e)));
            if let Err((what, e)) = written {
                return Err(self.undo_failed_write(what, &e));
            }
            shared.metrics.fsync.observe(t.elapsed().as_secs_f64());
            self.size += self.buf.len() as u64;
            shared.metrics.bytes.inc_by(self.buf.len() as i64);
            shared.durable_end.store(pos, Ordering::Release);
            shared.update_lag();
            shared.set_writable();
        }
        if self.buf.capacity() > 4 * shared.config.max_group_bytes {
            self.buf = Vec::new();
        }
        Ok(results)
    }

    /// After a failed write or fsync: cuts the active segment back to its
    /// durable length and syncs it, and forgets the group's ids. If that
    /// fails too, the log stops for good.
    fn undo_failed_write(&mut self, what: &str, e: &io::Error) -> String {
        let shared = self.shared.clone();
        self.ids.undo(&self.new_ids);
        let len = self.file.metadata().map(|m| m.len());
        let cut = self
            .file
            .set_len(self.size)
            .and_then(|()| self.file.sync_all());
        match cut {
            Ok(()) => {
                if let (Some(space), Ok(len)) = (&shared.config.space, len) {
                    space.give_back(len.saturating_sub(self.size));
                }
                shared.set_unwritable(what, e)
            }
            Err(cut_err) => {
                shared.fail(
                    &format!("{what}: {e}; and cutting the segment back failed"),
                    &cut_err,
                );
                lock(&shared.failure).clone()
            }
        }
    }

    /// Writes, syncs and removes a small file: can the log write again?
    fn probe(&mut self) {
        let path = self.shared.dir.join("PROBE");
        let space = self.shared.config.space.clone();
        let result = File::create(&path).and_then(|mut f| {
            let r = write_limited(&mut f, &[0u8; PROBE_BYTES], space.as_deref())
                .and_then(|()| f.sync_data());
            if let Some(space) = &space {
                space.give_back(f.metadata().map_or(0, |m| m.len()));
            }
            r
        });
        let _ = std::fs::remove_file(&path);
        match result {
            Ok(()) => self.shared.set_writable(),
            Err(e) => {
                self.shared.set_unwritable("the probe write failed", &e);
            }
        }
    }

    /// Closes the active segment and starts the next one.
    fn roll(&mut self) -> io::Result<()> {
        let base = self.base + self.size;
        let path = segment_path(&self.shared.dir, base);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.shared.dir)?;
        self.file = file;
        self.base = base;
        self.size = 0;
        if let Ok(mut segs) = self.shared.segments.write() {
            segs.push(Segment { base, path });
        }
        self.enforce_retention();
        Ok(())
    }

    /// Deletes the oldest closed segments past the size or age bound, and
    /// refreshes the size gauge.
    fn enforce_retention(&mut self) {
        self.last_retention = Instant::now();
        let cfg = &self.shared.config;
        let segs: Vec<Segment> = match self.shared.segments.read() {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        let sizes: Vec<(u64, Option<SystemTime>)> = segs
            .iter()
            .map(|s| match std::fs::metadata(&s.path) {
                Ok(m) => (m.len(), m.modified().ok()),
                Err(_) => (0, None),
            })
            .collect();
        let mut total: u64 = sizes.iter().map(|s| s.0).sum();
        let mut drop_count = 0;
        for (i, (len, modified)) in sizes.iter().enumerate().take(segs.len() - 1) {
            let too_big = cfg.retention_bytes.is_some_and(|max| total > max);
            let too_old = match (cfg.retention_age, modified) {
                (Some(age), Some(m)) => m.elapsed().is_ok_and(|e| e > age),
                _ => false,
            };
            if !(too_big || too_old) {
                break;
            }
            if let Err(e) = std::fs::remove_file(&segs[i].path) {
                tracing::warn!(error = %e, "event log: cannot delete an old segment");
                break;
            }
            total -= len;
            drop_count += 1;
        }
        if drop_count > 0 {
            if let Ok(mut s) = self.shared.segments.write() {
                s.drain(..drop_count);
                if let Some(first) = s.first() {
                    self.shared.start.store(first.base, Ordering::Release);
                }
            }
            let _ = sync_dir(&self.shared.dir);
            tracing::info!(
                segments = drop_count,
                "event log: retention deleted segments"
            );
        }
        self.shared.metrics.bytes.set(total as i64);
    }
}

impl EventStream for EventLog {
    fn append(&self, batch: EncodedBatch) -> BoxFuture<'_, Result<Appended, StreamError>> {
        let submitted = self.submit(batch);
        Box::pin(async move {
            submitted?
                .await
                .map_err(|_| StreamError::Unavailable("the event log writer stopped".into()))?
        })
    }

    fn read(&self, from: u64, max_bytes: usize) -> BoxFuture<'_, Result<ReadBatch, StreamError>> {
        let result = read_log(&self.shared, from, max_bytes);
        Box::pin(async move { result })
    }

    fn commit(&self, consumer: &str, next: u64) -> BoxFuture<'_, Result<(), StreamError>> {
        let result = {
            let mut offsets = lock(&self.shared.consumers);
            offsets.insert(consumer.to_string(), next);
            write_consumers(&self.shared.dir, &offsets)
        };
        self.shared.update_lag();
        Box::pin(async move { Ok(result?) })
    }

    fn committed(&self, consumer: &str) -> BoxFuture<'_, Result<Option<u64>, StreamError>> {
        let v = lock(&self.shared.consumers).get(consumer).copied();
        Box::pin(async move { Ok(v) })
    }

    fn bounds(&self) -> (u64, u64) {
        (
            self.shared.start.load(Ordering::Acquire),
            self.shared.durable_end.load(Ordering::Acquire),
        )
    }

    fn health(&self) -> Result<(), String> {
        self.shared.health()
    }
}

/// Durable records from `from`, stepping over gaps and deleted segments.
fn read_log(shared: &Shared, from: u64, max_bytes: usize) -> Result<ReadBatch, StreamError> {
    let segs = shared
        .segments
        .read()
        .map(|s| s.clone())
        .unwrap_or_default();
    let durable = shared.durable_end.load(Ordering::Acquire);
    let mut out = ReadBatch {
        records: Vec::new(),
        next: from,
    };
    let mut bytes = 0usize;
    for (i, seg) in segs.iter().enumerate() {
        let seg_end = segs.get(i + 1).map(|n| n.base);
        if seg_end.is_some_and(|e| e <= out.next) {
            continue;
        }
        let pos = out.next.saturating_sub(seg.base);
        let limit = if seg_end.is_none() {
            Some(durable.saturating_sub(seg.base))
        } else {
            None
        };
        let scanned = match scan_segment(seg, pos, limit, |offset, p| {
            if bytes > 0 && bytes + p.len() > max_bytes {
                return ControlFlow::Break(());
            }
            bytes += p.len();
            out.records.push(StoredRecord {
                offset,
                payload: p.to_vec(),
            });
            ControlFlow::Continue(())
        }) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        match out.records.last() {
            Some(last) if scanned.stopped => {
                out.next = last.offset + (crate::record::HEADER + last.payload.len()) as u64;
                return Ok(out);
            }
            _ => {}
        }
        out.next = match seg_end {
            Some(e) => e,
            None => seg.base + scanned.pos.max(pos),
        };
    }
    Ok(out)
}
