//! The reading commands of the real `tapelog` binary on a Teleport cluster (`--teleport`,
//! the Auth double): `play` and `export` from the typed `StreamSessionEvents`, `search` and
//! `sessions list` from `GetUnstructuredEvents` pages, and the errors a user sees.

use std::path::{Path, PathBuf};

use tapelog_core::codec::{WriterConfig, encode_recording};
use tapelog_core::{AuditEvent, Timestamp};
use tapelog_teleport::double::{Double, files};

use crate::util::serve::{session, uuid};
use crate::util::tapelog;

/// A running double and the runtime its tasks run on.
pub struct Cluster {
    /// The double.
    pub double: Double,
    _rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// A double with no events.
    pub fn start() -> Cluster {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let double = rt.block_on(Double::start()).unwrap();
        Cluster { double, _rt: rt }
    }

    /// `--teleport ADDR --teleport-identity FILE`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--teleport".into(),
            self.double.addr(),
            "--teleport-identity".into(),
            path(&self.double.identity_file()),
        ]
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn event(v: serde_json::Value) -> AuditEvent {
    AuditEvent::from_json(&v.to_string()).unwrap()
}

fn at(seconds: i64) -> String {
    Timestamp::from_unix_nanos(i128::from(seconds) * 1_000_000_000).to_rfc3339()
}

/// A session of `prints` prints stored in the cluster under a new id.
fn stored_session(c: &Cluster, prints: usize) -> (String, Vec<AuditEvent>) {
    let sid = uuid();
    let events = session(&sid, prints);
    c.double.add_session(&sid, events.clone());
    (sid, events)
}

#[test]
fn play_teleport_writes_the_sessions_output_exactly() {
    let c = Cluster::start();
    let (sid, events) = stored_session(&c, 40);
    let expected: Vec<u8> = events
        .iter()
        .filter_map(|e| e.print_data())
        .flatten()
        .copied()
        .collect();
    assert!(expected.len() > 1000);
    let out = tapelog(["play", "--max-idle", "0"])
        .args(c.args())
        .arg(&sid)
        .run();
    assert_eq!(
        out.stdout,
        expected,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.double.calls("StreamSessionEvents"), 1);
}

#[test]
fn export_teleport_matches_a_local_export_in_every_format() {
    let c = Cluster::start();
    let (sid, events) = stored_session(&c, 25);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("local.tar");
    std::fs::write(
        &file,
        encode_recording(&events, WriterConfig::default()).unwrap(),
    )
    .unwrap();
    for format in ["json", "text", "proto", "asciicast"] {
        let local = tapelog(["export", "--format", format]).arg(&file).run();
        let remote = tapelog(["export", "--format", format])
            .args(c.args())
            .arg(&sid)
            .run();
        assert!(!local.stdout.is_empty(), "{format}");
        assert_eq!(remote.stdout, local.stdout, "--format {format}");
    }
    // The JSON lines are the cluster's events, print data and all.
    let json = tapelog(["export", "--format", "json"])
        .args(c.args())
        .arg(&sid)
        .stdout();
    let lines: Vec<&str> = json.lines().collect();
    let want: Vec<String> = events.iter().map(AuditEvent::to_json).collect();
    assert_eq!(lines, want);
    // The same with --teleport-cert/--teleport-key/--teleport-ca.
    let files_args = [
        "--teleport".to_string(),
        c.double.addr(),
        "--teleport-cert".into(),
        path(&c.double.file(files::CERT)),
        "--teleport-key".into(),
        path(&c.double.file(files::KEY)),
        "--teleport-ca".into(),
        path(&c.double.file(files::CA)),
    ];
    let text = tapelog(["export", "--format", "text"])
        .args(files_args)
        .arg(&sid)
        .run();
    let local = tapelog(["export", "--format", "text"]).arg(&file).run();
    assert_eq!(text.stdout, local.stdout);
}

/// `n` logins, one a second from `base`, uids `tp-000`…
fn logins(base: i64, n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            event(serde_json::json!({"event": "user.login", "code": "T1000I",
                "uid": format!("tp-{i:03}"), "time": at(base + i as i64),
                "user": format!("u{i}"), "success": true}))
        })
        .collect()
}

fn uids(json_lines: &str) -> Vec<String> {
    json_lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["uid"].as_str().unwrap().to_string()
        })
        .collect()
}

fn next_key(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .find_map(|l| l.strip_prefix("next-key: "))
        .unwrap_or_else(|| panic!("no next-key in {text}"))
        .to_string()
}

#[test]
fn search_teleport_follows_the_clusters_keys_across_pages() {
    let c = Cluster::start();
    let base = 1_700_000_000;
    c.double.add_events(logins(base, 25));
    let want: Vec<String> = (0..25).map(|i| format!("tp-{i:03}")).collect();

    let all = tapelog(["search", "--all", "--json", "--limit", "7"])
        .args(c.args())
        .run();
    assert_eq!(uids(&String::from_utf8(all.stdout).unwrap()), want);
    assert_eq!(next_key(&all.stderr), "");
    assert_eq!(c.double.calls("GetUnstructuredEvents"), 4, "7 + 7 + 7 + 4");

    // One page, then the next from its key; newest first.
    let first = tapelog(["search", "--json", "--limit", "10", "--order", "desc"])
        .args(c.args())
        .run();
    let key = next_key(&first.stderr);
    assert!(!key.is_empty());
    let second = tapelog(["search", "--json", "--limit", "10", "--order", "desc"])
        .args(c.args())
        .args(["--start-key", &key])
        .run();
    let mut got = uids(&String::from_utf8(first.stdout).unwrap());
    got.extend(uids(&String::from_utf8(second.stdout).unwrap()));
    let newest: Vec<String> = want.iter().rev().take(20).cloned().collect();
    assert_eq!(got, newest);

    // A time range and a type, as the cluster filters them; the table for people.
    let table = tapelog(["search", "--type", "user.login"])
        .args(c.args())
        .args(["--from", &at(base + 20), "--to", &at(base + 22)])
        .stdout();
    assert_eq!(table.matches("user.login").count(), 3, "{table}");
    assert!(
        table.contains("u21") && table.ends_with("(end of results)\n"),
        "{table}"
    );
}

fn session_end(sid: &str, user: &str, time: i64) -> AuditEvent {
    event(serde_json::json!({"event": "session.end", "code": "T2004I",
        "uid": format!("end-{sid}"), "time": at(time), "sid": sid, "user": user,
        "login": "root", "server_hostname": "node1",
        "session_start": at(time - 65), "session_stop": at(time)}))
}

#[test]
fn sessions_list_teleport_lists_the_clusters_session_ends() {
    let c = Cluster::start();
    let base = 1_700_000_000;
    let (s1, s2) = (uuid(), uuid());
    let mut events = logins(base, 5);
    events.push(session_end(&s1, "alice", base + 10));
    events.push(session_end(&s2, "bob", base + 20));
    events.push(event(
        serde_json::json!({"event": "db.session.end", "code": "TDB01I",
        "uid": "db-end", "time": at(base + 30), "sid": "db-session", "user": "carol",
        "db_user": "postgres", "db_service": "pg"}),
    ));
    c.double.add_events(events);

    let json = tapelog(["sessions", "list", "--json", "--all", "--limit", "2"])
        .args(c.args())
        .stdout();
    // Newest first by default.
    let want = vec![
        "db-end".to_string(),
        format!("end-{s2}"),
        format!("end-{s1}"),
    ];
    assert_eq!(uids(&json), want);

    let table = tapelog(["sessions", "list"]).args(c.args()).stdout();
    assert!(table.contains(&s1) && table.contains(&s2), "{table}");
    assert!(
        table.contains("alice") && table.contains("1m05s"),
        "{table}"
    );
    assert!(table.contains("(3 session(s), end of results)"), "{table}");

    // `search --sessions` with a condition, applied to the cluster's pages.
    let bob = tapelog(["search", "--sessions", "--json", "--where", "user=bob"])
        .args(c.args())
        .stdout();
    assert_eq!(uids(&bob), [format!("end-{s2}")]);
}

fn stderr_of(args: &[String]) -> String {
    let out = tapelog(args).run_fail();
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn teleport_errors_say_what_and_where() {
    let c = Cluster::start();
    let addr = c.double.addr();
    let (sid, _) = stored_session(&c, 2);
    let with = |identity: &str, cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--teleport".into(),
            addr.clone(),
            "--teleport-identity".into(),
            path(&c.double.file(identity)),
        ]);
        v
    };

    // An identity that trusts another CA: the cluster's certificate is refused.
    let e = stderr_of(&with(files::IDENTITY_WRONG_CA, &["search"]));
    assert!(e.contains(&addr), "{e}");
    // A client certificate of another CA: the cluster refuses it.
    let mut args = with(files::IDENTITY_FOREIGN, &["export"]);
    args.push(sid.clone());
    let e = stderr_of(&args);
    assert!(e.contains(&addr), "{e}");
    // A session the cluster has no recording of.
    let missing = uuid();
    let mut args = with(files::IDENTITY, &["play"]);
    args.push(missing.clone());
    let e = stderr_of(&args);
    assert!(
        e.contains(&addr) && e.contains("StreamSessionEvents") && e.contains(&missing),
        "{e}"
    );

    // Usage: one source per command, credentials required, an address not a URL.
    let mut args = with(
        files::IDENTITY,
        &["search", "--server", "http://127.0.0.1:1"],
    );
    let e = stderr_of(&args);
    assert!(e.contains("--teleport") && e.contains("--server"), "{e}");
    args = with(
        files::IDENTITY,
        &["sessions", "list", "--data-dir", "/tmp/elsewhere"],
    );
    let e = stderr_of(&args);
    assert!(e.contains("--data-dir /tmp/elsewhere"), "{e}");
    let e = stderr_of(&["search".into(), "--teleport".into(), addr.clone()]);
    assert!(e.contains("--teleport-identity"), "{e}");
    let e = stderr_of(&[
        "search".into(),
        "--teleport".into(),
        format!("https://{addr}"),
        "--teleport-identity".into(),
        path(&c.double.identity_file()),
    ]);
    assert!(e.contains("HOST:PORT"), "{e}");
    let e = stderr_of(&[
        "search".into(),
        "--teleport".into(),
        addr.clone(),
        "--teleport-identity".into(),
        "/nonexistent/identity".into(),
    ]);
    assert!(e.contains("/nonexistent/identity"), "{e}");

    // A cluster that is gone: the address and what failed.
    let tmp = tempfile::tempdir().unwrap();
    let identity: PathBuf = tmp.path().join("identity");
    std::fs::copy(c.double.identity_file(), &identity).unwrap();
    drop(c);
    let e = stderr_of(&[
        "sessions".into(),
        "list".into(),
        "--teleport".into(),
        addr.clone(),
        "--teleport-identity".into(),
        path(&identity),
    ]);
    assert!(e.contains(&addr) && e.starts_with("tapelog: "), "{e}");
}
