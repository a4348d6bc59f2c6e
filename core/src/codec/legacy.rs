//! Pre-4.4 recordings: a session is an index (`<sid>.index`, JSON lines naming the files),
//! gzipped JSON-lines event files (`<sid>-<first index>.events.gz`, print events without
//! data) and gzipped terminal bytes (`<sid>-<first offset>.chunks.gz`). They were uploaded as
//! a plain tar of those files, or kept on disk per auth server
//! (`<data_dir>/log/<server>/sessions/<ns>/`). This module merges such files, from one or
//! several servers, into one ordered event list with print data restored.

use std::io::Read as _;

use serde_json::Value;

use super::ErrorKind;
use crate::event::AuditEvent;

/// Largest decompressed size of one legacy session (all files together).
pub const MAX_LEGACY_BYTES: u64 = 1 << 30;

/// One file of a legacy session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyFile {
    /// Which server directory (or archive) it came from; index entries name files of the same source.
    pub source: String,
    /// Base name, e.g. `<sid>-0.events.gz`.
    pub name: String,
    /// Contents as stored (gzipped for events and chunks).
    pub data: Vec<u8>,
}

/// One line of a `.index` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// File the entry describes.
    pub file_name: String,
    /// `events`, `chunks`, or an enhanced event type (`session.command` …).
    pub kind: String,
    /// First event index in the file.
    pub index: i64,
    /// First byte offset in the file (chunks).
    pub offset: i64,
    /// The source the index came from.
    pub source: String,
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // Base-256 (GNU) for large values.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field.iter().copied().take_while(|&b| b != 0).collect();
    let s = std::str::from_utf8(&s).ok()?.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Whether `b` starts with a valid tar header block (checksum verified).
pub fn is_tar_header(b: &[u8]) -> bool {
    if b.len() < 512 || b[..512].iter().all(|&x| x == 0) {
        return false;
    }
    let Some(sum) = octal(&b[148..156]) else {
        return false;
    };
    let computed: u64 = b[..512]
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(x)
            }
        })
        .sum();
    sum == computed
}

/// The regular files of a tar archive (base names; PAX and GNU long names handled).
pub fn read_tar(bytes: &[u8], source: &str) -> Result<Vec<LegacyFile>, ErrorKind> {
    let mut files = Vec::new();
    let mut pos = 0usize;
    let mut long_name: Option<String> = None;
    while pos + 512 <= bytes.len() {
        let h = &bytes[pos..pos + 512];
        if h.iter().all(|&x| x == 0) {
            break;
        }
        if !is_tar_header(h) {
            return Err(ErrorKind::Legacy(format!(
                "bad tar header checksum at byte {pos}"
            )));
        }
        let size = octal(&h[124..136])
            .ok_or_else(|| ErrorKind::Legacy(format!("bad tar size field at byte {pos}")))?;
        let data_start = pos + 512;
        let end = (data_start as u64)
            .checked_add(size)
            .filter(|&e| e <= bytes.len() as u64)
            .ok_or_else(|| {
                ErrorKind::Legacy(format!(
                    "tar entry at byte {pos} claims {size} bytes, past the end of the archive"
                ))
            })? as usize;
        let data = &bytes[data_start..end];
        let flag = h[156];
        let name_field = |r: std::ops::Range<usize>| {
            String::from_utf8_lossy(&h[r])
                .trim_end_matches('\0')
                .to_string()
        };
        match flag {
            b'L' => {
                long_name = Some(
                    String::from_utf8_lossy(data)
                        .trim_end_matches('\0')
                        .to_string(),
                )
            }
            b'x' => {
                for rec in String::from_utf8_lossy(data).lines() {
                    if let Some((_, kv)) = rec.split_once(' ')
                        && let Some(p) = kv.strip_prefix("path=")
                    {
                        long_name = Some(p.to_string());
                    }
                }
            }
            b'0' | 0 => {
                let name = long_name.take().unwrap_or_else(|| {
                    let prefix = name_field(345..500);
                    let n = name_field(0..100);
                    if prefix.is_empty() {
                        n
                    } else {
                        format!("{prefix}/{n}")
                    }
                });
                let base = name.rsplit('/').next().unwrap_or(&name).to_string();
                files.push(LegacyFile {
                    source: source.to_string(),
                    name: base,
                    data: data.to_vec(),
                });
            }
            _ => long_name = None,
        }
        pos = data_start + (size as usize).div_ceil(512) * 512;
    }
    Ok(files)
}

/// Parses a `.index` file.
pub fn parse_index(text: &str, source: &str) -> Result<Vec<IndexEntry>, ErrorKind> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| ErrorKind::Legacy(format!("index line {}: {e}", n + 1)))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let i = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        out.push(IndexEntry {
            file_name: s("file_name"),
            kind: s("type"),
            index: i("index"),
            offset: i("offset"),
            source: source.to_string(),
        });
    }
    Ok(out)
}

fn gunzip(data: &[u8], budget: &mut u64, name: &str) -> Result<Vec<u8>, ErrorKind> {
    let mut out = Vec::new();
    let mut d = flate2::read::MultiGzDecoder::new(data).take(*budget + 1);
    d.read_to_end(&mut out)
        .map_err(|e| ErrorKind::Legacy(format!("{name}: {e}")))?;
    if out.len() as u64 > *budget {
        return Err(ErrorKind::Legacy(format!(
            "session is larger than {MAX_LEGACY_BYTES} bytes decompressed"
        )));
    }
    *budget -= out.len() as u64;
    Ok(out)
}

/// Merges a legacy session's files (from one or several sources) into events in index
/// order, print data restored from the chunks. Enhanced events (`session.command` …) follow
/// in their own index order after the main events of the same index.
pub fn assemble(files: &[LegacyFile]) -> Result<Vec<AuditEvent>, ErrorKind> {
    merge(files, true)
}

/// As [`assemble`], without print data: the chunk files are neither needed nor read (the
/// legacy playback API serves terminal bytes separately, by offset).
pub fn assemble_events(files: &[LegacyFile]) -> Result<Vec<AuditEvent>, ErrorKind> {
    merge(files, false)
}

/// Every index entry of a session's `.index` files (from every source).
pub fn index_entries(files: &[LegacyFile]) -> Result<Vec<IndexEntry>, ErrorKind> {
    let mut entries = Vec::new();
    for f in files.iter().filter(|f| f.name.ends_with(".index")) {
        entries.extend(parse_index(&String::from_utf8_lossy(&f.data), &f.source)?);
    }
    if entries.is_empty() {
        return Err(ErrorKind::Legacy("no .index file in the session".into()));
    }
    Ok(entries)
}

/// The chunk files of a session in offset order (upstream sorts the merged index by offset).
pub fn chunk_entries(entries: &[IndexEntry]) -> Vec<&IndexEntry> {
    let mut chunks: Vec<&IndexEntry> = entries.iter().filter(|e| e.kind == "chunks").collect();
    chunks.sort_by_key(|e| e.offset);
    chunks
}

fn merge(files: &[LegacyFile], with_data: bool) -> Result<Vec<AuditEvent>, ErrorKind> {
    let entries = index_entries(files)?;
    let find = |e: &IndexEntry| {
        files
            .iter()
            .find(|f| f.source == e.source && f.name == e.file_name)
            .ok_or_else(|| {
                ErrorKind::Legacy(format!(
                    "index names {} but the file is missing",
                    e.file_name
                ))
            })
    };
    let mut budget = MAX_LEGACY_BYTES;

    // Terminal bytes: chunk files sorted by offset, placed at their offsets.
    let mut chunks: Vec<(i64, Vec<u8>)> = Vec::new();
    if with_data {
        for e in chunk_entries(&entries) {
            chunks.push((e.offset, gunzip(&find(e)?.data, &mut budget, &e.file_name)?));
        }
    }

    let mut event_entries: Vec<&IndexEntry> =
        entries.iter().filter(|e| e.kind != "chunks").collect();
    event_entries.sort_by_key(|e| (e.index, e.kind != "events"));
    let mut events: Vec<(i64, bool, AuditEvent)> = Vec::new();
    for e in event_entries {
        let text = gunzip(&find(e)?.data, &mut budget, &e.file_name)?;
        for (n, line) in String::from_utf8_lossy(&text).lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut ev = AuditEvent::from_json(line).map_err(|err| {
                ErrorKind::Legacy(format!("{} line {}: {err}", e.file_name, n + 1))
            })?;
            if with_data && let AuditEvent::SessionPrint(p) = &mut ev {
                p.data = chunk_bytes(&chunks, p.offset, p.bytes);
            }
            events.push((ev.index(), e.kind != "events", ev));
        }
    }
    events.sort_by_key(|(i, enhanced, _)| (*i, *enhanced));
    Ok(events.into_iter().map(|(_, _, e)| e).collect())
}

/// Bytes `[offset, offset+len)` of the session's terminal output.
fn chunk_bytes(chunks: &[(i64, Vec<u8>)], offset: i64, len: i64) -> Vec<u8> {
    let mut out = Vec::new();
    if offset < 0 || len <= 0 {
        return out;
    }
    let (mut pos, end) = (offset, offset.saturating_add(len));
    for (start, data) in chunks {
        let stop = start.saturating_add(data.len() as i64);
        if pos >= *start && pos < stop {
            let from = (pos - start) as usize;
            let to = (end.min(stop) - start) as usize;
            out.extend_from_slice(&data[from..to]);
            pos = end.min(stop);
            if pos >= end {
                break;
            }
        }
    }
    out
}

/// Reads a legacy tar recording.
pub fn read_tar_recording(bytes: &[u8]) -> Result<Vec<AuditEvent>, ErrorKind> {
    assemble(&read_tar(bytes, "archive")?)
}

/// Builds a tar archive of files (ustar, base names), as the legacy uploader did. Used to make
/// test vectors and to export sessions in the old layout.
pub fn write_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        let n = name.as_bytes();
        h[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        let size = format!("{:011o}", data.len());
        h[124..135].copy_from_slice(size.as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let cs = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(cs.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
