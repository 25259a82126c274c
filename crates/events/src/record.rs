//! The binary form of an event, and the framing of log records.
//!
//! A record on disk is `len: u32 LE, crc: u32 LE, payload[len]`, where
//! `crc` is the CRC-32 (IEEE) of the four length bytes followed by the
//! payload: a zero-filled or torn tail never checks. An event payload is:
//!
//! ```text
//! u8  version+kind   1 = exposure, 2 = track
//! i64 time_ms        LE
//! str id             u16 LE length (0: none), bytes
//! str project, str environment, str unit
//! exposure: str experiment (0: none), str flag (0: none), str variation
//! track:    str name, u8 has_value, f64 value LE, u32 LE length + attributes JSON
//! ```

use std::hash::{Hash, Hasher};

use crate::schema::{EventRef, KindRef};

pub const HEADER: usize = 8;
/// Largest payload the log accepts.
pub const MAX_PAYLOAD: usize = 1 << 20;

const EXPOSURE: u8 = 1;
const TRACK: u8 = 2;
/// An exposure followed by its attributes (records of kind 1 have none).
const EXPOSURE_WITH_ATTRIBUTES: u8 = 3;

/// Encoded records ready for one log write, with what the writer needs to
/// know of each (framed length and id hash, for deduplication).
#[derive(Debug, Default, Clone)]
pub struct EncodedBatch {
    pub data: Vec<u8>,
    pub records: Vec<RecordMeta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Framed length: header plus payload.
    pub len: u32,
    /// Hash of (project, environment, id) when the event has an id.
    pub id: Option<u64>,
}

impl EncodedBatch {
    pub fn with_capacity(bytes: usize, records: usize) -> Self {
        EncodedBatch {
            data: Vec::with_capacity(bytes),
            records: Vec::with_capacity(records),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Frames an arbitrary payload (dead letters use JSON payloads).
    /// Payloads larger than [`MAX_PAYLOAD`] or empty are refused.
    pub fn push_raw(&mut self, payload: &[u8], id: Option<u64>) -> bool {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD {
            return false;
        }
        let start = self.data.len();
        self.data.extend_from_slice(&[0; HEADER]);
        self.data.extend_from_slice(payload);
        self.finish(start, id);
        true
    }

    /// Encodes one validated event.
    pub fn push_event(&mut self, project: &str, environment: &str, ev: &EventRef<'_>) {
        let start = self.data.len();
        let d = &mut self.data;
        d.extend_from_slice(&[0; HEADER]);
        d.push(match ev.kind {
            KindRef::Exposure {
                attributes: Some(_),
                ..
            } => EXPOSURE_WITH_ATTRIBUTES,
            KindRef::Exposure { .. } => EXPOSURE,
            KindRef::Track { .. } => TRACK,
        });
        d.extend_from_slice(&ev.time_ms.to_le_bytes());
        put_str(d, ev.id.as_deref().unwrap_or(""));
        put_str(d, project);
        put_str(d, environment);
        put_str(d, &ev.unit);
        match &ev.kind {
            KindRef::Exposure {
                experiment,
                flag,
                variation,
                attributes,
            } => {
                put_str(d, experiment.as_deref().unwrap_or(""));
                put_str(d, flag.as_deref().unwrap_or(""));
                put_str(d, variation);
                if let Some(a) = attributes {
                    d.extend_from_slice(&(a.len() as u32).to_le_bytes());
                    d.extend_from_slice(a.as_bytes());
                }
            }
            KindRef::Track {
                name,
                value,
                attributes,
            } => {
                put_str(d, name);
                d.push(u8::from(value.is_some()));
                d.extend_from_slice(&value.unwrap_or(0.0).to_le_bytes());
                let a = attributes.unwrap_or("").as_bytes();
                d.extend_from_slice(&(a.len() as u32).to_le_bytes());
                d.extend_from_slice(a);
            }
        }
        let id = ev.id.as_deref().map(|id| id_hash(project, environment, id));
        self.finish(start, id);
    }

    fn finish(&mut self, start: usize, id: Option<u64>) {
        let payload_len = (self.data.len() - start - HEADER) as u32;
        let len_bytes = payload_len.to_le_bytes();
        let mut h = crc32fast::Hasher::new();
        h.update(&len_bytes);
        h.update(&self.data[start + HEADER..]);
        let crc = h.finalize();
        self.data[start..start + 4].copy_from_slice(&len_bytes);
        self.data[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.records.push(RecordMeta {
            len: payload_len + HEADER as u32,
            id,
        });
    }
}

/// Keys and units are validated to at most 1 KiB, so a u16 length holds.
fn put_str(d: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    d.extend_from_slice(&(b.len() as u16).to_le_bytes());
    d.extend_from_slice(b);
}

/// The deduplication key of an event id, scoped to its environment.
pub fn id_hash(project: &str, environment: &str, id: &str) -> u64 {
    // Fixed keys: the set is rebuilt from the log at start by the same
    // binary, so the hash need not be stable across releases.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    project.hash(&mut h);
    environment.hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

/// Checks a record header and payload: `Some(payload_len)` when the bytes
/// at the start of `buf` hold one whole valid record.
pub fn check_record(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    let payload = buf.get(HEADER..HEADER + len)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[0..4]);
    h.update(payload);
    (h.finalize() == crc).then_some(len)
}

/// A decoded event payload, borrowing from the record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub project: &'a str,
    pub environment: &'a str,
    pub unit: &'a str,
    pub time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<&'a serde_json::value::RawValue>,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str_n(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn str16(&mut self) -> Option<&'a str> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        self.str_n(n)
    }
    fn opt16(&mut self) -> Option<Option<&'a str>> {
        let s = self.str16()?;
        Some((!s.is_empty()).then_some(s))
    }
}

/// Decodes an event payload; `None` if it is not one.
pub fn decode_event(payload: &[u8]) -> Option<StoredEvent<'_>> {
    let mut c = Cursor(payload);
    let kind = c.u8()?;
    let time = c.u64()? as i64;
    let id = c.opt16()?;
    let project = c.str16()?;
    let environment = c.str16()?;
    let unit = c.str16()?;
    let mut ev = StoredEvent {
        kind: "exposure",
        id,
        project,
        environment,
        unit,
        time,
        experiment: None,
        flag: None,
        variation: None,
        name: None,
        value: None,
        attributes: None,
    };
    match kind {
        EXPOSURE | EXPOSURE_WITH_ATTRIBUTES => {
            ev.experiment = c.opt16()?;
            ev.flag = c.opt16()?;
            ev.variation = Some(c.str16()?);
            if kind == EXPOSURE_WITH_ATTRIBUTES {
                let n = u32::from_le_bytes(c.take(4)?.try_into().ok()?) as usize;
                ev.attributes = serde_json::from_str(c.str_n(n)?).ok();
            }
        }
        TRACK => {
            ev.kind = "track";
            ev.name = Some(c.str16()?);
            let has = c.u8()?;
            let v = f64::from_bits(c.u64()?);
            ev.value = (has == 1).then_some(v);
            let n = u32::from_le_bytes(c.take(4)?.try_into().ok()?) as usize;
            let a = c.str_n(n)?;
            if !a.is_empty() {
                ev.attributes = serde_json::from_str(a).ok();
            }
        }
        _ => return None,
    }
    c.0.is_empty().then_some(ev)
}

/// Only the id of an event payload (cheap: it sits near the front).
pub fn payload_id_hash(payload: &[u8]) -> Option<u64> {
    let ev = decode_event(payload)?;
    Some(id_hash(ev.project, ev.environment, ev.id?))
}
