//! Test vectors (feature `testkit`): recordings built here from the format facts (no
//! Teleport-written binary recording is available), each with what a correct reader must
//! produce. The native tests, the fuzz seeds and the browser tests all use these, so there is
//! one source of truth. The sample session they start from is [`crate::sample`], re-exported here.

use crate::codec::ErrorKind;
use crate::codec::header::PartHeader;
use crate::codec::legacy::write_tar;
use crate::codec::writer::{GZIP_HEADER_FAST, PartBuilder, WriterConfig};
use crate::event::{AuditEvent, SessionCommand, event_code, event_type};
pub use crate::sample::{SESSION_ID, START_MILLIS, line, print, sample_output, sample_session};
use crate::sample::{meta, server, session, user};

/// `n` events (at least 2): a session start, prints of 100 poorly compressible bytes each
/// (pseudo-random hex, fixed seed), a session end; indexes 0.. with no gaps. For tests that
/// need many parts from few events.
pub fn noisy_session(n: usize) -> Vec<AuditEvent> {
    let mut v = sample_session(0);
    let mut end = v.pop().unwrap_or_else(|| print(0, 0, 0, 0, b""));
    v.truncate(1);
    let mut r = 0x2545_F491_4F6C_DD1Du64;
    let mut offset = 0;
    while v.len() + 1 < n {
        let data: Vec<u8> = (0..100)
            .map(|_| {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                b"0123456789abcdef"[(r & 15) as usize]
            })
            .collect();
        let i = v.len() as i64;
        v.push(print(i, i, offset, i * 10, &data));
        offset += data.len() as i64;
    }
    end.set_index(v.len() as i64);
    v.push(end);
    v
}

/// What reading a vector must give.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// These events (after duplicate removal), these counters (total, skipped, out of order).
    Events {
        /// The events.
        events: Vec<AuditEvent>,
        /// `(total, skipped, out_of_order)`.
        stats: (u64, u64, u64),
    },
    /// The events before the damage, then an error of this kind at this offset.
    Error {
        /// Events decoded before the damage.
        before: usize,
        /// The error kind (compared with [`same_kind`]).
        kind: ErrorKind,
        /// Byte offset the error must report.
        offset: u64,
    },
}

/// A test recording.
#[derive(Debug, Clone)]
pub struct Vector {
    /// Short name.
    pub name: &'static str,
    /// The recording bytes.
    pub bytes: Vec<u8>,
    /// What a reader must produce.
    pub expect: Expect,
}

fn small() -> WriterConfig {
    WriterConfig {
        min_upload_bytes: 8 * 1024,
        ..WriterConfig::default()
    }
}

/// Encodes `events` as one part.
pub fn one_part(events: &[AuditEvent], last: bool, config: WriterConfig) -> Vec<u8> {
    let mut b = PartBuilder::new(config);
    for e in events {
        if let Err(err) = b.add(e) {
            panic!("vector event does not encode: {err}");
        }
    }
    b.finish(last).to_vec()
}

/// A part whose gzip member is followed, inside `part_size`, by `extra` zero bytes (the old
/// writer bug), then `padding` bytes outside.
pub fn part_with_padding_inside_gzip(
    events: &[AuditEvent],
    extra: usize,
    padding: usize,
) -> Vec<u8> {
    let clean = one_part(events, true, WriterConfig::default());
    let payload = &clean[24..];
    let mut out = PartHeader::v1((payload.len() + extra) as u64, padding as u64).to_bytes();
    out.extend_from_slice(payload);
    out.resize(out.len() + extra + padding, 0);
    out
}

/// One record (length + `OneOf`) of an arbitrary OneOf field, for unknown-member vectors.
pub fn unknown_member_oneof(field: u32, index: i64) -> Vec<u8> {
    use crate::proto::{Message, WireType, put_key, put_varint};
    let m = meta(index, "future.event", "TF999I", 5);
    let mut inner = Vec::new();
    crate::proto::put_message_field(&mut inner, 1, &m);
    // a field the future message has: 2 = "payload" string
    crate::proto::put_len_field(&mut inner, 2, b"from a newer Teleport");
    let mut oneof = Vec::new();
    put_key(&mut oneof, field, WireType::Len);
    put_varint(&mut oneof, inner.len() as u64);
    oneof.extend_from_slice(&inner);
    let _ = m.encoded_len();
    oneof
}

/// A sample session (noisy prints, so that it spans several 8 KiB parts) with events this
/// build does not know placed between the known ones; indexes 0.. with no gaps. The raw ones
/// are: members 185 (reserved upstream), 272, 1000 and 2^29-1 with a `Metadata` and a payload
/// field; member 4000 whose body has fields of every wire type after its `Metadata`; member
/// 250 (`RetrievalModelCreate`) whose body is not that message.
pub fn unknown_members_session() -> Vec<AuditEvent> {
    let known = noisy_session(240);
    let raw_at = [
        (3usize, 185u32),
        (40, 272),
        (90, 1000),
        (150, 0x1FFF_FFFF),
        (200, 4000),
        (230, 250),
    ];
    let mut out = Vec::with_capacity(known.len() + raw_at.len());
    for (i, e) in known.into_iter().enumerate() {
        if let Some(&(_, field)) = raw_at.iter().find(|(at, _)| *at == i) {
            let index = out.len() as i64;
            let bytes = if field == 4000 {
                unknown_member_with_every_wire_type(field, index)
            } else {
                unknown_member_oneof(field, index)
            };
            match AuditEvent::decode_oneof(&bytes) {
                Ok(raw @ AuditEvent::Unrecognized(_)) => out.push(raw),
                other => panic!("member {field} did not decode as a raw event: {other:?}"),
            }
        }
        let mut e = e;
        e.set_index(out.len() as i64);
        out.push(e);
    }
    out
}

/// A `OneOf` record of member `field` whose body is a `Metadata` followed by fields of every
/// wire type (varint, fixed64, length-delimited, fixed32), some with large field numbers.
pub fn unknown_member_with_every_wire_type(field: u32, index: i64) -> Vec<u8> {
    use crate::proto::{WireType, put_key, put_varint};
    let m = meta(index, "future.kind", "TF998I", 7);
    let mut inner = Vec::new();
    crate::proto::put_message_field(&mut inner, 1, &m);
    put_key(&mut inner, 2, WireType::Varint);
    put_varint(&mut inner, u64::MAX);
    put_key(&mut inner, 3, WireType::Fixed64);
    inner.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    crate::proto::put_len_field(&mut inner, 100_000, b"\x00\xff binary, not UTF-8");
    put_key(&mut inner, 0x1FFF_FFFF, WireType::Fixed32);
    inner.extend_from_slice(&7u32.to_le_bytes());
    let mut oneof = Vec::new();
    crate::proto::put_len_field(&mut oneof, field, &inner);
    oneof
}

/// A part made of raw decompressed payload bytes (records written by hand).
pub fn raw_part(payload: &[u8], version: u64) -> Vec<u8> {
    let mut gz = GZIP_HEADER_FAST.to_vec();
    let mut d = crate::codec::deflate::Deflater::new(crate::codec::Backend::ZlibRs, 1);
    d.compress(payload, &mut gz, crate::codec::deflate::Flush::Finish);
    gz.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    gz.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    // In both versions the part size counts the payload only (V2's header is 32 bytes).
    let mut out = PartHeader {
        version,
        part_size: gz.len() as u64,
        padding_size: 0,
        flags: 0,
    }
    .to_bytes();
    out.extend_from_slice(&gz);
    out
}

/// A legacy (pre-4.4) tar recording of the sample session, with its print data in chunk files.
pub fn legacy_tar(prints: usize) -> Vec<u8> {
    use std::io::Write as _;
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    };
    let events = sample_session(prints);
    let mut lines = String::new();
    for e in &events {
        lines.push_str(&e.to_json());
        lines.push('\n');
    }
    // Split the chunks into two files at a print boundary, as a long session did.
    let out = sample_output(prints);
    let cut = line(0).len() * (prints / 2);
    let index = format!(
        "{{\"file_name\":\"{SESSION_ID}-0.events.gz\",\"type\":\"events\",\"index\":0,\"offset\":0}}\n\
         {{\"file_name\":\"{SESSION_ID}-0.chunks.gz\",\"type\":\"chunks\",\"index\":0,\"offset\":0}}\n\
         {{\"file_name\":\"{SESSION_ID}-{cut}.chunks.gz\",\"type\":\"chunks\",\"index\":0,\"offset\":{cut}}}\n"
    );
    write_tar(&[
        (format!("{SESSION_ID}.index"), index.into_bytes()),
        (format!("{SESSION_ID}-0.events.gz"), gz(lines.as_bytes())),
        (format!("{SESSION_ID}-0.chunks.gz"), gz(&out[..cut])),
        (format!("{SESSION_ID}-{cut}.chunks.gz"), gz(&out[cut..])),
    ])
}

/// The legacy on-disk layout of the sample session recorded across two auth servers sharing
/// one log directory (upstream's NFS set-up): `auth-a` holds the index, events and chunks of
/// the first half, `auth-b` those of the second half plus one enhanced `session.command`
/// event file. Returns `(server, [(file name, bytes)])`; the files go in
/// `<log>/<server>/sessions/default/`. Merged, they are [`sample_session`]`(prints)` with the
/// command event (index [`LEGACY_COMMAND_INDEX`]) after the event of the same index.
pub fn legacy_two_servers(prints: usize) -> Vec<(&'static str, Vec<NamedFile>)> {
    use std::io::Write as _;
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    };
    let events = sample_session(prints);
    let split = events.len() / 2;
    let lines = |evs: &[AuditEvent]| {
        let mut out = String::new();
        for e in evs {
            out.push_str(&e.to_json());
            out.push('\n');
        }
        out
    };
    let output = sample_output(prints);
    // The byte offset where the second server's output starts: that of its first print.
    let cut = events[split..]
        .iter()
        .find_map(|e| match e {
            AuditEvent::SessionPrint(p) => Some(p.offset as usize),
            _ => None,
        })
        .unwrap_or(output.len());
    let second = split as i64;
    let command = legacy_command_event();
    let a_index = format!(
        "{{\"file_name\":\"{SESSION_ID}-0.events.gz\",\"type\":\"events\",\"index\":0,\"offset\":0}}\n\
         {{\"file_name\":\"{SESSION_ID}-0.chunks.gz\",\"type\":\"chunks\",\"index\":0,\"offset\":0}}\n"
    );
    let b_index = format!(
        "{{\"file_name\":\"{SESSION_ID}-{second}.events.gz\",\"type\":\"events\",\"index\":{second},\"offset\":0}}\n\
         {{\"file_name\":\"{SESSION_ID}-{cut}.chunks.gz\",\"type\":\"chunks\",\"index\":{second},\"offset\":{cut}}}\n\
         {{\"file_name\":\"{SESSION_ID}-{LEGACY_COMMAND_INDEX}.session.command-events.gz\",\"type\":\"session.command\",\"index\":{LEGACY_COMMAND_INDEX},\"offset\":0}}\n"
    );
    vec![
        (
            "auth-a",
            vec![
                (format!("{SESSION_ID}.index"), a_index.into_bytes()),
                (
                    format!("{SESSION_ID}-0.events.gz"),
                    gz(lines(&events[..split]).as_bytes()),
                ),
                (format!("{SESSION_ID}-0.chunks.gz"), gz(&output[..cut])),
            ],
        ),
        (
            "auth-b",
            vec![
                (format!("{SESSION_ID}.index"), b_index.into_bytes()),
                (
                    format!("{SESSION_ID}-{second}.events.gz"),
                    gz(lines(&events[split..]).as_bytes()),
                ),
                (format!("{SESSION_ID}-{cut}.chunks.gz"), gz(&output[cut..])),
                (
                    format!("{SESSION_ID}-{LEGACY_COMMAND_INDEX}.session.command-events.gz"),
                    gz(lines(std::slice::from_ref(&command)).as_bytes()),
                ),
            ],
        ),
    ]
}

/// A file's name and bytes.
pub type NamedFile = (String, Vec<u8>);

/// Index of the enhanced event in [`legacy_two_servers`].
pub const LEGACY_COMMAND_INDEX: i64 = 3;

/// The enhanced-recording event of [`legacy_two_servers`].
pub fn legacy_command_event() -> AuditEvent {
    SessionCommand {
        metadata: meta(
            LEGACY_COMMAND_INDEX,
            event_type::SESSION_COMMAND,
            event_code::SESSION_COMMAND,
            120,
        ),
        user: user(),
        session: session(),
        server: server(),
        path: "/bin/ls".into(),
        argv: vec!["-l".into()],
        ..Default::default()
    }
    .into()
}

fn ok(
    name: &'static str,
    bytes: Vec<u8>,
    events: Vec<AuditEvent>,
    stats: (u64, u64, u64),
) -> Vector {
    Vector {
        name,
        bytes,
        expect: Expect::Events { events, stats },
    }
}

fn bad(name: &'static str, bytes: Vec<u8>, before: usize, kind: ErrorKind, offset: u64) -> Vector {
    Vector {
        name,
        bytes,
        expect: Expect::Error {
            before,
            kind,
            offset,
        },
    }
}

/// Whether two error kinds are the same kind (ignoring details that depend on the deflate
/// back end's wording).
pub fn same_kind(a: &ErrorKind, b: &ErrorKind) -> bool {
    match (a, b) {
        (ErrorKind::BadDeflate, ErrorKind::BadDeflate) => true,
        (ErrorKind::Event(_), ErrorKind::Event(_)) => true,
        _ => a == b,
    }
}

/// Every vector.
pub fn all() -> Vec<Vector> {
    let session = sample_session(40);
    let n = session.len() as u64;
    let mut v = Vec::new();

    // 1. Single part, last (unpadded).
    v.push(ok(
        "single-part",
        one_part(&session, true, WriterConfig::default()),
        session.clone(),
        (n, 0, 0),
    ));

    // 2. Many padded parts of 8 KiB.
    let big = sample_session(2000);
    let mut bytes = Vec::new();
    let mut w = crate::codec::RecordingWriter::new(small());
    for e in &big {
        if let Err(err) = w.add(e) {
            panic!("{err}");
        }
    }
    for p in w.finish() {
        bytes.extend_from_slice(&p.to_vec());
    }
    v.push(ok(
        "many-padded-parts",
        bytes,
        big.clone(),
        (big.len() as u64, 0, 0),
    ));

    // 3. Padding inside the gzip section (old writer bug), then padding outside too.
    let mut bytes = part_with_padding_inside_gzip(&session[..20], 1000, 300);
    bytes.extend_from_slice(&one_part(&session[20..], true, WriterConfig::default()));
    v.push(ok("padding-inside-gzip", bytes, session.clone(), (n, 0, 0)));

    // 4. A resumed writer replays events already uploaded: part 1 has 0..30, part 3 (after a
    //    skipped part number) replays 20..30 and goes on to the end.
    let mut bytes = one_part(&session[..30], false, small());
    bytes.extend_from_slice(&one_part(&session[20..], true, small()));
    v.push(ok(
        "resumed-duplicates",
        bytes,
        session.clone(),
        (n + 10, 10, 0),
    ));

    // 5. An unknown OneOf member between known events: kept as raw bytes. Upstream's OneOf
    //    already uses 1..=271 at the transcribed commit, so the vector uses field 1000.
    let raw = unknown_member_oneof(1000, 3);
    let unknown = match AuditEvent::decode_oneof(&raw) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let mut with_unknown: Vec<AuditEvent> = session[..3].to_vec();
    with_unknown.push(unknown);
    for e in &session[3..] {
        let mut e = e.clone();
        e.set_index(e.index() + 1);
        with_unknown.push(e);
    }
    v.push(ok(
        "unknown-oneof-member",
        one_part(&with_unknown, true, WriterConfig::default()),
        with_unknown.clone(),
        (n + 1, 0, 0),
    ));

    // 5b. Events this build does not know, between known ones, over several parts: unknown
    //     member numbers (a reserved one, the first after the schema, a large one, the
    //     largest protobuf allows), one whose body holds more fields after its `Metadata`, and
    //     a known number whose body is not of its type (kept raw too). Each keeps its index.
    let v5b = unknown_members_session();
    let mut bytes = Vec::new();
    let mut w = crate::codec::RecordingWriter::new(small());
    for e in &v5b {
        if let Err(err) = w.add(e) {
            panic!("{err}");
        }
    }
    for p in w.finish() {
        bytes.extend_from_slice(&p.to_vec());
    }
    v.push(ok(
        "unknown-members-in-parts",
        bytes,
        v5b.clone(),
        (v5b.len() as u64, 0, 0),
    ));

    // 6. V2 header without the encrypted flag.
    let mut payload = Vec::new();
    for e in &session[..5] {
        let r = e.to_oneof_bytes();
        payload.extend_from_slice(&(r.len() as u32).to_be_bytes());
        payload.extend_from_slice(&r);
    }
    v.push(ok(
        "v2-unencrypted",
        raw_part(&payload, 2),
        session[..5].to_vec(),
        (5, 0, 0),
    ));

    // 7. V2 header with the encrypted flag.
    let mut enc = raw_part(&payload, 2);
    enc[24] = 1;
    v.push(bad(
        "v2-encrypted",
        enc,
        0,
        ErrorKind::EncryptedRecording,
        0,
    ));

    // 8. Legacy tar.
    v.push(ok(
        "legacy-tar",
        legacy_tar(10),
        sample_session(10),
        // A legacy archive counts the events it returns (no parts, no indexes to check).
        (sample_session(10).len() as u64, 0, 0),
    ));

    // 9. Broken inputs.
    let good = one_part(&session, true, WriterConfig::default());
    v.push(bad(
        "truncated-header",
        good[..10].to_vec(),
        0,
        ErrorKind::TruncatedHeader { have: 10, need: 24 },
        0,
    ));
    let mut huge = good.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    v.push(bad(
        "huge-part-size",
        huge,
        0,
        ErrorKind::PartTooLarge(u64::MAX),
        0,
    ));
    let mut zero = Vec::new();
    let first = session[0].to_oneof_bytes();
    zero.extend_from_slice(&(first.len() as u32).to_be_bytes());
    zero.extend_from_slice(&first);
    zero.extend_from_slice(&0u32.to_be_bytes());
    v.push(bad(
        "zero-message-size",
        raw_part(&zero, 1),
        1,
        ErrorKind::ZeroMessageSize,
        0,
    ));
    let mut over = Vec::new();
    over.extend_from_slice(&(first.len() as u32).to_be_bytes());
    over.extend_from_slice(&first);
    over.extend_from_slice(&70_000u32.to_be_bytes());
    over.resize(over.len() + 70_000, 0);
    v.push(bad(
        "message-over-64k",
        raw_part(&over, 1),
        1,
        ErrorKind::MessageTooLarge(70_000),
        0,
    ));
    let mut badgz = good.clone();
    for b in &mut badgz[24 + 10..24 + 40] {
        *b = 0xff;
    }
    v.push(bad("bad-gzip", badgz, 0, ErrorKind::BadDeflate, 34));
    let mut v3 = good.clone();
    v3[7] = 3;
    v.push(bad("version-3", v3, 0, ErrorKind::UnsupportedVersion(3), 0));
    let padded = one_part(&session, false, small());
    let short = padded[..padded.len() - 100].to_vec();
    let expected = PartHeaderView::padding(&padded);
    v.push(bad(
        "short-padding",
        short.clone(),
        session.len(),
        ErrorKind::TruncatedPadding {
            expected,
            got: expected - 100,
        },
        short.len() as u64,
    ));
    v
}

struct PartHeaderView;

impl PartHeaderView {
    fn padding(part: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&part[16..24]);
        u64::from_be_bytes(w)
    }
}
