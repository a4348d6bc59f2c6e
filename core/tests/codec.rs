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
                events,
                stats: Default::default(),
                error: None,
            },
            Err(kind) => ReadAll {
                events: vec![],
                stats: Default::default(),
                error: Some(codec::CodecError {
                    offset: 0,
                    part: 0,
                    kind,
                }),
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
