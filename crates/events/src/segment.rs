//! Segment files: naming, listing, and scanning records with their checks.
//!
//! A log is a directory of segments named by the log offset of their first
//! byte (`00000000000000000000.log`); an offset is a position in the
//! log's byte address space, so finding a record needs no index. A
//! truncated segment leaves a gap in that space, which readers step over.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::record::{HEADER, MAX_PAYLOAD};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub path: PathBuf,
}

pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// The segments of `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() == 20
            && let Ok(base) = stem.parse::<u64>()
        {
            out.push(Segment {
                base,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|s| s.base);
    Ok(out)
}

/// Reads the valid records of one segment from byte `pos` (relative to the
/// segment) up to `limit` bytes (relative; `None`: the whole file), calling
/// `f(offset, payload)`. Stops at the first record that is torn or fails its
/// check, or when `f` breaks. Returns the relative position after the last
/// record read and whether the scan stopped on a bad or torn record.
pub fn scan_segment(
    seg: &Segment,
    pos: u64,
    limit: Option<u64>,
    mut f: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
) -> io::Result<ScanEnd> {
    let mut file = File::open(&seg.path)?;
    let file_len = file.metadata()?.len();
    let end = limit.map_or(file_len, |l| l.min(file_len));
    if pos >= end {
        return Ok(ScanEnd {
            pos,
            bad_tail: pos < file_len && limit.is_none(),
            stopped: false,
        });
    }
    file.seek(SeekFrom::Start(pos))?;
    let mut r = BufReader::with_capacity(1 << 20, file.take(end - pos));
    let mut at = pos;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        match read_full(&mut r, &mut header)? {
            0 => {
                return Ok(ScanEnd {
                    pos: at,
                    bad_tail: false,
                    stopped: false,
                });
            }
            HEADER => {}
            _ => return Ok(ScanEnd::bad(at)),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_PAYLOAD {
            return Ok(ScanEnd::bad(at));
        }
        payload.resize(len, 0);
        if read_full(&mut r, &mut payload)? != len {
            return Ok(ScanEnd::bad(at));
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&header[0..4]);
        h.update(&payload);
        if h.finalize() != crc {
            return Ok(ScanEnd::bad(at));
        }
        let offset = seg.base + at;
        at += (HEADER + len) as u64;
        if f(offset, &payload).is_break() {
            return Ok(ScanEnd {
                pos: at,
                bad_tail: false,
                stopped: true,
            });
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// Relative position after the last good record.
    pub pos: u64,
    /// The scan met a torn or corrupt record at `pos`.
    pub bad_tail: bool,
    /// `f` asked to stop.
    pub stopped: bool,
}

impl ScanEnd {
    fn bad(pos: u64) -> Self {
        ScanEnd {
            pos,
            bad_tail: true,
            stopped: false,
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads every valid record of the log in `dir`, oldest first, without
/// changing anything (for checkers, export and tools). Each segment is read
/// up to its first bad record. Returns the offset after the last record.
pub fn read_dir(dir: &Path, mut f: impl FnMut(u64, &[u8])) -> io::Result<u64> {
    let mut next = 0;
    for seg in list_segments(dir)? {
        let end = scan_segment(&seg, 0, None, |off, p| {
            f(off, p);
            ControlFlow::Continue(())
        })?;
        next = seg.base + end.pos;
    }
    Ok(next)
}

/// Fsyncs a directory, so that a created or renamed file is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
