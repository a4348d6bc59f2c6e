//! The recording codec on the test vectors: whole, at random chunkings, byte by byte; the
//! writer's layout; both deflate back ends.

use proptest::prelude::*;
use tapelog_core::codec::deflate::Backend;
use tapelog_core::codec::header::PartHeader;
use tapelog_core::codec::writer::{GZIP_HEADER_FAST, PartBuilder, WriterConfig};
use tapelog_core::codec::{ErrorKind, Polled, ProtoReader, ReadAll, read_all};
use tapelog_core::vectors::{self, Expect, same_kind};
use tapelog_core::{AuditEvent, codec};

fn read_chunked(bytes: &[u8], cuts: &[usize], backend: Backend) -> ReadAll {
    let mut r = ProtoReader::new(backend);
    let mut events = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    loop {
        match r.poll() {
            Ok(Polled::Event(e)) => events.push(e),
            Ok(Polled::End) => {
                return ReadAll {
                    events,
                    stats: r.stats(),
                    error: None,
                };
            }
            Ok(Polled::NeedInput) => {
                if rest.is_empty() {
                    r.finish();
                } else {
                    let n = cuts
                        .get(i)
                        .copied()
                        .unwrap_or(usize::MAX)
                        .clamp(1, rest.len());
                    i += 1;
                    r.push(&rest[..n]);
                    rest = &rest[n..];
                }
            }
            Err(e) => {
                return ReadAll {
                    events,
                    stats: r.stats(),
                    error: Some(e),
                };
            }
        }
    }
}

fn check(name: &str, got: &ReadAll, expect: &Expect) {
    match expect {
        Expect::Events { events, stats } => {
            assert!(got.error.is_none(), "{name}: {:?}", got.error);
            assert_eq!(got.events.len(), events.len(), "{name}");
            assert_eq!(&got.events, events, "{name}");
            assert_eq!(
                (got.stats.total, got.stats.skipped, got.stats.out_of_order),
                *stats,
                "{name}"
            );
        }
        Expect::Error {
            before,
            kind,
            offset,
        } => {
            let e = got
                .error
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no error"));
            assert!(
                same_kind(&e.kind, kind),
                "{name}: {:?} is not {:?}",
                e.kind,
                kind
            );
            assert_eq!(e.offset, *offset, "{name}: {e}");
            assert_eq!(
                got.events.len(),
                *before,
                "{name}: events before the damage"
            );
        }
    }
}

fn read_vector(bytes: &[u8]) -> ReadAll {
    if codec::detect_format(bytes) == codec::Format::LegacyTar {
        return match codec::legacy::read_tar_recording(bytes) {
            Ok(events) => ReadAll {
                stats: codec::ReaderStats {
                    total: events.len() as u64,
                    ..Default::default()
                },
                events,
                error: None,
            },
            Err(kind) => ReadAll {
                events: vec![],
                stats: Default::default(),
                error: Some(codec::CodecError::at(0, 0, kind)),
            },
        };
    }
    read_all(bytes)
}

#[test]
fn every_vector_reads_as_expected() {
    for v in vectors::all() {
        check(v.name, &read_vector(&v.bytes), &v.expect);
    }
}

#[test]
fn every_vector_reads_the_same_one_byte_at_a_time_with_both_backends() {
    for v in vectors::all() {
        if codec::detect_format(&v.bytes) == codec::Format::LegacyTar || v.bytes.len() > 300_000 {
            continue;
        }
        for b in Backend::ALL {
            let ones = vec![1; v.bytes.len()];
            check(v.name, &read_chunked(&v.bytes, &ones, b), &v.expect);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random chunkings of every vector give the same events, counters and errors.
    #[test]
    fn random_chunkings_give_the_same_result(cuts in proptest::collection::vec(1usize..5000, 1..400)) {
        for v in vectors::all() {
            if codec::detect_format(&v.bytes) == codec::Format::LegacyTar {
                continue;
            }
            let got = read_chunked(&v.bytes, &cuts, Backend::ZlibRs);
            check(v.name, &got, &v.expect);
        }
    }

    /// Random sessions of every event kind survive the writer and the reader, for any part size.
    #[test]
    fn random_events_round_trip_through_parts(seed in any::<u64>(), part_kib in 70usize..400) {
        let mut r = tapelog_core::random::Rng::new(seed);
        let mut events = Vec::new();
        for (i, &(field, _)) in tapelog_core::event::EVENT_KINDS.iter().enumerate() {
            let Some(mut e) = AuditEvent::random_of(field, &mut r) else { continue };
            if e.oneof_len() > 60_000 { continue; }
            e.set_index(i as i64);
            events.push(e);
        }
        let config = WriterConfig { min_upload_bytes: part_kib * 1024, ..WriterConfig::default() };
        let bytes = codec::encode_recording(&events, config).unwrap();
        let got = read_all(&bytes);
        prop_assert!(got.error.is_none());
        prop_assert_eq!(got.events, events);
    }
}

#[test]
fn parts_have_teleports_layout() {
    let events = vectors::sample_session(100);
    let config = WriterConfig {
        min_upload_bytes: 64 * 1024,
        ..WriterConfig::default()
    };
    let mut b = PartBuilder::new(config);
    for e in &events {
        b.add(e).unwrap();
    }
    let part = b.finish(false);
    let bytes = part.to_vec();
    // A non-last part is padded to exactly the minimum upload size.
    assert_eq!(bytes.len(), 64 * 1024);
    let h = PartHeader::parse_v1_prefix(bytes[..24].try_into().unwrap()).unwrap();
    assert_eq!(h.version, 1);
    assert_eq!(24 + h.part_size + h.padding_size, 64 * 1024);
    assert!(bytes[24 + h.part_size as usize..].iter().all(|&b| b == 0));
    // One gzip member with Go's BestSpeed header.
    assert_eq!(&bytes[24..34], &GZIP_HEADER_FAST);
    // Decompressed: u32 length + OneOf records, nothing else.
    let gz = &bytes[24..24 + h.part_size as usize];
    let mut plain = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut plain)
        .unwrap();
    let mut at = 0;
    for e in &events {
        let len = u32::from_be_bytes(plain[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(&plain[at + 4..at + 4 + len], e.to_oneof_bytes().as_slice());
        at += 4 + len;
    }
    assert_eq!(at, plain.len());
    // The last part is never padded.
    let mut b = PartBuilder::new(config);
    b.add(&events[0]).unwrap();
    let last = b.finish(true);
    assert_eq!(last.padding, 0);
}

#[test]
fn an_idle_part_releases_its_compressor_and_stays_one_member() {
    let events = vectors::sample_session(300);
    let mut b = PartBuilder::new(WriterConfig::default());
    for (i, e) in events.iter().enumerate() {
        b.add(e).unwrap();
        if i % 50 == 0 {
            b.release();
            assert!(
                b.memory_bytes() < 64 * 1024,
                "idle part holds {} bytes",
                b.memory_bytes()
            );
        }
    }
    let bytes = b.finish(true).to_vec();
    let got = read_all(&bytes);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.events, events);
    // Go reads one member per part: a single-member decoder must see everything.
    let mut plain = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(&bytes[24..])
        .read_to_end(&mut plain)
        .unwrap();
    let n = events.iter().map(|e| 4 + e.oneof_len()).sum::<usize>();
    assert_eq!(plain.len(), n);
}

#[test]
fn oversized_events_are_trimmed_or_refused() {
    use tapelog_core::event::{SessionJoin, SessionStart};
    let mut start = SessionStart::default();
    start.metadata.type_ = "session.start".into();
    start.initial_command = vec!["x".repeat(100_000)];
    let e = AuditEvent::from(start);
    let mut b = PartBuilder::new(WriterConfig::default());
    b.add(&e).unwrap();
    let got = read_all(&b.finish(true).to_vec());
    assert_eq!(got.events.len(), 1);
    assert!(got.events[0].size() <= 64 * 1024);
    // An event kind that upstream does not trim is refused, and nothing is written.
    // (`SessionJoin` is one: its `TrimToMaxSize` returns it unchanged, schema/trim.tsv.)
    let mut join = SessionJoin::default();
    join.metadata.type_ = "session.join".into();
    join.user.login = "y".repeat(70_000);
    let mut b = PartBuilder::new(WriterConfig::default());
    let err = b.add(&AuditEvent::from(join)).unwrap_err();
    assert!(err.to_string().contains("session.join"), "{err}");
    assert!(b.is_empty());
}

#[test]
fn errors_carry_offset_and_part() {
    let session = vectors::sample_session(10);
    let mut bytes = vectors::one_part(
        &session,
        false,
        WriterConfig {
            min_upload_bytes: 8192,
            ..Default::default()
        },
    );
    let second_start = bytes.len() as u64;
    let mut bad = vectors::one_part(&session, true, WriterConfig::default());
    bad[7] = 9;
    bytes.extend_from_slice(&bad);
    let got = read_all(&bytes);
    let e = got.error.unwrap();
    assert_eq!(e.kind, ErrorKind::UnsupportedVersion(9));
    assert_eq!(e.offset, second_start);
    assert_eq!(e.part, 1);
    assert_eq!(got.events.len(), session.len());
    assert!(
        e.to_string()
            .contains(&format!("at byte {second_start} (part 1)")),
        "{e}"
    );
}

#[test]
fn checksum_damage_is_detected() {
    let session = vectors::sample_session(5);
    let mut bytes = vectors::one_part(&session, true, WriterConfig::default());
    let n = bytes.len();
    bytes[n - 6] ^= 0xff; // inside the CRC
    let got = read_all(&bytes);
    assert!(matches!(
        got.error.unwrap().kind,
        ErrorKind::ChecksumMismatch { .. }
    ));
}

#[test]
fn empty_parts_and_empty_input() {
    let mut bytes = PartHeader::v1(0, 100).to_bytes();
    bytes.resize(124, 0);
    bytes.extend_from_slice(&vectors::one_part(
        &vectors::sample_session(2),
        true,
        WriterConfig::default(),
    ));
    let got = read_all(&bytes);
    assert!(got.error.is_none());
    assert_eq!(got.events.len(), 5);
    let got = read_all(&[]);
    assert!(got.error.is_none() && got.events.is_empty());
}

/// `poll_record` gives the same records, in the same order, with the same counters, as `poll`
/// on every valid vector.
#[test]
fn poll_record_agrees_with_poll() {
    use tapelog_core::codec::PolledRecord;
    for v in vectors::all() {
        let Expect::Events { events, stats } = &v.expect else {
            continue;
        };
        if codec::detect_format(&v.bytes) == codec::Format::LegacyTar {
            continue;
        }
        let mut r = ProtoReader::new(Backend::default());
        r.push(&v.bytes);
        r.finish();
        let mut got = Vec::new();
        loop {
            match r.poll_record() {
                Ok(PolledRecord::Record { index, oneof }) => {
                    let e = AuditEvent::decode_oneof(oneof).unwrap();
                    assert_eq!(e.index(), index, "{}", v.name);
                    got.push(e);
                }
                Ok(PolledRecord::End) => break,
                other => panic!("{}: {other:?}", v.name),
            }
        }
        assert_eq!(&got, events, "{}", v.name);
        let s = r.stats();
        assert_eq!((s.total, s.skipped, s.out_of_order), *stats, "{}", v.name);
    }
}

/// A `OneOf` member number the schema does not use (reserved ones included).
fn unknown_member_number(seed: u32) -> u32 {
    let n = match seed % 4 {
        0 => 185 + seed / 4 % 3,
        1 => 272 + seed / 4 % 1000,
        2 => 0x1FFF_FFFF - seed / 4 % 1000,
        _ => 272 + seed / 4 % (0x1FFF_FFFF - 272),
    };
    assert!(
        !tapelog_core::event::EVENT_KINDS
            .iter()
            .any(|&(f, _)| f == n),
        "{n} is in the schema"
    );
    n
}

/// A message body of well-formed fields of every wire type, after a `Metadata` with `index`.
fn unknown_body(index: i64, fields: &[(u32, u8, Vec<u8>)]) -> Vec<u8> {
    use tapelog_core::proto::{WireType, put_key, put_len_field, put_message_field, put_varint};
    let meta = tapelog_core::event::Metadata {
        index,
        type_: "future.event".into(),
        code: "TF001I".into(),
        id: format!("00000000-0000-4000-8000-{index:012}"),
        ..Default::default()
    };
    let mut body = Vec::new();
    put_message_field(&mut body, 1, &meta);
    for (field, wt, bytes) in fields {
        let field = 2 + field % (0x1FFF_FFFF - 2);
        match wt % 4 {
            0 => {
                put_key(&mut body, field, WireType::Varint);
                put_varint(
                    &mut body,
                    bytes.iter().fold(0u64, |a, &b| a << 8 | u64::from(b)),
                );
            }
            1 => {
                put_key(&mut body, field, WireType::Fixed64);
                let mut b = [0u8; 8];
                for (d, s) in b.iter_mut().zip(bytes) {
                    *d = *s;
                }
                body.extend_from_slice(&b);
            }
            2 => put_len_field(&mut body, field, bytes),
            _ => {
                put_key(&mut body, field, WireType::Fixed32);
                let mut b = [0u8; 4];
                for (d, s) in b.iter_mut().zip(bytes) {
                    *d = *s;
                }
                body.extend_from_slice(&b);
            }
        }
    }
    body
}

/// Reads a recording with `poll_record`, decoding each record.
fn read_records(bytes: &[u8]) -> Vec<AuditEvent> {
    use tapelog_core::codec::PolledRecord;
    let mut r = ProtoReader::new(Backend::default());
    r.push(bytes);
    r.finish();
    let mut got = Vec::new();
    loop {
        match r.poll_record() {
            Ok(PolledRecord::Record { index, oneof }) => {
                let e = AuditEvent::decode_oneof(oneof).unwrap();
                assert_eq!(e.index(), index);
                got.push(e);
            }
            Ok(PolledRecord::End) => return got,
            other => panic!("{other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any member number the schema does not use, with any well-formed body after its
    /// `Metadata`, between known events over several parts: every reader (typed, raw records,
    /// chunked) gives it as a raw event with its metadata, the events after it are read
    /// normally, and the recording written back is the same bytes.
    #[test]
    fn unknown_members_are_kept_in_every_reader(
        members in proptest::collection::vec(
            (any::<u32>(), proptest::collection::vec((any::<u32>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..6)),
            1..8,
        ),
        cuts in proptest::collection::vec(1usize..3000, 1..50),
    ) {
        let known = vectors::noisy_session(200);
        let every = known.len() / members.len();
        let mut events = Vec::new();
        let mut raws = Vec::new();
        for (i, e) in known.into_iter().enumerate() {
            if i % every == every / 2 && raws.len() < members.len() {
                let (seed, fields) = &members[raws.len()];
                let field = unknown_member_number(*seed);
                let index = events.len() as i64;
                let mut rec = Vec::new();
                tapelog_core::proto::put_len_field(&mut rec, field, &unknown_body(index, fields));
                let raw = AuditEvent::decode_oneof(&rec).unwrap();
                let AuditEvent::Unrecognized(r) = &raw else { panic!("{raw:?}") };
                prop_assert_eq!(r.field, field);
                prop_assert_eq!(raw.index(), index);
                prop_assert_eq!(raw.event_type(), "future.event");
                prop_assert_eq!(raw.to_oneof_bytes(), rec.clone());
                raws.push(rec);
                events.push(raw);
            }
            let mut e = e;
            e.set_index(events.len() as i64);
            events.push(e);
        }
        let mut w = codec::RecordingWriter::new(WriterConfig { min_upload_bytes: 4096, ..Default::default() });
        let mut bytes = Vec::new();
        for e in &events {
            w.add(e).unwrap();
        }
        let parts = w.finish();
        prop_assert!(parts.len() > 1);
        for p in parts {
            bytes.extend_from_slice(&p.to_vec());
        }
        let whole = read_all(&bytes);
        prop_assert!(whole.error.is_none(), "{:?}", whole.error);
        prop_assert_eq!(&whole.events, &events);
        prop_assert_eq!(read_chunked(&bytes, &cuts, Backend::default()).events, events.clone());
        prop_assert_eq!(read_records(&bytes), events.clone());
        for e in &whole.events {
            if let AuditEvent::Unrecognized(_) = e {
                let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
                prop_assert_eq!(json["event"].as_str(), Some("future.event"));
                prop_assert_eq!(json["ei"].as_i64(), Some(e.index()));
                prop_assert!(raws.iter().any(|r| r == &e.to_oneof_bytes()));
            }
        }
    }

    /// Any bytes as the body of an unknown member decode (a raw event, the bytes kept), and
    /// both index readers agree on the record.
    #[test]
    fn any_body_of_an_unknown_member_decodes(seed in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let field = unknown_member_number(seed);
        let mut rec = Vec::new();
        tapelog_core::proto::put_len_field(&mut rec, field, &body);
        let e = AuditEvent::decode_oneof(&rec).unwrap();
        prop_assert!(matches!(&e, AuditEvent::Unrecognized(r) if r.field == field));
        prop_assert_eq!(e.to_oneof_bytes(), rec.clone());
        let _ = e.to_json();
        let mut payload = (rec.len() as u32).to_be_bytes().to_vec();
        payload.extend_from_slice(&rec);
        let part = vectors::raw_part(&payload, 1);
        prop_assert_eq!(read_all(&part).events.len(), 1);
        prop_assert_eq!(read_records(&part).len(), 1);
    }
}

/// A bad record far into a part names its part's offset and the record's place in the part's
/// decompressed data, whatever the chunking; damage in the compressed bytes names the byte.
#[test]
fn record_errors_name_the_record() {
    let session = vectors::sample_session(40);
    let first = vectors::one_part(&session[..10], false, WriterConfig::default());
    let mut payload = Vec::new();
    let mut record_at = Vec::new();
    for e in &session[10..30] {
        record_at.push(payload.len() as u64);
        let r = e.to_oneof_bytes();
        payload.extend_from_slice(&(r.len() as u32).to_be_bytes());
        payload.extend_from_slice(&r);
    }
    // Record 15 of the second part: a OneOf that is not protobuf (a key with field 0).
    let bad_at = payload.len() as u64;
    payload.extend_from_slice(&3u32.to_be_bytes());
    payload.extend_from_slice(&[0x02, 0x01, 0x00]);
    let mut bytes = first.clone();
    bytes.extend_from_slice(&vectors::raw_part(&payload, 1));
    for cuts in [vec![usize::MAX], vec![1], vec![7, 100, 3]] {
        let got = read_chunked(&bytes, &cuts, Backend::default());
        let e = got.error.unwrap();
        assert!(matches!(e.kind, ErrorKind::Event(_)), "{e}");
        assert_eq!(
            (e.offset, e.part, e.record),
            (first.len() as u64, 1, Some(bad_at))
        );
        assert!(
            e.to_string().contains(&format!(
                "at byte {} (part 1, record at byte {bad_at} of the part's decompressed data)",
                first.len()
            )),
            "{e}"
        );
        assert_eq!(got.events.len(), 30);
    }
    // A record header announcing too many bytes, then one announcing zero.
    for (len, kind) in [
        (70_000u32, ErrorKind::MessageTooLarge(70_000)),
        (0, ErrorKind::ZeroMessageSize),
    ] {
        let mut p = payload[..bad_at as usize].to_vec();
        p.extend_from_slice(&len.to_be_bytes());
        let got = read_all(&vectors::raw_part(&p, 1));
        let e = got.error.unwrap();
        assert_eq!((e.kind, e.record), (kind, Some(bad_at)));
    }
    // Damage in the compressed bytes of the second part: the byte named is inside that part.
    for at in [40usize, 200, 600] {
        let mut b = bytes.clone();
        let i = first.len() + 24 + at;
        if i >= b.len() - 8 {
            continue;
        }
        b[i] ^= 0x55;
        let e = read_all(&b).error.unwrap();
        assert!(
            e.offset >= first.len() as u64 && e.offset < b.len() as u64,
            "damage at {i}: {e}"
        );
        assert_eq!(e.part, 1, "{e}");
    }
}
