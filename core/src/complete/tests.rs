//! Tests of the completer's rules, driven with explicit times and ids.

use super::*;
use crate::event::{
    FieldsError, SessionJoin, UserMetadata, WindowsDesktopSessionStart, check_and_set_event_fields,
    event_code, event_type,
};
use crate::vectors::{SESSION_ID, START_MILLIS, sample_session};

const HOUR: i64 = 60 * 60 * 1000;
const NOW: i64 = 1_700_000_000_000;

#[test]
fn select_stops_at_the_first_upload_within_the_grace() {
    let rules = Rules::new(24 * HOUR);
    // Oldest first; the third is within the grace, so the fourth (older, out of order) is not
    // looked at either: upstream breaks, trusting the order.
    let initiated = [
        NOW - 50 * HOUR,
        NOW - 25 * HOUR,
        NOW - 24 * HOUR,
        NOW - 30 * HOUR,
    ];
    let picked = rules.select(NOW, &initiated, |t| *t);
    assert_eq!(picked, &initiated[..2]);
    // Exactly at the grace counts as within (`<=`).
    assert!(rules.initiated_within_grace(NOW, NOW - 24 * HOUR));
    assert!(!rules.initiated_within_grace(NOW, NOW - 24 * HOUR - 1));
}

#[test]
fn select_without_grace_takes_everything() {
    let initiated = [NOW - 1, NOW, NOW + 5];
    assert_eq!(Rules::new(0).select(NOW, &initiated, |t| *t).len(), 3);
    assert_eq!(Rules::new(-1).select(NOW, &initiated, |t| *t).len(), 3);
    assert_eq!(Rules::default().grace_ms, 24 * HOUR);
    assert!(Rules::default().select(NOW, &initiated, |t| *t).is_empty());
}

#[test]
fn recent_part_is_skipped_by_its_newest_time() {
    let rules = Rules::new(HOUR);
    // The newest of the parts decides, whatever their order.
    let check = rules.check_parts(NOW, [NOW - 5 * HOUR, NOW - HOUR + 1, NOW - 3 * HOUR]);
    assert_eq!(
        check,
        PartsCheck::Recent {
            newest_ms: NOW - HOUR + 1
        }
    );
    let check = rules.check_parts(NOW, [NOW - 5 * HOUR, NOW - HOUR - 1]);
    assert_eq!(
        check,
        PartsCheck::Complete {
            parts: 2,
            emit_event: true
        }
    );
    // No grace: even a part written now is completed.
    assert_eq!(
        Rules::new(0).check_parts(NOW, [NOW]),
        PartsCheck::Complete {
            parts: 1,
            emit_event: true
        }
    );
}

#[test]
fn no_parts_completes_without_an_event() {
    for grace in [0, HOUR, 24 * HOUR] {
        assert_eq!(
            Rules::new(grace).check_parts(NOW, []),
            PartsCheck::Complete {
                parts: 0,
                emit_event: false
            }
        );
    }
}

#[test]
fn session_upload_event_has_upstreams_fields() {
    let uid = "5f3f6a7e-0000-4000-8000-000000000001";
    let e = session_upload_event(
        Timestamp::from_unix_millis(NOW),
        uid,
        "cluster.example",
        SESSION_ID,
        "file:///data/9b6ec731-80f7-4751-9154-4214ecdc812a",
    );
    let AuditEvent::SessionUpload(u) = &e else {
        panic!("not a session.upload: {e:?}");
    };
    assert_eq!(u.metadata.type_, "session.upload");
    assert_eq!(u.metadata.code, "T2005I");
    assert_eq!(u.metadata.index, 2_147_483_647);
    assert_eq!(u.metadata.id, uid);
    assert_eq!(u.metadata.time.unix_millis(), NOW);
    assert_eq!(u.metadata.cluster_name, "cluster.example");
    assert_eq!(u.session_metadata.session_id, SESSION_ID);
    assert_eq!(
        e.to_json(),
        "{\"ei\":2147483647,\"event\":\"session.upload\",\
         \"uid\":\"5f3f6a7e-0000-4000-8000-000000000001\",\"code\":\"T2005I\",\
         \"time\":\"2023-11-14T22:13:20Z\",\"cluster_name\":\"cluster.example\",\
         \"sid\":\"9b6ec731-80f7-4751-9154-4214ecdc812a\",\
         \"url\":\"file:///data/9b6ec731-80f7-4751-9154-4214ecdc812a\"}"
    );
}

#[test]
fn check_and_set_fills_only_empty_fields() {
    let now = Timestamp::from_unix_nanos(NOW as i128 * 1_000_000 + 600_000);
    let mut e = session_upload_event(Timestamp::ZERO, "", "", SESSION_ID, "u");
    check_and_set_event_fields(&mut e, now, "the-uid", "c1").unwrap();
    assert_eq!(e.id(), "the-uid");
    // Rounded to the millisecond, as upstream's clock.Now().UTC().Round(time.Millisecond).
    assert_eq!(e.time().unix_nanos(), (NOW as i128 + 1) * 1_000_000);
    assert_eq!(e.cluster_name(), "c1");
    // Set fields stay.
    check_and_set_event_fields(&mut e, Timestamp::ZERO, "other", "c2").unwrap();
    assert_eq!(e.id(), "the-uid");
    assert_eq!(e.cluster_name(), "c1");
    assert_eq!(e.time().unix_millis(), NOW + 1);
}

#[test]
fn check_and_set_refuses_missing_type_or_code() {
    let now = Timestamp::from_unix_millis(NOW);
    let mut e: AuditEvent = SessionJoin::default().into();
    assert_eq!(
        check_and_set_event_fields(&mut e, now, "u", "c"),
        Err(FieldsError::MissingType)
    );
    let mut e: AuditEvent = SessionJoin {
        metadata: Metadata {
            type_: event_type::SESSION_JOIN.into(),
            ..Metadata::default()
        },
        ..SessionJoin::default()
    }
    .into();
    let err = check_and_set_event_fields(&mut e, now, "u", "c").unwrap_err();
    assert_eq!(
        err,
        FieldsError::MissingCode {
            event_type: "session.join".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "missing mandatory event code field for session.join event"
    );
}

#[test]
fn check_and_set_gives_print_events_no_uid() {
    let mut e = crate::vectors::print(3, 0, 0, 0, b"x");
    e.set_time(Timestamp::ZERO);
    check_and_set_event_fields(&mut e, Timestamp::from_unix_millis(NOW), "u", "c").unwrap();
    assert_eq!(e.id(), "");
    assert_eq!(e.code(), "");
    assert_eq!(e.time().unix_millis(), NOW);
}

fn recover(events: &[AuditEvent]) -> SessionEndRecovery {
    let mut r = SessionEndRecovery::new();
    for e in events {
        r.feed(e);
    }
    r
}

fn join(user: &str, ms: i64) -> AuditEvent {
    SessionJoin {
        metadata: Metadata {
            type_: event_type::SESSION_JOIN.into(),
            code: event_code::SESSION_JOIN.into(),
            time: Timestamp::from_unix_millis(START_MILLIS + ms),
            ..Metadata::default()
        },
        user: UserMetadata {
            user: user.into(),
            ..UserMetadata::default()
        },
        ..SessionJoin::default()
    }
    .into()
}

#[test]
fn recording_with_an_end_needs_none() {
    let r = recover(&sample_session(3));
    assert!(r.has_end());
    assert_eq!(r.finish(Timestamp::from_unix_millis(NOW), "u"), None);
}

#[test]
fn events_after_the_end_are_ignored() {
    let mut events = sample_session(1);
    events.push(join("late", 10_000));
    let r = recover(&events);
    assert_eq!(r.events(), 4);
    assert!(r.has_end());
}

#[test]
fn missing_end_is_synthesised_from_the_start() {
    let mut events = sample_session(4);
    let end = events.pop().unwrap();
    let AuditEvent::SessionStart(start) = &mut events[0] else {
        panic!("first event is not a start");
    };
    start.initial_command = vec!["bash".into(), "-l".into()];
    start.connection.remote_addr = "10.0.0.1:5000".into();
    let start = start.clone();
    let last_ms = events.last().unwrap().time().unix_millis();
    let r = recover(&events);
    assert!(!r.has_end());
    assert!(r.has_start());
    let uid = "11111111-2222-4333-8444-555555555555";
    let got = r.finish(Timestamp::from_unix_millis(NOW), uid).unwrap();
    let AuditEvent::SessionEnd(got) = got else {
        panic!("not a session.end: {got:?}");
    };
    assert_eq!(got.metadata.type_, "session.end");
    assert_eq!(got.metadata.code, "T2004I");
    assert_eq!(got.metadata.id, uid);
    assert_eq!(got.metadata.index, 0);
    assert_eq!(got.metadata.cluster_name, start.metadata.cluster_name);
    assert_eq!(got.metadata.time.unix_millis(), last_ms);
    assert_eq!(got.end_time.unix_millis(), last_ms);
    assert_eq!(got.start_time, start.metadata.time);
    assert_eq!(got.user, start.user);
    assert_eq!(got.session, start.session);
    assert_eq!(got.server, start.server);
    assert_eq!(got.connection, start.connection);
    assert_eq!(got.initial_command, start.initial_command);
    assert_eq!(got.session_recording, "node");
    assert!(got.interactive);
    assert_eq!(got.participants, vec!["joe".to_string()]);
    // Apart from id, index and what the writer knew at the end, the recovered event is the
    // end the writer would have written.
    let AuditEvent::SessionEnd(mut want) = end else {
        panic!("sample session does not end with session.end");
    };
    want.metadata.id = uid.into();
    want.metadata.index = 0;
    want.initial_command = start.initial_command.clone();
    want.connection = start.connection.clone();
    // The writer ended a little after its last print; the recovery can only know the print.
    want.metadata.time = Timestamp::from_unix_millis(last_ms);
    want.end_time = want.metadata.time;
    assert_eq!(*got, *want);
}

#[test]
fn participants_are_start_user_and_joins_deduplicated() {
    let mut events = sample_session(2);
    events.pop();
    events.insert(1, join("alice", 5));
    events.push(join("joe", 500));
    events.push(join("bob", 600));
    events.push(join("alice", 700));
    let r = recover(&events);
    let Some(AuditEvent::SessionEnd(end)) = r.finish(Timestamp::from_unix_millis(NOW), "u") else {
        panic!("no session.end");
    };
    assert_eq!(end.participants, vec!["joe", "alice", "bob"]);
    assert_eq!(end.end_time.unix_millis(), START_MILLIS + 700);
}

#[test]
fn non_interactive_session_without_terminal_size() {
    let mut events = sample_session(0);
    events.truncate(1);
    let AuditEvent::SessionStart(s) = &mut events[0] else {
        panic!("first event is not a start");
    };
    s.terminal_size.clear();
    let r = recover(&events);
    let Some(AuditEvent::SessionEnd(end)) = r.finish(Timestamp::from_unix_millis(NOW), "u") else {
        panic!("no session.end");
    };
    assert!(!end.interactive);
    // Only the start: start and end times are the same.
    assert_eq!(end.start_time, end.end_time);
}

#[test]
fn no_start_or_no_events_gives_none() {
    let now = Timestamp::from_unix_millis(NOW);
    assert_eq!(SessionEndRecovery::new().finish(now, "u"), None);
    let mut events = sample_session(3);
    events.remove(0);
    events.pop();
    let r = recover(&events);
    assert!(!r.has_start());
    assert!(r.events() > 0);
    assert_eq!(r.finish(now, "u"), None);
}

fn desktop_start() -> AuditEvent {
    WindowsDesktopSessionStart {
        metadata: Metadata {
            type_: event_type::WINDOWS_DESKTOP_SESSION_START.into(),
            code: "TDP00I".into(),
            id: "d0000000-0000-4000-8000-000000000000".into(),
            time: Timestamp::from_unix_millis(START_MILLIS),
            cluster_name: "desk.example".into(),
            ..Metadata::default()
        },
        user: UserMetadata {
            user: "ada".into(),
            ..UserMetadata::default()
        },
        session: crate::event::SessionMetadata {
            session_id: SESSION_ID.into(),
            ..Default::default()
        },
        windows_desktop_service: "wds-1".into(),
        desktop_addr: "10.1.1.1:3389".into(),
        domain: "CORP".into(),
        windows_user: "Administrator".into(),
        desktop_labels: [("env".to_string(), "prod".to_string())].into(),
        desktop_name: "win-01".into(),
        ..WindowsDesktopSessionStart::default()
    }
    .into()
}

#[test]
fn desktop_session_end_is_recovered() {
    let events = vec![
        desktop_start(),
        join("eve", 10),
        crate::vectors::print(2, 0, 0, 900, b"frame"),
    ];
    let r = recover(&events);
    let uid = "22222222-2222-4333-8444-555555555555";
    let got = r.finish(Timestamp::from_unix_millis(NOW), uid).unwrap();
    assert_eq!(
        got.to_json(),
        "{\"ei\":0,\"event\":\"windows.desktop.session.end\",\
         \"uid\":\"22222222-2222-4333-8444-555555555555\",\"code\":\"TDP01I\",\
         \"time\":\"2021-11-18T15:34:00.692Z\",\"cluster_name\":\"desk.example\",\
         \"user\":\"ada\",\"sid\":\"9b6ec731-80f7-4751-9154-4214ecdc812a\",\
         \"windows_desktop_service\":\"wds-1\",\"desktop_addr\":\"10.1.1.1:3389\",\
         \"windows_domain\":\"CORP\",\"windows_user\":\"\",\
         \"desktop_labels\":{\"env\":\"prod\"},\
         \"session_start\":\"2021-11-18T15:33:59.792Z\",\
         \"session_stop\":\"2021-11-18T15:34:00.692Z\",\
         \"desktop_name\":\"win-01 (recovered)\",\"recorded\":true,\
         \"participants\":[\"ada\"]}"
    );
}

#[test]
fn ssh_start_wins_over_desktop_start() {
    let mut events = vec![desktop_start()];
    events.extend(sample_session(1).into_iter().take(2));
    let got = recover(&events).finish(Timestamp::from_unix_millis(NOW), "u");
    assert_eq!(
        got.map(|e| e.event_type().to_string()).as_deref(),
        Some("session.end")
    );
}

#[test]
fn a_desktop_end_also_counts_as_an_end() {
    let mut end = crate::event::WindowsDesktopSessionEnd::default();
    end.metadata.type_ = event_type::WINDOWS_DESKTOP_SESSION_END.into();
    let events = vec![desktop_start(), end.into()];
    let r = recover(&events);
    assert!(r.has_end());
    assert_eq!(r.finish(Timestamp::from_unix_millis(NOW), "u"), None);
}

#[test]
fn last_event_without_time_gets_now() {
    let mut events = sample_session(1);
    events.pop();
    events.last_mut().unwrap().set_time(Timestamp::ZERO);
    let now = Timestamp::from_unix_nanos(NOW as i128 * 1_000_000 + 400_000);
    let Some(AuditEvent::SessionEnd(end)) = recover(&events).finish(now, "u") else {
        panic!("no session.end");
    };
    assert_eq!(end.metadata.time.unix_millis(), NOW);
    // The end time is the last event's, zero as upstream.
    assert!(end.end_time.is_zero());
}

#[test]
fn participants_are_bounded() {
    let mut events = sample_session(0);
    events.pop();
    for i in 0..MAX_PARTICIPANTS + 10 {
        events.push(join(&format!("u{i}"), i as i64));
    }
    let r = recover(&events);
    assert_eq!(r.dropped_participants(), 11);
    let Some(AuditEvent::SessionEnd(end)) = r.finish(Timestamp::from_unix_millis(NOW), "u") else {
        panic!("no session.end");
    };
    assert_eq!(end.participants.len(), MAX_PARTICIPANTS);
    assert_eq!(end.participants[0], "joe");
}

#[test]
fn jitter_stays_in_its_window() {
    let period = 5 * 60 * 1000;
    for r in [0u64, 1, 12_345, u64::MAX / 3, u64::MAX] {
        let h = half_jitter_ms(period, r);
        assert!((period / 2..period).contains(&h), "{h}");
        let s = seventh_jitter_ms(period, r);
        assert!((period - period / 7..period).contains(&s), "{s}");
    }
    assert_eq!(half_jitter_ms(period, 0), period / 2);
    assert_ne!(half_jitter_ms(period, 1), half_jitter_ms(period, 2));
    // Periods too short to jitter are kept as they are.
    assert_eq!(seventh_jitter_ms(3, 99), 3);
    assert_eq!(half_jitter_ms(0, 99), 0);
}
