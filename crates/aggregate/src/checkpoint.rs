//! Checkpoints: the aggregator's whole state as bytes, with the stream
//! offset it covers, and the atomic file write.
//!
//! Format (little-endian): `b"SYAGG\x00\x00\x01"`, `u32` CRC-32 of the body,
//! `u64` body length, body. The body holds the unit-hash key, the position
//! (offset, latest event time, event count), counters, the event sources,
//! the ring's live entries and each experiment (its spec as JSON, units,
//! per-unit metric values, buckets of moments). Floats are stored as their
//! bits, so a restored state is bit-for-bit the state that was written:
//! numbers after a restart equal an uninterrupted run's.
//!
//! A checkpoint that does not check (torn, truncated, another version) is
//! refused with [`CheckpointError`]; the caller then starts from an empty
//! state at the beginning of the retained stream.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use switchyard_core::metric::{EventFilter, EventSource};

use crate::aggregator::{Aggregator, Counters, Position, Source};
use crate::experiment::{Bucket, ExperimentCounters, ExperimentState, MetricState, Unit};
use crate::hash::{UnitHasher, UnitMap};
use crate::moments::Moments;
use crate::ring::Ring;
use crate::spec::{ExperimentSpec, Limits, SpecMetric};

/// Version 2 added breakdowns; a version-1 checkpoint is refused, and the
/// aggregator recomputes from the retained log.
const MAGIC: &[u8; 8] = b"SYAGG\x00\x00\x02";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint of this version")]
    Version,
    #[error("the checkpoint is damaged: {0}")]
    Damaged(&'static str),
    #[error("the checkpoint holds an invalid definition: {0}")]
    Definition(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, x: u8) {
        self.0.push(x);
    }
    fn u16(&mut self, x: u16) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn u32(&mut self, x: u32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn i64(&mut self, x: i64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn f64(&mut self, x: f64) {
        self.u64(x.to_bits());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn json<T: serde::Serialize>(&mut self, t: &T) {
        let s = serde_json::to_vec(t).unwrap_or_default();
        self.bytes(&s);
    }
    fn moments(&mut self, m: &Moments) {
        self.u64(m.n);
        for x in [m.sum_x, m.sum_xx, m.sum_y, m.sum_yy, m.sum_xy] {
            self.f64(x);
        }
    }
}

struct R<'a>(&'a [u8]);

type Res<T> = Result<T, CheckpointError>;

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.0.len() < n {
            return Err(CheckpointError::Damaged("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Res<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    fn f64(&mut self) -> Res<f64> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A count of items of at least `min` bytes each that fit in the rest.
    fn count(&mut self, min: usize) -> Res<usize> {
        let n = self.u64()?;
        if n.saturating_mul(min.max(1) as u64) > self.0.len() as u64 {
            return Err(CheckpointError::Damaged("a count exceeds the data"));
        }
        Ok(n as usize)
    }
    fn bytes(&mut self) -> Res<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }
    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Res<T> {
        serde_json::from_slice(self.bytes()?)
            .map_err(|e| CheckpointError::Definition(e.to_string()))
    }
    fn moments(&mut self) -> Res<Moments> {
        Ok(Moments {
            n: self.u64()?,
            sum_x: self.f64()?,
            sum_xx: self.f64()?,
            sum_y: self.f64()?,
            sum_yy: self.f64()?,
            sum_xy: self.f64()?,
        })
    }
}

/// The aggregator's state as checkpoint bytes.
pub fn encode(agg: &Aggregator) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(1 << 16));
    let (k0, k1) = agg.hasher.key();
    w.u64(k0);
    w.u64(k1);
    let p = agg.position;
    w.u64(p.offset);
    w.u8(u8::from(p.max_event_ms.is_some()));
    w.i64(p.max_event_ms.unwrap_or(0));
    w.u64(p.events);
    let c = agg.counters;
    for x in [
        c.unmatched_exposures,
        c.unmatched_tracks,
        c.bad_attributes,
        c.skipped_definitions,
    ] {
        w.u64(x);
    }
    w.u64(agg.sources.len() as u64);
    for s in &agg.sources {
        w.json(&s.def);
    }
    w.u64(agg.ring.evicted);
    w.u64(agg.ring.live().count() as u64);
    for e in agg.ring.live() {
        w.u64(e.unit);
        w.i64(e.time);
        w.f64(e.value);
        w.u32(e.source);
    }
    w.u64(agg.experiments.len() as u64);
    for e in &agg.experiments {
        encode_experiment(&mut w, e);
    }
    let body = w.0;
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn encode_experiment(w: &mut W, e: &ExperimentState) {
    w.json(&e.spec);
    w.u64(e.since_offset);
    w.i64(e.floor);
    w.u32(e.rows);
    let c = e.counters;
    for x in [c.excluded_units, c.dropped_units, c.ignored_exposures] {
        w.u64(x);
    }
    w.u64(e.exposures.len() as u64);
    for &x in &e.exposures {
        w.u64(x);
    }
    w.u64(e.metrics.len() as u64);
    for m in &e.metrics {
        w.json(&m.spec);
        w.u32(m.sources.0);
        w.u32(m.sources.1.unwrap_or(u32::MAX));
        w.u64(m.since_offset);
        w.u64(m.values.len() as u64);
        for v in &m.values {
            w.f64(v[0]);
            w.f64(v[1]);
        }
    }
    w.u64(e.units.len() as u64);
    for (&k, u) in &e.units {
        w.u64(k);
        w.i64(u.first_ms);
        w.u32(u.row);
        w.u16(u.variation);
        w.u8(u.segment);
    }
    w.u64(e.buckets.len() as u64);
    for (&k, b) in &e.buckets {
        w.i64(k);
        w.u64(b.units.len() as u64);
        for &u in &b.units {
            w.u64(u);
        }
        w.u64(b.moments.len() as u64);
        for m in &b.moments {
            w.moments(m);
        }
    }
    w.u8(u8::from(e.breakdown.is_some()));
    if let Some(b) = &e.breakdown {
        w.bytes(b.attribute.as_bytes());
        w.u64(b.unassigned);
        w.u64(b.values.len() as u64);
        for v in &b.values {
            w.bytes(v.as_bytes());
        }
        for s in &b.segments {
            encode_bucket(w, s);
        }
    }
}

fn encode_bucket(w: &mut W, b: &Bucket) {
    w.u64(b.units.len() as u64);
    for &u in &b.units {
        w.u64(u);
    }
    w.u64(b.moments.len() as u64);
    for m in &b.moments {
        w.moments(m);
    }
}

fn decode_bucket(r: &mut R<'_>, nvar: usize, nm: usize) -> Res<Bucket> {
    let nu = r.count(8)?;
    let units = (0..nu).map(|_| r.u64()).collect::<Res<Vec<_>>>()?;
    let nmo = r.count(48)?;
    let moments = (0..nmo).map(|_| r.moments()).collect::<Res<Vec<_>>>()?;
    if nu != nvar || nmo != nm * nvar {
        return Err(CheckpointError::Damaged("bucket shape"));
    }
    Ok(Bucket { units, moments })
}

fn text(r: &mut R<'_>) -> Res<String> {
    String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CheckpointError::Damaged("text"))
}

/// Restores an aggregator from checkpoint bytes, with today's `limits`
/// (a smaller ring keeps its newest entries).
pub fn decode(bytes: &[u8], limits: Limits) -> Result<Aggregator, CheckpointError> {
    let mut r = R(bytes);
    if r.take(8).map_err(|_| CheckpointError::Version)? != MAGIC {
        return Err(CheckpointError::Version);
    }
    let crc = r.u32()?;
    let len = r.count(1)?;
    let body = r.take(len)?;
    if crc32fast::hash(body) != crc {
        return Err(CheckpointError::Damaged("checksum"));
    }
    let mut r = R(body);
    let key = (r.u64()?, r.u64()?);
    let offset = r.u64()?;
    let has_max = r.u8()? == 1;
    let max = r.i64()?;
    let position = Position {
        offset,
        max_event_ms: has_max.then_some(max),
        events: r.u64()?,
    };
    let counters = Counters {
        unmatched_exposures: r.u64()?,
        unmatched_tracks: r.u64()?,
        bad_attributes: r.u64()?,
        skipped_definitions: r.u64()?,
    };
    let n = r.count(8)?;
    let mut sources = Vec::with_capacity(n);
    for _ in 0..n {
        let def: EventSource = r.json()?;
        let filter = EventFilter::new(&def).map_err(CheckpointError::Definition)?;
        sources.push(Source { def, filter });
    }
    let evicted = r.u64()?;
    let n = r.count(28)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let e = (r.u64()?, r.i64()?, r.f64()?, r.u32()?);
        if e.3 as usize >= sources.len() {
            return Err(CheckpointError::Damaged("a ring entry names no source"));
        }
        entries.push(e);
    }
    let skip = entries.len().saturating_sub(limits.ring_capacity);
    let ring = Ring::restore(
        limits.ring_capacity,
        evicted + skip as u64,
        entries.into_iter().skip(skip).collect(),
    );
    let n = r.count(8)?;
    let mut experiments = Vec::with_capacity(n);
    for _ in 0..n {
        experiments.push(decode_experiment(&mut r, sources.len())?);
    }
    if !r.0.is_empty() {
        return Err(CheckpointError::Damaged("trailing bytes"));
    }
    let mut agg = Aggregator::new(limits, key);
    agg.hasher = UnitHasher::new(key);
    agg.position = position;
    agg.counters = counters;
    agg.sources = sources;
    agg.ring = ring;
    agg.experiments = experiments;
    agg.reindex();
    Ok(agg)
}

fn decode_experiment(r: &mut R<'_>, sources: usize) -> Res<ExperimentState> {
    let spec: ExperimentSpec = r.json()?;
    let nvar = spec.variations.len();
    let since = r.u64()?;
    let floor = r.i64()?;
    let rows = r.u32()?;
    let counters = ExperimentCounters {
        excluded_units: r.u64()?,
        dropped_units: r.u64()?,
        ignored_exposures: r.u64()?,
    };
    let n = r.count(8)?;
    if n != nvar {
        return Err(CheckpointError::Damaged("exposure counts"));
    }
    let exposures = (0..n).map(|_| r.u64()).collect::<Res<Vec<_>>>()?;
    let n = r.count(8)?;
    let mut metrics = Vec::with_capacity(n);
    for _ in 0..n {
        let spec: SpecMetric = r.json()?;
        let num = r.u32()?;
        let den = r.u32()?;
        let den = (den != u32::MAX).then_some(den);
        if num as usize >= sources || den.is_some_and(|d| d as usize >= sources) {
            return Err(CheckpointError::Damaged("a metric names no source"));
        }
        let since = r.u64()?;
        let len = r.count(16)?;
        if len != rows as usize {
            return Err(CheckpointError::Damaged("metric values"));
        }
        let mut m = MetricState::new(spec, (num, den), 0, since);
        m.values = (0..len)
            .map(|_| Ok([r.f64()?, r.f64()?]))
            .collect::<Res<Vec<_>>>()?;
        metrics.push(m);
    }
    let nm = metrics.len();
    let mut st = ExperimentState::new(spec, metrics, since);
    st.floor = floor;
    st.rows = rows;
    st.counters = counters;
    st.exposures = exposures;
    let n = r.count(23)?;
    let mut units = UnitMap::with_capacity_and_hasher(n, Default::default());
    for _ in 0..n {
        let k = r.u64()?;
        let u = Unit {
            first_ms: r.i64()?,
            row: r.u32()?,
            variation: r.u16()?,
            segment: r.u8()?,
        };
        if u.row >= rows
            || (u.variation as usize >= nvar && u.variation != crate::experiment::EXCLUDED)
        {
            return Err(CheckpointError::Damaged("a unit is out of range"));
        }
        units.insert(k, u);
    }
    st.units = units;
    let n = r.count(8)?;
    let mut buckets = BTreeMap::new();
    for _ in 0..n {
        let k = r.i64()?;
        let nu = r.count(8)?;
        let units = (0..nu).map(|_| r.u64()).collect::<Res<Vec<_>>>()?;
        let nmo = r.count(48)?;
        let moments = (0..nmo).map(|_| r.moments()).collect::<Res<Vec<_>>>()?;
        if nu != nvar || nmo != nm * nvar {
            return Err(CheckpointError::Damaged("bucket shape"));
        }
        buckets.insert(k, Bucket { units, moments });
    }
    st.buckets = buckets;
    st.breakdown = if r.u8()? == 1 {
        use crate::breakdown::{Breakdown, MAX_VALUES};
        let attribute = text(r)?;
        let unassigned = r.u64()?;
        let n = r.count(8)?;
        if n > MAX_VALUES {
            return Err(CheckpointError::Damaged("breakdown values"));
        }
        let values = (0..n).map(|_| text(r)).collect::<Res<Vec<_>>>()?;
        let segments = (0..=n)
            .map(|_| decode_bucket(r, nvar, nm))
            .collect::<Res<Vec<_>>>()?;
        Some(Breakdown {
            attribute,
            values,
            segments,
            unassigned,
        })
    } else {
        None
    };
    if st.breakdown.as_ref().map(|b| &b.attribute) != st.spec.breakdown.as_ref() {
        return Err(CheckpointError::Damaged("breakdown attribute"));
    }
    Ok(st)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it,
/// `fsync`, rename over `path`, `fsync` of the directory. A crash leaves
/// either the old file or the new one, never a mix.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The checkpoint at `path`, or `None` if there is none.
pub fn read_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
