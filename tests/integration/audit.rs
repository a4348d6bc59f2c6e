//! The file audit log: pagination across day files and server directories, the total order,
//! the 1 MiB page cap, limits and keys, trimming, several writer processes, rotation and the
//! symlink, the sidecar index (tail updates, rebuilds, corruption), the search limiter, and
//! the `tapelog emit` / `tapelog search` commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::TestCommand;
use tapelog_audit::emit::Emitter;
use tapelog_audit::{
    AuditError, AuditLog, Condition, FileLog, FileLogConfig, LimiterConfig, Order, SearchLimiter,
    SearchPage, SearchQuery, SessionQuery,
};
use tapelog_core::audit::MAX_EVENT_BYTES_IN_RESPONSE;
use tapelog_core::audit::index::sid_hash;
use tapelog_core::{AuditEvent, Timestamp};

/// 2024-01-15T00:00:00Z.
const DAY0_MS: i64 = 1_705_276_800_000;
const DAY_MS: i64 = 86_400_000;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn event(ty: &str, code: &str, ms: i64, sid: &str, ei: i64, uid: &str) -> AuditEvent {
    let uid = if uid.is_empty() {
        String::new()
    } else {
        format!(r#","uid":"{uid}""#)
    };
    let code = if code.is_empty() {
        String::new()
    } else {
        format!(r#","code":"{code}""#)
    };
    AuditEvent::from_json(&format!(
        r#"{{"event":"{ty}"{code}{uid},"time":"{}","sid":"{sid}","ei":{ei},"user":"joe"}}"#,
        t(ms).to_rfc3339()
    ))
    .unwrap()
}

fn start(ms: i64, sid: &str, ei: i64, uid: &str) -> AuditEvent {
    event("session.start", "T2000I", ms, sid, ei, uid)
}

fn open(dir: &Path, server: &str) -> FileLog {
    FileLog::open(FileLogConfig::new(dir, server)).unwrap()
}

fn everything() -> SearchQuery {
    SearchQuery::new(t(0), t(DAY0_MS + 400 * DAY_MS))
}

fn uids(p: &SearchPage) -> Vec<String> {
    p.fields().map(|f| f.get_id().to_string()).collect()
}

/// Every page of `q`, following the keys (bounded).
fn all_pages(log: &FileLog, mut q: SearchQuery) -> Vec<SearchPage> {
    let mut pages = Vec::new();
    for _ in 0..10_000 {
        let p = log.search_events_blocking(&q).unwrap();
        let key = p.next_key.clone();
        pages.push(p);
        if key.is_empty() {
            return pages;
        }
        q.start_key = key;
    }
    panic!("search did not end");
}

fn day_file(dir: &Path, server: &str, day: &str) -> PathBuf {
    dir.join("log")
        .join(server)
        .join(format!("{day}.00:00:00.log"))
}

#[test]
fn pages_cover_days_and_servers_in_order_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let servers = [open(dir.path(), "auth-a"), open(dir.path(), "auth-b")];
    // 3 days x 2 servers, 12 events per file, written out of order; some share a time.
    let mut want: Vec<(i64, u64, i64, String, String)> = Vec::new();
    for day in 0..3i64 {
        for (s, log) in servers.iter().enumerate() {
            for i in (0..12i64).rev() {
                let ms = DAY0_MS + day * DAY_MS + 3_600_000 + (i / 2) * 1000;
                let sid = format!("sess-{s}-{}", i % 3);
                let uid = format!("d{day}-s{s}-e{i}");
                log.append(&start(ms, &sid, i, &uid)).unwrap();
                let file = format!("auth-{}/x", ["a", "b"][s]);
                want.push((ms, sid_hash(&sid), i, file, uid));
            }
        }
    }
    want.sort();
    let want: Vec<String> = want.into_iter().map(|w| w.4).collect();
    assert_eq!(want.len(), 72);
    for (d, day) in ["2024-01-15", "2024-01-16", "2024-01-17"]
        .iter()
        .enumerate()
    {
        for s in ["auth-a", "auth-b"] {
            let text = std::fs::read_to_string(day_file(dir.path(), s, day)).unwrap();
            assert_eq!(text.lines().count(), 12, "{s} {day}");
            assert!(text.contains(&format!("\"uid\":\"d{d}-")));
        }
    }

    let log = &servers[0];
    let mut q = everything();
    q.limit = 7;
    let pages = all_pages(log, q.clone());
    assert_eq!(pages.len(), 11);
    assert!(pages[..10].iter().all(|p| p.events.len() == 7));
    let got: Vec<String> = pages.iter().flat_map(uids).collect();
    assert_eq!(got, want);

    q.order = Order::Descending;
    let got: Vec<String> = all_pages(log, q).iter().flat_map(uids).collect();
    let mut rev = want.clone();
    rev.reverse();
    assert_eq!(got, rev);

    // A range inside day 2 reads only what is in it, inclusive bounds.
    let mut q = SearchQuery::new(
        t(DAY0_MS + DAY_MS + 3_600_000),
        t(DAY0_MS + DAY_MS + 3_602_000),
    );
    q.limit = 100;
    let p = log.search_events_blocking(&q).unwrap();
    assert_eq!(p.events.len(), 12, "{:?}", uids(&p));
    assert!(p.fields().all(|f| f.get_id().starts_with("d1-")));
    assert_eq!(p.next_key, "");
}

#[test]
fn ties_sort_by_session_then_index_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    let ms = DAY0_MS + 1000;
    for ei in [3, 1, 2] {
        log.append(&start(ms, "one", ei, &format!("one-{ei}")))
            .unwrap();
    }
    for sid in ["b", "a", "c"] {
        log.append(&start(ms, sid, 0, &format!("{sid}-0"))).unwrap();
    }
    let p = log.search_events_blocking(&everything()).unwrap();
    let got = uids(&p);
    let one: Vec<&String> = got.iter().filter(|u| u.starts_with("one-")).collect();
    assert_eq!(one, ["one-1", "one-2", "one-3"]);
    let mut others: Vec<(u64, String)> = ["a", "b", "c"]
        .iter()
        .map(|s| (sid_hash(s), format!("{s}-0")))
        .collect();
    others.push((sid_hash("one"), "one".into()));
    others.sort();
    let order: Vec<String> = others.into_iter().map(|o| o.1).collect();
    let seen: Vec<String> = got
        .iter()
        .map(|u| {
            if u.starts_with("one-") {
                "one".to_string()
            } else {
                u.clone()
            }
        })
        .fold(Vec::new(), |mut v, u| {
            if v.last() != Some(&u) {
                v.push(u);
            }
            v
        });
    assert_eq!(seen, order);
    // Same answer again, and from another log object.
    assert_eq!(
        uids(&log.search_events_blocking(&everything()).unwrap()),
        got
    );
    assert_eq!(
        uids(
            &open(dir.path(), "other")
                .search_events_blocking(&everything())
                .unwrap()
        ),
        got
    );
}

/// A line of `size` bytes of JSON for an event of `ms`, written into the file directly.
fn big_line(ms: i64, uid: &str, size: usize) -> String {
    let head = format!(
        r#"{{"event":"session.start","code":"T2000I","uid":"{uid}","time":"{}","ei":0,"sid":"big","user":""#,
        t(ms).to_rfc3339()
    );
    let pad = size - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

#[test]
fn pages_stay_under_one_mebibyte() {
    for big in [
        MAX_EVENT_BYTES_IN_RESPONSE - 100,
        MAX_EVENT_BYTES_IN_RESPONSE + 10,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), "auth");
        log.append(&start(DAY0_MS + 1, "s", 0, "a")).unwrap();
        let path = day_file(dir.path(), "auth", "2024-01-15");
        let mut text = std::fs::read_to_string(&path).unwrap();
        let line = big_line(DAY0_MS + 2, "b", big);
        assert_eq!(line.len(), big);
        text.push_str(&line);
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        log.append(&start(DAY0_MS + 3, "s", 2, "c")).unwrap();

        let pages = all_pages(&log, everything());
        let got: Vec<Vec<String>> = pages.iter().map(uids).collect();
        assert_eq!(got, [vec!["a"], vec!["b"], vec!["c"]], "big = {big}");
        assert_eq!(pages[1].events[0].json.len(), big);
    }

    // Many events of ~60 KB: every page is under 1 MiB, and the next event would not fit.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    let path = day_file(dir.path(), "auth", "2024-01-15");
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&big_line(
            DAY0_MS + i,
            &format!("e{i:02}"),
            60_000 + i as usize,
        ));
        text.push('\n');
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    let pages = all_pages(&log, everything());
    let all: Vec<String> = pages.iter().flat_map(uids).collect();
    assert_eq!(all, (0..40).map(|i| format!("e{i:02}")).collect::<Vec<_>>());
    assert!(pages.len() >= 3);
    for (k, p) in pages.iter().enumerate() {
        let bytes: usize = p.events.iter().map(|e| e.json.len()).sum();
        assert!(bytes < MAX_EVENT_BYTES_IN_RESPONSE, "page {k}: {bytes}");
        if let Some(next) = pages.get(k + 1) {
            assert!(bytes + next.events[0].json.len() >= MAX_EVENT_BYTES_IN_RESPONSE);
        }
    }
}

#[test]
fn empty_ranges_limits_and_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    // Nothing written at all.
    let p = log.search_events_blocking(&everything()).unwrap();
    assert!(p.events.is_empty() && p.next_key.is_empty());

    for i in 0..501 {
        log.append(&start(DAY0_MS + i, "s", i, &format!("u{i}")))
            .unwrap();
    }
    let empty = SearchQuery::new(t(DAY0_MS + 10 * DAY_MS), t(DAY0_MS + 11 * DAY_MS));
    let p = log.search_events_blocking(&empty).unwrap();
    assert_eq!((p.events.len(), p.next_key.as_str()), (0, ""));
    let backwards = SearchQuery::new(t(DAY0_MS + 5), t(DAY0_MS + 1));
    assert!(
        log.search_events_blocking(&backwards)
            .unwrap()
            .events
            .is_empty()
    );
    let mut only = everything();
    only.event_types = vec!["session.end".into()];
    assert!(log.search_events_blocking(&only).unwrap().events.is_empty());

    // limit 0 is 500.
    let p = log.search_events_blocking(&everything()).unwrap();
    assert_eq!(p.events.len(), 500);
    assert!(!p.next_key.is_empty());
    let mut q = everything();
    q.start_key = p.next_key.clone();
    let rest = log.search_events_blocking(&q).unwrap();
    assert_eq!(uids(&rest), ["u500"]);
    assert_eq!(rest.next_key, "");

    let mut q = everything();
    q.limit = 10_001;
    let e = log.search_events_blocking(&q).unwrap_err();
    assert!(matches!(e, AuditError::Query(_)) && e.is_permanent(), "{e}");
    assert!(e.to_string().contains("10001"), "{e}");

    let mut q = everything();
    q.start_key = "tl1.not-a-key!".into();
    let e = log.search_events_blocking(&q).unwrap_err();
    assert!(matches!(e, AuditError::Key(_)), "{e}");
    assert!(e.to_string().contains("tl1.not-a-key!"), "{e}");

    // A key whose event is gone: the file rewritten, then deleted.
    let mut q = everything();
    q.limit = 10;
    let key = log.search_events_blocking(&q).unwrap().next_key;
    q.start_key = key.clone();
    assert_eq!(log.search_events_blocking(&q).unwrap().events.len(), 10);
    let path = day_file(dir.path(), "auth", "2024-01-15");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"u", "\"v")).unwrap();
    let e = log.search_events_blocking(&q).unwrap_err();
    assert!(matches!(e, AuditError::KeyNoLongerMatches { .. }), "{e}");
    assert!(e.to_string().contains("start the search again"), "{e}");
    std::fs::write(&path, "").unwrap();
    let e = log.search_events_blocking(&q).unwrap_err();
    assert!(e.to_string().contains("no longer matches an event"), "{e}");
    std::fs::remove_file(&path).unwrap();
    let e = log.search_events_blocking(&q).unwrap_err();
    assert!(e.to_string().contains("is gone"), "{e}");
}

#[test]
fn upstream_checkpoint_keys_resume_after_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    for i in 0..5 {
        log.append(&start(DAY0_MS + i, "s", i, &format!("u{i}")))
            .unwrap();
    }
    // A print event has no uid: its checkpoint is the SHA-256 of its JSON.
    log.append(&event("print", "", DAY0_MS + 10, "s", 10, ""))
        .unwrap();
    log.append(&start(DAY0_MS + 11, "s", 11, "u11")).unwrap();
    let mut q = everything();
    q.start_key = "u2".into();
    assert_eq!(
        uids(&log.search_events_blocking(&q).unwrap()),
        ["u3", "u4", "", "u11"]
    );
    let all = log.search_events_blocking(&everything()).unwrap();
    let print = &all.events[5].fields;
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(print.to_json().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    q.start_key = hash;
    assert_eq!(uids(&log.search_events_blocking(&q).unwrap()), ["u11"]);
    q.start_key = "no-such-uid".into();
    let e = log.search_events_blocking(&q).unwrap_err();
    assert!(matches!(e, AuditError::KeyNoLongerMatches { .. }), "{e}");
}

#[test]
fn big_events_are_trimmed_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    let big = "y".repeat(200_000);
    let exec = AuditEvent::from_json(&format!(
        r#"{{"event":"exec","code":"T3002I","uid":"x1","time":"2024-01-15T10:00:00Z","sid":"s","command":"{big}"}}"#
    ))
    .unwrap();
    log.append(&exec).unwrap();
    assert_eq!(log.stats().trimmed, 1);
    let path = day_file(dir.path(), "auth", "2024-01-15");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.len() <= 64 * 1024 + 1, "{}", text.len());
    let p = log.search_events_blocking(&everything()).unwrap();
    assert_eq!(uids(&p), ["x1"]);
    let cmd = p.events[0].fields.get_string("command").to_string();
    assert!(cmd.len() > 30_000 && cmd.len() < big.len(), "{}", cmd.len());

    // session.join is never trimmed: too big is refused, nothing is written.
    let join = AuditEvent::from_json(&format!(
        r#"{{"event":"session.join","code":"T2001I","uid":"x2","time":"2024-01-15T10:00:01Z","user":"{big}"}}"#
    ))
    .unwrap();
    let e = log.append(&join).unwrap_err();
    assert!(matches!(e, AuditError::Event(_)) && e.is_permanent(), "{e}");
    assert!(e.to_string().contains("session.join"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(log.stats().refused, 1);

    // No type, no time: refused.
    let no_time = AuditEvent::from_json(r#"{"event":"session.start","code":"T2000I"}"#).unwrap();
    assert!(
        log.append(&no_time)
            .unwrap_err()
            .to_string()
            .contains("no time")
    );
}

#[tokio::test]
async fn emitter_writes_and_refuses_typed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    log.emit(start(DAY0_MS, "s", 0, "a")).await.unwrap();
    let no_time = AuditEvent::from_json(r#"{"event":"session.start","code":"T2000I"}"#).unwrap();
    let e = log.emit(no_time).await.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    let p = log.search_events(everything()).await.unwrap();
    assert_eq!(uids(&p), ["a"]);

    let mut cfg = FileLogConfig::new(dir.path(), "fsynced");
    cfg.durability = tapelog_audit::Durability::Fsync;
    let synced = FileLog::open(cfg).unwrap();
    synced.emit(start(DAY0_MS + 1, "s", 1, "b")).await.unwrap();
    assert_eq!(
        uids(&log.search_events(everything()).await.unwrap()),
        ["a", "b"]
    );

    for bad in ["", ".hidden", "records", "a/b"] {
        assert!(
            FileLog::open(FileLogConfig::new(dir.path(), bad)).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn rotation_at_midnight_and_the_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    log.append(&start(DAY0_MS - 1, "s", 0, "late")).unwrap();
    let link = dir.path().join("log/events.log");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("auth/2024-01-14.00:00:00.log")
    );
    log.append(&start(DAY0_MS, "s", 1, "midnight")).unwrap();
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("auth/2024-01-15.00:00:00.log")
    );
    let a = std::fs::read_to_string(day_file(dir.path(), "auth", "2024-01-14")).unwrap();
    let b = std::fs::read_to_string(day_file(dir.path(), "auth", "2024-01-15")).unwrap();
    assert!(a.contains("\"late\"") && !a.contains("midnight"));
    assert!(b.contains("\"midnight\"") && !b.contains("late"));
    // Reading through the link gives the current file.
    assert_eq!(std::fs::read_to_string(&link).unwrap(), b);
    // An older event (an import) does not move the link back, even from a new process.
    let again = open(dir.path(), "auth");
    again.append(&start(DAY0_MS - 2, "s", 2, "older")).unwrap();
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("auth/2024-01-15.00:00:00.log")
    );
    let mut cfg = FileLogConfig::new(dir.path(), "auth");
    assert!(tapelog_core::audit::files::RotationPeriod::from_seconds(3600).is_err());
    cfg.rotation_period =
        tapelog_core::audit::files::RotationPeriod::from_seconds(2 * 86_400).unwrap();
    let wide = FileLog::open(cfg).unwrap();
    // With a 48 h period the 14th's file is read for a search of the 16th (nothing there).
    let q = SearchQuery::new(t(DAY0_MS + DAY_MS), t(DAY0_MS + DAY_MS + 10));
    assert!(wide.search_events_blocking(&q).unwrap().events.is_empty());
}

fn index_dir(dir: &Path) -> PathBuf {
    dir.join("log/auth/.index")
}

#[test]
fn index_follows_appends_and_survives_loss_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    for i in 0..30 {
        log.append(&start(DAY0_MS + i, "s", i, &format!("u{i:02}")))
            .unwrap();
    }
    let mut q = everything();
    q.limit = 10;
    let p1 = log.search_events_blocking(&q).unwrap();
    assert_eq!(log.stats().index_builds, 1);
    let idx = index_dir(dir.path()).join("2024-01-15.00:00:00.log.idx");
    assert!(idx.exists());
    q.start_key = p1.next_key.clone();

    // Appended lines are added to the index on the next search.
    for i in 30..35 {
        log.append(&start(DAY0_MS + i, "s", i, &format!("u{i:02}")))
            .unwrap();
    }
    q.limit = 100;
    let p2 = log.search_events_blocking(&q).unwrap();
    assert_eq!(p2.events.len(), 25);
    assert_eq!(log.stats().index_updates, 1);
    assert_eq!(log.stats().index_builds, 1);
    let want = uids(&p2);

    // A resumed search with the index up to date reads it from disk, builds nothing.
    assert_eq!(uids(&log.search_events_blocking(&q).unwrap()), want);
    assert_eq!(log.stats().index_builds, 1);

    // Deleted: rebuilt.
    std::fs::remove_dir_all(index_dir(dir.path())).unwrap();
    assert_eq!(uids(&log.search_events_blocking(&q).unwrap()), want);
    assert_eq!(log.stats().index_builds, 2);

    // Header damaged: rebuilt.
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&idx, &bytes).unwrap();
    assert_eq!(uids(&log.search_events_blocking(&q).unwrap()), want);
    assert_eq!(log.stats().index_builds, 3);

    // Entries damaged (header intact): caught when read, rebuilt, the search restarted.
    let mut bytes = std::fs::read(&idx).unwrap();
    for b in &mut bytes[64..] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(&idx, &bytes).unwrap();
    assert_eq!(uids(&log.search_events_blocking(&q).unwrap()), want);
    assert_eq!(log.stats().index_builds, 4);
    assert!(log.stats().search_restarts >= 1);

    // Entries swapped (each with a valid checksum): the lines read back disagree, rebuilt.
    let mut bytes = std::fs::read(&idx).unwrap();
    let (a, b) = (64 + 12 * 48, 64 + 13 * 48);
    let first = bytes[a..b].to_vec();
    bytes.copy_within(b..b + 48, a);
    bytes[b..b + 48].copy_from_slice(&first);
    std::fs::write(&idx, &bytes).unwrap();
    assert_eq!(uids(&log.search_events_blocking(&q).unwrap()), want);
    assert_eq!(log.stats().index_builds, 5);

    // The log rewritten with other bytes of a greater length: the fingerprint catches it.
    let path = day_file(dir.path(), "auth", "2024-01-15");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"user\":\"joe\"", "\"user\":\"joseph\""),
    )
    .unwrap();
    let mut fresh = everything();
    fresh.limit = 100;
    let p = log.search_events_blocking(&fresh).unwrap();
    assert_eq!(p.events.len(), 35);
    assert!(p.fields().all(|f| f.get_string("user") == "joseph"));
}

#[test]
fn torn_and_garbage_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    log.append(&start(DAY0_MS, "s", 0, "a")).unwrap();
    let path = day_file(dir.path(), "auth", "2024-01-15");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("this is not json\n{\"event\":\"session.start\",\"ti");
    std::fs::write(&path, &text).unwrap();
    // The torn tail is not a complete line: not read, not counted yet.
    let p = log.search_events_blocking(&everything()).unwrap();
    assert_eq!(uids(&p), ["a"]);
    assert_eq!(log.stats().unparsable_lines, 1);
    // A new writer ends the torn line first, so that its own event is a line of its own.
    let next = open(dir.path(), "auth");
    next.append(&start(DAY0_MS + 1, "s", 1, "b")).unwrap();
    let p = next.search_events_blocking(&everything()).unwrap();
    assert_eq!(uids(&p), ["a", "b"]);
    assert_eq!(next.stats().unparsable_lines, 1, "{:?}", next.stats());
}

#[tokio::test]
async fn limiter_burst_refusal_refill() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    log.append(&start(DAY0_MS, "s", 0, "a")).unwrap();
    let now = Arc::new(Mutex::new(t(DAY0_MS)));
    let clock = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap())
    };
    let limited = SearchLimiter::with_clock(
        log,
        LimiterConfig {
            refill_time: Duration::from_secs(1),
            refill_amount: 1,
            burst: 2,
        },
        clock,
    )
    .unwrap();
    assert_eq!(
        uids(&limited.search_events(everything()).await.unwrap()),
        ["a"]
    );
    let sessions = SessionQuery::new(t(0), t(DAY0_MS + DAY_MS));
    assert!(
        limited
            .search_session_events(sessions.clone())
            .await
            .is_ok()
    );
    let e = limited.search_events(everything()).await.unwrap_err();
    assert!(
        matches!(e, AuditError::RateLimited) && e.is_transient(),
        "{e}"
    );
    assert_eq!(e.to_string(), "rate limit exceeded");
    *now.lock().unwrap() = t(DAY0_MS + 999);
    assert!(limited.search_session_events(sessions).await.is_err());
    *now.lock().unwrap() = t(DAY0_MS + 1000);
    assert!(limited.search_events(everything()).await.is_ok());
    assert!(limited.search_events(everything()).await.is_err());
    // Events pass through untouched.
    limited.emit(start(DAY0_MS + 1, "s", 1, "b")).await.unwrap();
    assert_eq!(
        uids(
            &limited
                .inner()
                .search_events_blocking(&everything())
                .unwrap()
        ),
        ["a", "b"]
    );
}

#[test]
fn session_search_by_type_session_and_condition() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "auth");
    let end = |ms, sid: &str, uid: &str, user: &str| {
        AuditEvent::from_json(&format!(
            r#"{{"event":"session.end","code":"T2004I","uid":"{uid}","time":"{}","sid":"{sid}","user":"{user}","participants":["{user}","ann"]}}"#,
            t(ms).to_rfc3339()
        ))
        .unwrap()
    };
    log.append(&start(DAY0_MS, "s1", 0, "st")).unwrap();
    log.append(&end(DAY0_MS + 1, "s1", "e1", "bob")).unwrap();
    log.append(&end(DAY0_MS + 2, "s2", "e2", "joe")).unwrap();
    log.append(
        &AuditEvent::from_json(&format!(
            r#"{{"event":"db.session.end","code":"TDB01I","uid":"e3","time":"{}","sid":"s3","user":"bob"}}"#,
            t(DAY0_MS + 3).to_rfc3339()
        ))
        .unwrap(),
    )
    .unwrap();
    let q = SessionQuery::new(t(0), t(DAY0_MS + DAY_MS));
    assert_eq!(
        uids(&log.search_session_events_blocking(&q).unwrap()),
        ["e1", "e2", "e3"]
    );
    let mut by_sid = q.clone();
    by_sid.session_id = "s2".into();
    assert_eq!(
        uids(&log.search_session_events_blocking(&by_sid).unwrap()),
        ["e2"]
    );
    let mut bob = q.clone();
    bob.condition = Some(Condition::equals("user", "bob"));
    bob.order = Order::Descending;
    assert_eq!(
        uids(&log.search_session_events_blocking(&bob).unwrap()),
        ["e3", "e1"]
    );
    let mut ann = q.clone();
    ann.condition = Some(Condition::And(vec![
        Condition::Contains {
            field: "participants".into(),
            value: "ann".into(),
        },
        Condition::Not(Box::new(Condition::equals("user", "joe"))),
    ]));
    ann.limit = 1;
    let p = log.search_session_events_blocking(&ann).unwrap();
    assert_eq!(uids(&p), ["e1"]);
    ann.start_key = p.next_key;
    let p = log.search_session_events_blocking(&ann).unwrap();
    assert!(p.events.is_empty() && p.next_key.is_empty());
    assert_eq!(
        log.search_session_events_blocking(&q)
            .unwrap()
            .to_events()
            .unwrap()[0]
            .event_type(),
        "session.end"
    );
}

fn tapelog() -> TestCommand {
    TestCommand::new()
}

#[test]
fn writer_processes_do_not_interleave() {
    const PROCS: usize = 4;
    const EACH: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for p in 0..PROCS {
        let input = dir.path().join(format!("in-{p}.jsonl"));
        let mut text = String::new();
        for i in 0..EACH {
            // Two days, so that the processes also rotate; a long field makes lines larger
            // than a pipe's atomic write.
            let ms = DAY0_MS + (i as i64 % 2) * DAY_MS + i as i64;
            text.push_str(&format!(
                r#"{{"event":"exec","code":"T3002I","uid":"p{p}-{i}","time":"{}","sid":"s{p}","ei":{i},"command":"{}"}}"#,
                t(ms).to_rfc3339(),
                "c".repeat(5000 + p * 100)
            ));
            text.push('\n');
        }
        std::fs::write(&input, text).unwrap();
        let child = Command::new(crate::util::tapelog_bin())
            .args(["emit", "--server-id", "shared", "--data-dir"])
            .arg(dir.path())
            .arg(&input)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("accepted {EACH}, rejected 0")),
            "{err}"
        );
    }
    let mut seen = HashSet::new();
    for day in ["2024-01-15", "2024-01-16"] {
        let text = std::fs::read_to_string(day_file(dir.path(), "shared", day)).unwrap();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let e = AuditEvent::from_json(line).unwrap_or_else(|e| panic!("{e}: {line:.200}"));
            assert!(seen.insert(e.id().to_string()), "twice: {}", e.id());
        }
    }
    assert_eq!(seen.len(), PROCS * EACH);
    let log = open(dir.path(), "shared");
    let mut q = everything();
    q.limit = 10_000;
    let n: usize = all_pages(&log, q).iter().map(|p| p.events.len()).sum();
    assert_eq!(n, PROCS * EACH);
}

#[test]
fn cli_emit_reports_bad_lines_and_search_prints_pages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("in.jsonl");
    let mut lines = Vec::new();
    for i in 0..5 {
        lines.push(format!(
            r#"{{"event":"session.start","code":"T2000I","time":"{}","sid":"s","ei":{i},"user":"joe"}}"#,
            t(DAY0_MS + i).to_rfc3339()
        ));
    }
    lines.insert(2, "{not json".into());
    lines.insert(4, String::new());
    lines.insert(
        6,
        r#"{"event":"exec","time":"2024-01-15T00:00:01Z"}"#.into(),
    );
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = tapelog()
        .args([
            "emit",
            "--server-id",
            "node1",
            "--cluster-name",
            "c1",
            "--data-dir",
        ])
        .arg(&data)
        .arg(&input)
        .output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line 3: "), "{err}");
    assert!(
        err.contains("line 7: missing mandatory event code field for exec event"),
        "{err}"
    );
    assert!(err.contains("accepted 5, rejected 2"), "{err}");

    let search = |args: &[&str]| {
        let out = tapelog()
            .arg("search")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .run();
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (stdout, stderr) = search(&["--json", "--limit", "2", "--from", "2024-01-15"]);
    let events: Vec<AuditEvent> = stdout
        .lines()
        .map(|l| AuditEvent::from_json(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].cluster_name(), "c1");
    assert_eq!(events[0].id().len(), 36);
    let key = stderr
        .lines()
        .find_map(|l| l.strip_prefix("next-key: "))
        .unwrap()
        .to_string();
    assert!(key.starts_with("tl1."), "{stderr}");
    let (stdout, stderr) = search(&["--json", "--limit", "2", "--start-key", &key]);
    let ei: Vec<i64> = stdout
        .lines()
        .map(|l| AuditEvent::from_json(l).unwrap().index())
        .collect();
    assert_eq!(ei, [2, 3]);
    assert!(stderr.contains("next-key: tl1."));

    let (stdout, stderr) = search(&["--json", "--all", "--limit", "2", "--order", "desc"]);
    let ei: Vec<i64> = stdout
        .lines()
        .map(|l| AuditEvent::from_json(l).unwrap().index())
        .collect();
    assert_eq!(ei, [4, 3, 2, 1, 0]);
    assert!(
        stderr.contains("next-key: \n") || stderr.ends_with("next-key: \n"),
        "{stderr}"
    );

    let (table, _) = search(&["--to", "2024-01-15", "--type", "session.start"]);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("TIME"), "{table}");
    assert_eq!(rows.len(), 1 + 5 + 1, "{table}");
    assert!(rows[1].contains("session.start") && rows[1].contains("T2000I"));
    assert!(
        rows[1].contains("joe") && rows[1].ends_with(" s"),
        "{table}"
    );
    assert_eq!(*rows.last().unwrap(), "(end of results)");
    assert!(
        !data
            .join("log")
            .join(tapelog_audit::default_server_id())
            .exists()
    );

    let out = tapelog()
        .args(["search", "--start-key", "tl1.@@", "--data-dir"])
        .arg(&data)
        .output();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed page key \"tl1.@@\""));
    let out = tapelog()
        .args(["search", "--from", "yesterday", "--data-dir"])
        .arg(&data)
        .output();
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"yesterday\" is not a time"));
}

/// An event that alone is over the 1 MiB page cap (stored by a log whose line limit allows it)
/// comes back trimmed to fit, and `teleport_audit_queried_trimmed_events` counts it.
#[tokio::test]
async fn an_event_over_the_page_cap_is_trimmed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = FileLogConfig::new(dir.path(), "auth");
    cfg.max_line_size = 4 << 20;
    let log = FileLog::open(cfg).unwrap();
    let big = AuditEvent::from_json(&format!(
        r#"{{"event":"exec","code":"T3002I","uid":"big","time":"{}","command":"{}"}}"#,
        t(DAY0_MS).to_rfc3339(),
        "x".repeat(1_500_000)
    ))
    .unwrap();
    log.emit(big).await.unwrap();
    log.emit(start(DAY0_MS + 1, "s", 0, "after")).await.unwrap();
    let metrics = log.config().metrics.clone();
    assert_eq!(metrics.audit_queried_trimmed_events.get(), 0);
    let pages = all_pages(&log, everything());
    let got: Vec<String> = pages.iter().flat_map(uids).collect();
    assert_eq!(got, ["big", "after"]);
    let first = &pages[0];
    assert_eq!(first.events.len(), 1);
    let json = &first.events[0].json;
    assert!(json.len() < 1 << 20, "{} bytes", json.len());
    assert!(json.contains(r#""event":"exec""#), "{}", &json[..200]);
    assert!(metrics.audit_queried_trimmed_events.get() >= 1);
}
