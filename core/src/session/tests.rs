//! Unit tests of the session writer's rules: preparer fields, print splitting, intake and
//! backoff under simulated time, the replay buffer and the recovery schedule.

use super::*;
use crate::event::{
    AuditEvent, FieldsError, MAX_EVENT_SIZE, Metadata, Resize, ServerMetadata, SessionMetadata,
    SessionPrint, SessionStart, event_code, event_type,
};
use crate::proto::Timestamp;
use crate::vectors;

const SID: &str = vectors::SESSION_ID;
const T0: i64 = vectors::START_MILLIS;

fn config() -> PreparerConfig {
    PreparerConfig {
        server_id: "srv-1".into(),
        ..PreparerConfig::new(SID, "tapelog.example")
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn start_event() -> AuditEvent {
    SessionStart {
        metadata: Metadata {
            type_: event_type::SESSION_START.into(),
            code: event_code::SESSION_START.into(),
            ..Default::default()
        },
        session: SessionMetadata {
            session_id: "someone-else".into(),
            ..Default::default()
        },
        server: ServerMetadata {
            server_hostname: "host".into(),
            ..Default::default()
        },
        ..Default::default()
    }
    .into()
}

fn print_at(now: Timestamp, data: &[u8]) -> AuditEvent {
    SessionPrint {
        metadata: Metadata {
            type_: event_type::SESSION_PRINT.into(),
            time: now.round_to_millis(),
            ..Default::default()
        },
        bytes: data.len() as i64,
        data: data.to_vec(),
        ..Default::default()
    }
    .into()
}

fn print_fields(e: &AuditEvent) -> (i64, i64, i64, i64, i64) {
    let AuditEvent::SessionPrint(p) = e else {
        panic!("not a print: {e:?}");
    };
    (
        p.metadata.index,
        p.chunk_index,
        p.offset,
        p.delay_milliseconds,
        p.bytes,
    )
}

#[test]
fn config_is_checked_and_namespace_defaults() {
    assert_eq!(
        Preparer::new(PreparerConfig::new("", "c")).unwrap_err(),
        PreparerConfigError::MissingSessionId
    );
    assert!(matches!(
        Preparer::new(PreparerConfig::new(SID, "")).unwrap_err(),
        PreparerConfigError::MissingClusterName { .. }
    ));
    let p = Preparer::new(PreparerConfig {
        namespace: String::new(),
        ..config()
    })
    .unwrap();
    assert_eq!(p.config().namespace, DEFAULT_NAMESPACE);
}

#[test]
fn prepare_sets_session_defaults() {
    let mut p = Preparer::new(config()).unwrap();
    // 12:00:00.0006 rounds up to .001.
    let now = Timestamp::from_unix_nanos(T0 as i128 * 1_000_000 + 600_000);
    let e = p.prepare(start_event(), now, "uid-1").unwrap();
    assert_eq!(e.index(), 0);
    assert_eq!(e.id(), "uid-1");
    assert_eq!(e.time(), at(T0 + 1));
    assert_eq!(e.cluster_name(), "tapelog.example");
    assert_eq!(
        e.session_id(),
        SID,
        "session id is overwritten, as upstream"
    );
    assert_eq!(e.server_id(), "srv-1");
    let srv = e.server_metadata().unwrap();
    assert_eq!(srv.server_namespace, "default");
    assert_eq!(srv.server_hostname, "host", "other server fields kept");
    // An event with its own id, time and cluster keeps them.
    let mut own = start_event();
    let m = own.metadata_mut().unwrap();
    m.id = "mine".into();
    m.time = at(5);
    m.cluster_name = "other".into();
    let e = p.prepare(own, now, "unused").unwrap();
    assert_eq!(
        (e.index(), e.id(), e.time(), e.cluster_name()),
        (1, "mine", at(5), "other")
    );
    // Prints get no uid.
    let e = p.prepare(print_at(now, b"x"), now, "uid-2").unwrap();
    assert_eq!(e.id(), "");
    assert_eq!(e.index(), 2);
}

#[test]
fn prepare_refuses_what_upstream_refuses() {
    let mut p = Preparer::new(config()).unwrap();
    let now = at(T0);
    let mut no_type = start_event();
    no_type.metadata_mut().unwrap().type_.clear();
    assert_eq!(
        p.prepare(no_type, now, "u").unwrap_err(),
        FieldsError::MissingType
    );
    let mut no_code = start_event();
    no_code.metadata_mut().unwrap().code.clear();
    assert!(matches!(
        p.prepare(no_code, now, "u").unwrap_err(),
        FieldsError::MissingCode { .. }
    ));
    let raw = AuditEvent::decode_oneof(&vectors::unknown_member_oneof(9999, 4)).unwrap();
    assert!(matches!(raw, AuditEvent::Unrecognized(_)));
    let err = p.prepare(raw, now, "u").unwrap_err();
    assert!(
        matches!(err, FieldsError::Raw { .. }),
        "raw events can't take an index: {err:?}"
    );
    // Refused events use no index.
    assert_eq!(p.prepare(start_event(), now, "u").unwrap().index(), 0);
}

/// Upstream's print rules, exact values: (ms after T0 of the print, bytes) →
/// (index, ci, offset, ms, bytes).
#[test]
fn print_fields_table() {
    let mut p = Preparer::new(config()).unwrap();
    let start = p.prepare(start_event(), at(T0), "u").unwrap();
    assert_eq!(start.index(), 0);
    let cases: &[PrintRow] = &[
        (0, b"hello", (1, 0, 0, 0, 5)),
        (700, b"w", (2, 1, 5, 700, 1)),
        (700, b"", (3, 2, 6, 700, 0)),
        // A clock going backwards adds no delay.
        (500, b"abc", (4, 3, 6, 700, 3)),
        // The delay is measured from the previous print's time (500), not the largest.
        (1501, b"\r\n", (5, 4, 9, 1701, 2)),
    ];
    for (ms, data, want) in cases {
        let e = p
            .prepare(print_at(at(T0 + ms), data), at(T0 + ms), "u")
            .unwrap();
        assert_eq!(print_fields(&e), *want, "print at +{ms} ms");
        assert_eq!(e.time(), at(T0 + ms));
    }
    // Another event in between does not disturb the print sequence.
    let r: AuditEvent = Resize {
        metadata: Metadata {
            type_: event_type::RESIZE.into(),
            code: event_code::TERMINAL_RESIZE.into(),
            ..Default::default()
        },
        ..Default::default()
    }
    .into();
    assert_eq!(p.prepare(r, at(T0 + 1600), "u").unwrap().index(), 6);
    let e = p
        .prepare(print_at(at(T0 + 1999), b"z"), at(T0 + 1999), "u")
        .unwrap();
    assert_eq!(print_fields(&e), (7, 5, 11, 2199, 1));
}

#[test]
fn sub_millisecond_delays_are_truncated() {
    let mut p = Preparer::new(config()).unwrap();
    let t = |ns: i128| Timestamp::from_unix_nanos(T0 as i128 * 1_000_000 + ns);
    // Events that carry their own (unrounded) times: 1.9 ms apart → 1 ms.
    let mk = |time: Timestamp| -> AuditEvent {
        let mut e = print_at(time, b"a");
        e.set_time(time);
        e
    };
    p.prepare(mk(t(0)), t(0), "").unwrap();
    let e = p.prepare(mk(t(1_900_000)), t(0), "").unwrap();
    assert_eq!(print_fields(&e).3, 1);
}

#[test]
fn first_print_keeps_its_own_fields() {
    // As upstream: fields of the first print are the caller's, the next build on them.
    let mut p = Preparer::new(PreparerConfig {
        server_id: "ade010d6-4e75-4ed8-9f92-886a4f49eb26".into(),
        ..config()
    })
    .unwrap();
    let session = vectors::sample_session(5);
    for e in &session {
        let got = p.prepare(e.clone(), at(0), "unused").unwrap();
        assert_eq!(
            &got, e,
            "the sample session is already what the preparer makes"
        );
    }
}

#[test]
fn start_time_indexes_are_nanoseconds_and_strictly_increase() {
    let start = at(T0);
    let mut p = Preparer::new(PreparerConfig {
        start_time: Some(start),
        ..config()
    })
    .unwrap();
    let ns = |n: i128| Timestamp::from_unix_nanos(T0 as i128 * 1_000_000 + n);
    assert_eq!(p.prepare(start_event(), ns(0), "u").unwrap().index(), 0);
    assert_eq!(
        p.prepare(start_event(), ns(1_234), "u").unwrap().index(),
        1_234
    );
    // Same instant: one above the previous, not a duplicate index.
    assert_eq!(
        p.prepare(start_event(), ns(1_234), "u").unwrap().index(),
        1_235
    );
    // A clock before the start time still moves forward.
    assert_eq!(
        p.prepare(start_event(), ns(-5), "u").unwrap().index(),
        1_236
    );
    assert_eq!(
        p.prepare(start_event(), ns(3_000_000_000), "u")
            .unwrap()
            .index(),
        3_000_000_000
    );
}

#[test]
fn print_events_split_to_the_largest_fitting_pieces() {
    let mut p = Preparer::new(config()).unwrap();
    let now = Timestamp::from_unix_nanos(T0 as i128 * 1_000_000 + 400_000);
    let data: Vec<u8> = (0..200 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let max = p.max_print_data(now.round_to_millis());
    assert!(max > MAX_EVENT_SIZE - 128, "max data per print {max}");
    let pieces = p.print_events(&data, now);
    assert_eq!(pieces.len(), data.len().div_ceil(max));
    let mut joined = Vec::new();
    let mut expect_offset = 0;
    for (i, e) in pieces.into_iter().enumerate() {
        let piece = e.print_data().unwrap().to_vec();
        assert_eq!(e.time(), at(T0), "rounded, shared by every piece");
        if i + 1 < data.len().div_ceil(max) {
            assert_eq!(piece.len(), max, "every piece but the last is full");
        }
        let e = p.prepare(e, now, "").unwrap();
        assert!(e.size() <= MAX_EVENT_SIZE, "event size {}", e.size());
        assert!(
            e.oneof_len() <= MAX_EVENT_SIZE,
            "record size {}",
            e.oneof_len()
        );
        let (_, ci, offset, ms, bytes) = print_fields(&e);
        assert_eq!(
            (ci, offset, ms, bytes),
            (i as i64, expect_offset, 0, piece.len() as i64)
        );
        expect_offset += piece.len() as i64;
        joined.extend_from_slice(&piece);
    }
    assert_eq!(joined, data);
    assert!(p.print_events(b"", now).is_empty());
}

#[test]
fn max_print_data_holds_for_the_widest_fields() {
    // Even with every integer at its widest, a full piece fits the record limit.
    let p = Preparer::new(config()).unwrap();
    let time = at(T0);
    let max = p.max_print_data(time);
    let worst: AuditEvent = SessionPrint {
        metadata: Metadata {
            index: i64::MIN,
            type_: event_type::SESSION_PRINT.into(),
            time,
            cluster_name: "tapelog.example".into(),
            ..Default::default()
        },
        chunk_index: -1,
        data: vec![b'x'; max],
        bytes: -1,
        delay_milliseconds: -1,
        offset: -1,
        ..Default::default()
    }
    .into();
    assert!(worst.oneof_len() <= MAX_EVENT_SIZE);
    // One byte more would not fit.
    let AuditEvent::SessionPrint(mut w) = worst else {
        unreachable!()
    };
    w.data.push(b'x');
    assert!(AuditEvent::from(*w).oneof_len() > MAX_EVENT_SIZE);
    // A cluster name too large for any data still gives pieces of one byte (no panic).
    let huge = Preparer::new(PreparerConfig::new(SID, "c".repeat(70_000))).unwrap();
    assert_eq!(huge.max_print_data(time), 1);
    assert_eq!(huge.print_events(b"ab", time).len(), 2);
}

#[test]
fn intake_counts_and_backs_off_in_simulated_time() {
    let mut i = Intake::new(IntakeConfig {
        backoff_timeout_ms: 1_000,
        backoff_duration_ms: 30_000,
    });
    assert_eq!(i.admit(None, 0), Ok(Admission::Proceed));
    // A full queue: slow, then the wait runs out at the deadline.
    assert_eq!(i.admit(None, 100), Ok(Admission::Proceed));
    i.slow_write();
    assert_eq!(i.deadline(100), 1_100);
    assert!(i.timed_out(1_100), "first timeout starts the backoff");
    assert_eq!(i.backoff_until_ms(), Some(31_100));
    // A second caller timing out at the same time does not move the backoff.
    assert!(!i.timed_out(1_200));
    assert_eq!(i.backoff_until_ms(), Some(31_100));
    // In backoff every event is lost at once.
    for t in [1_300, 20_000, 31_099] {
        assert_eq!(i.admit(None, t), Ok(Admission::Lose));
    }
    // The backoff lifts at its end.
    assert_eq!(i.admit(None, 31_100), Ok(Admission::Proceed));
    assert_eq!(i.backoff_until_ms(), None);
    let s = i.stats();
    assert_eq!(
        (s.accepted, s.lost, s.slow_writes, s.refused),
        (6, 5, 1, 0),
        "{s:?}"
    );
    i.refused();
    i.lost(2);
    i.recovered(7);
    let s = i.stats();
    assert_eq!((s.lost, s.refused, s.recoveries, s.replayed), (8, 1, 1, 7));
}

#[test]
fn intake_checks_caller_indexes() {
    let mut i = Intake::new(IntakeConfig::default());
    assert_eq!(i.admit(Some(0), 0), Ok(Admission::Proceed));
    assert_eq!(i.admit(Some(1), 0), Ok(Admission::Proceed));
    assert_eq!(
        i.admit(Some(0), 0),
        Err(IntakeError::MissingIndex { accepted: 2 })
    );
    assert_eq!(i.stats().accepted, 2, "a refused event is not accepted");
    // The writer's own events are not checked (it indexes them itself).
    assert_eq!(i.admit(None, 0), Ok(Admission::Proceed));
}

#[test]
fn stats_warnings() {
    let quiet = WriterStats {
        accepted: 100,
        slow_writes: 15,
        ..Default::default()
    };
    assert!(quiet.warnings(SID).is_empty(), "15% is not above 0.15");
    let loud = WriterStats {
        accepted: 100,
        slow_writes: 16,
        lost: 3,
        refused: 1,
        ..Default::default()
    };
    let w = loud.warnings(SID);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("lost 3 of 100") && w[0].contains(SID),
        "{}",
        w[0]
    );
    assert!(w[1].contains("16 slow writes"), "{}", w[1]);
    assert_eq!(WriterStats::default().slow_write_ratio(), 0.0);
}

fn indexed(index: i64) -> AuditEvent {
    let mut e = print_at(at(T0), b"data");
    e.set_index(index);
    e
}

#[test]
fn replay_buffer_drops_what_a_status_confirms() {
    let mut b = ReplayBuffer::new();
    assert_eq!(b.reopen(), Reopen::Create, "no status yet: create");
    for i in 0..10 {
        b.push(indexed(i));
    }
    let size = |r: std::ops::Range<i64>| r.map(|i| indexed(i).size()).sum::<usize>();
    assert_eq!(b.bytes(), size(0..10));
    // The first status only names the upload.
    assert_eq!(b.on_status("up-1", -1), 0);
    assert_eq!(b.reopen(), Reopen::Resume("up-1"));
    assert_eq!(b.len(), 10);
    // Only the first event confirmed: dropped too (upstream keeps it).
    assert_eq!(b.on_status("up-1", 0), 1);
    assert_eq!(b.on_status("up-1", 6), 6);
    let left: Vec<i64> = b.to_replay().map(AuditEvent::index).collect();
    assert_eq!(left, vec![7, 8, 9]);
    assert_eq!(b.bytes(), size(7..10));
    assert_eq!(b.confirmed(), 6);
    // A resumed stream's first status says what it already holds.
    assert_eq!(b.on_status("up-1", 8), 2);
    assert_eq!(b.to_replay().len(), 1);
    // A refused event leaves the buffer.
    b.push(indexed(10));
    assert_eq!(b.last().map(AuditEvent::index), Some(10));
    assert_eq!(b.discard_last().map(|e| e.index()), Some(10));
    assert_eq!(b.len(), 1);
    assert_eq!(b.on_status("up-1", 100), 1);
    assert!(b.is_empty());
    assert_eq!(b.bytes(), 0);
}

#[test]
fn recovery_waits_grow_linearly_to_the_cap() {
    let r = RecoveryPolicy::default();
    assert_eq!(r.attempts(), 10);
    let waits: Vec<u64> = (1..=4).map(|a| r.wait_ms(a)).collect();
    assert_eq!(waits, vec![1_000, 2_000, 3_000, 4_000]);
    assert_eq!(r.wait_ms(31), 30_000);
    let z = RecoveryPolicy {
        attempts: 0,
        step_ms: 10,
        max_ms: 25,
    };
    assert_eq!((z.attempts(), z.wait_ms(0), z.wait_ms(3)), (1, 10, 25));
}

/// (input, bytes, expected (index, ci, offset, ms, time or bytes)) of a print table row.
type PrintRow = (i64, &'static [u8], (i64, i64, i64, i64, i64));
