//! `tapelog forward` against a Teleport cluster with the export API (the Auth API test double
//! of tapelog-teleport, mutual TLS, an identity file in Teleport's layout) into the in_http
//! look-alike: bulk export per UTC date with upstream's state layout, a late event, SIGKILL
//! mid-export, the Auth server restarted mid-stream, and missing recordings retried in the
//! background. The polling mode against an older cluster is in `forward.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tapelog_core::{AuditEvent, Timestamp};
use tapelog_teleport::double::Double;

use super::forward::{BIN, audit_uids, fluentd_args, run, wait_child, wait_until};
use crate::util::fluentd::{Fluentd, Pki};

const DAY: i64 = 86_400;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn at(s: i64) -> String {
    Timestamp::from_unix_nanos(i128::from(s) * 1_000_000_000).to_rfc3339()
}

fn date(s: i64) -> String {
    at(s)[..10].to_string()
}

fn login(uid: &str, t: i64) -> AuditEvent {
    let v = serde_json::json!({"event": "user.login", "code": "T1000I", "uid": uid,
        "time": at(t), "user": "alice", "success": true});
    AuditEvent::from_json(&v.to_string()).unwrap()
}

fn ev(v: serde_json::Value) -> AuditEvent {
    AuditEvent::from_json(&v.to_string()).unwrap()
}

/// The arguments of a run against `double`, exporting from `start`.
fn teleport_args(
    double: &Double,
    storage: &Path,
    f: &Fluentd,
    pki: &Pki,
    start: i64,
) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    [
        vec![
            "forward".into(),
            "--teleport-addr".into(),
            double.addr(),
            "--teleport-identity".into(),
            p(&double.identity_file()),
            "--storage".into(),
            p(storage),
        ],
        fluentd_args(f, pki),
        vec![
            "--start-time".into(),
            at(start),
            "--timeout".into(),
            "300ms".into(),
        ],
    ]
    .concat()
}

fn counts(uids: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for u in uids {
        *m.entry(u.clone()).or_insert(0) += 1;
    }
    m
}

fn state_dir(storage: &Path, double: &Double) -> PathBuf {
    storage.join(double.addr().replace(':', "_"))
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cluster holding `n` logins of the last hour (chunks of `chunk`), a receiver answering
/// each request after `latency`, and a state directory.
struct Busy {
    tmp: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    double: Double,
    uids: Vec<String>,
    pki: Pki,
    f: Fluentd,
    now: i64,
}

impl Busy {
    fn new(n: usize, chunk: usize, prefix: &str, latency: Duration) -> Busy {
        let tmp = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let double = rt.block_on(Double::start()).unwrap();
        double.set_chunk_size(chunk);
        let now = now_s();
        let uids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:05}")).collect();
        double.add_events(
            uids.iter()
                .enumerate()
                .map(|(i, u)| login(u, now - 3000 + i as i64 / 2)),
        );
        let pki = Pki::new(&tmp.path().join("pki"));
        let f = Fluentd::start(&pki);
        f.set_latency(latency);
        Busy {
            tmp,
            rt,
            double,
            uids,
            pki,
            f,
            now,
        }
    }

    /// `teleport_args` exporting the last hour, with `--exit-on-last-event`.
    fn args(&self) -> Vec<String> {
        let storage = self.tmp.path().join("storage");
        let mut args = teleport_args(&self.double, &storage, &self.f, &self.pki, self.now - 3600);
        args.push("--exit-on-last-event".into());
        args
    }

    /// Starts the exporter (stderr piped).
    fn spawn(&self, args: &[String]) -> std::process::Child {
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until a quarter of the events (at least) arrived.
    fn wait_for_a_part(&self, part: usize) {
        let n = self.uids.len();
        assert!(wait_until(Duration::from_secs(120), || audit_uids(&self.f)
            .len()
            >= n / part));
    }

    /// How many times each event arrived, after checking every event did.
    fn every_event_arrived(&self, context: &str) -> BTreeMap<String, usize> {
        let got = counts(&audit_uids(&self.f));
        assert_eq!(
            got.keys().cloned().collect::<Vec<_>>(),
            self.uids,
            "every event at least once: {context}"
        );
        got
    }
}

/// Waits for the exporter to end successfully (its stderr in the failure message).
fn succeeds(child: &mut std::process::Child) -> String {
    let status = wait_child(child, Duration::from_secs(180));
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut stderr).unwrap();
    }
    assert!(status.success(), "{stderr}");
    stderr
}

/// Three UTC dates of events, chunks of four: every event once, the dates walked in turn,
/// upstream's `cursor_v2/<date>/completed-chunks` written and no cursor left; the session of a
/// `session.upload` exported; no page polling. Then a late event (its date already passed)
/// and new ones: the next run sends exactly those.
#[test]
fn bulk_export_walks_the_dates_and_a_late_event_still_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(Double::start()).unwrap();
    double.set_chunk_size(4);
    let now = now_s();
    let today = now - now.rem_euclid(DAY);
    // Events of today sit between its midnight and now.
    let today_at = |i: i64| today + (now - today) * i / 100;
    let mut events = Vec::new();
    let mut want = Vec::new();
    for (d, base) in [(2, today - 2 * DAY), (1, today - DAY)] {
        for i in 0..10 {
            let uid = format!("d{d}-{i:02}");
            events.push(login(&uid, base + 3600 + i));
            want.push(uid);
        }
    }
    for i in 0..10 {
        let uid = format!("d0-{i:02}");
        events.push(login(&uid, today_at(i + 1)));
        want.push(uid);
    }
    let sid = "0c7f4a2e-8d6b-4e61-9a2f-3b5d7c9e1f20";
    events.push(ev(
        serde_json::json!({"event": "session.upload", "code": "T2005I",
        "uid": "upload", "time": at(today - DAY + 7200), "sid": sid,
        "url": format!("s3://bucket/{sid}")}),
    ));
    want.push("upload".into());
    double.add_events(events);
    double.add_session(
        sid,
        vec![
            ev(
                serde_json::json!({"event": "session.start", "code": "T2000I", "ei": 0,
                "uid": "s0", "time": at(today - DAY + 60), "sid": sid, "user": "alice"}),
            ),
            ev(
                serde_json::json!({"event": "session.end", "code": "T2004I", "ei": 1,
                "uid": "s1", "time": at(today - DAY + 120), "sid": sid, "user": "alice"}),
            ),
        ],
    );

    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let storage = tmp.path().join("storage");
    let mut args = teleport_args(&double, &storage, &f, &pki, today - 2 * DAY);
    args.push("--exit-on-last-event".into());
    double.fail_next(1);
    ok(&run(&args));
    let got = counts(&audit_uids(&f));
    let want_set: BTreeMap<String, usize> = want.iter().map(|u| (u.clone(), 1)).collect();
    assert_eq!(got, want_set, "every event exactly once");
    assert_eq!(double.calls("GetUnstructuredEvents"), 0, "no polling");
    let session: Vec<String> = f
        .records()
        .into_iter()
        .filter(|(t, _)| *t == format!("session.{sid}.log"))
        .map(|(_, v)| v["uid"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(session, ["s0", "s1"]);
    // Upstream's layout: a directory per date, the completed chunks listed, no cursor left.
    let cursors = state_dir(&storage, &double).join("cursor_v2");
    for d in [today - 2 * DAY, today - DAY, today] {
        let dir = cursors.join(date(d));
        let completed = std::fs::read_to_string(dir.join("completed-chunks")).unwrap();
        let listed: BTreeSet<&str> = completed.lines().collect();
        assert!(listed.len() >= 3, "{}: {completed:?}", date(d));
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".chunk"))
            .collect();
        assert!(left.is_empty(), "cursors left in {}: {left:?}", date(d));
    }

    // A late event (dated yesterday, which the export left behind) and two new ones.
    double.add_events([
        login("late", today - DAY + 5000),
        login("new-1", today_at(50)),
        login("new-2", today_at(51)),
    ]);
    ok(&run(&args));
    let got = counts(&audit_uids(&f));
    let mut want_set = want_set;
    for u in ["late", "new-1", "new-2"] {
        want_set.insert(u.to_string(), 1);
    }
    assert_eq!(
        got, want_set,
        "the late event and the new ones, nothing twice"
    );
}

/// SIGKILL while chunks are being sent, then a restart whose first calls fail: every event
/// arrives, and what comes twice is at most the requests in flight (three chunks at once,
/// one request each).
#[test]
fn bulk_export_killed_with_sigkill_resumes_without_loss() {
    let chunk = 50;
    let b = Busy::new(3000, chunk, "k", Duration::from_millis(40));
    let mut args = b.args();
    args.extend(["--batch".into(), "20".into()]);
    let mut child = b.spawn(&args);
    b.wait_for_a_part(4);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first = audit_uids(&b.f).len();
    assert!(first < b.uids.len(), "killed mid-export ({first})");
    b.double.fail_next(3);
    ok(&run(&args));
    let got = b.every_event_arrived("after SIGKILL");
    let twice: usize = got.values().map(|c| c - 1).sum();
    assert!(
        twice <= 3 * chunk,
        "{twice} duplicates; at most three chunks' requests in flight"
    );
}

/// The Auth server restarts (connections cut mid-stream, refused for a while) during an
/// export: the exporter reconnects and nothing is lost.
#[test]
fn bulk_export_survives_an_auth_restart_mid_stream() {
    let mut b = Busy::new(2000, 200, "r", Duration::from_millis(30));
    let mut child = b.spawn(&b.args());
    b.wait_for_a_part(5);
    b.rt.block_on(b.double.restart(Duration::from_millis(700)))
        .unwrap();
    assert_eq!(b.double.restarts(), 1);
    let stderr = succeeds(&mut child);
    b.every_event_arrived(&stderr);
}

/// A `session.upload` whose recording the cluster does not have yet: noted as upstream does
/// (`missing_recording<sid>`, JSON with Index, Attempt, Timestamp), retried in the background
/// and exported once the recording is there; a recording that never comes is given up after
/// the third failure.
#[test]
fn missing_recordings_are_retried_in_the_background_then_given_up() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(Double::start()).unwrap();
    let now = now_s();
    let late_sid = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let never_sid = "7b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e";
    let upload = |uid: &str, sid: &str, t: i64| {
        ev(
            serde_json::json!({"event": "session.upload", "code": "T2005I", "uid": uid,
            "time": at(t), "sid": sid, "url": format!("s3://bucket/{sid}")}),
        )
    };
    double.add_events([
        upload("up-late", late_sid, now - 60),
        upload("up-never", never_sid, now - 50),
    ]);
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let storage = tmp.path().join("storage");
    let args = teleport_args(&double, &storage, &f, &pki, now - 3600);
    let mut child = Command::new(BIN)
        .args(&args)
        .env("TAPELOG_MISSING_RECORDING_RETRY", "1s,1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = state_dir(&storage, &double);
    let missing = |sid: &str| state.join(format!("missing_recording{sid}"));
    assert!(wait_until(Duration::from_secs(60), || missing(late_sid)
        .exists()
        && missing(never_sid).exists()));
    // Rewritten by rename at each failure, so it is always there to read.
    let text = std::fs::read_to_string(missing(late_sid)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Index"], 0, "{text}");
    assert!(v["Attempt"].as_u64().unwrap() >= 1, "{text}");
    assert_eq!(v["Timestamp"].as_str().unwrap(), at(now - 60), "{text}");
    // The recording arrives: the next background round exports it.
    double.add_session(
        late_sid,
        vec![ev(
            serde_json::json!({"event": "session.start", "code": "T2000I", "ei": 0,
            "uid": "ls0", "time": at(now - 100), "sid": late_sid, "user": "bob"}),
        )],
    );
    let tag = format!("session.{late_sid}.log");
    assert!(wait_until(Duration::from_secs(60), || f
        .records()
        .iter()
        .any(|(t, _)| *t == tag)));
    assert!(wait_until(Duration::from_secs(30), || !missing(late_sid).exists()));
    // The other one fails three times in all, then is given up.
    assert!(wait_until(Duration::from_secs(60), || !missing(never_sid)
        .exists()
        && !state.join(format!("session{never_sid}")).exists()));
    assert!(double.calls("StreamUnstructuredSessionEvents") >= 5);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Identity rotation with `--teleport-refresh-enabled`: the file first holds a certificate the
/// cluster refuses (another CA: the exporter waits instead of stopping), then a good one (the
/// export starts), then, mid-export, another good identity with a new key, as tbot renews
/// it: the export goes on and every event arrives.
#[test]
fn identity_rotation_is_picked_up_without_loss() {
    use tapelog_teleport::double::files;

    let b = Busy::new(1500, 100, "i", Duration::from_millis(30));
    let identity = b.tmp.path().join("identity");
    std::fs::copy(b.double.file(files::IDENTITY_FOREIGN), &identity).unwrap();
    let mut args = b.args();
    let at_identity = args
        .iter()
        .position(|a| a == "--teleport-identity")
        .unwrap();
    args[at_identity + 1] = identity.display().to_string();
    args.extend([
        "--teleport-refresh-enabled".into(),
        "--teleport-refresh-interval".into(),
        "1s".into(),
    ]);
    let mut child = b.spawn(&args);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a refused identity is waited out"
    );
    assert!(audit_uids(&b.f).is_empty());
    std::fs::copy(b.double.file(files::IDENTITY), &identity).unwrap();
    b.wait_for_a_part(4);
    std::fs::copy(b.double.file(files::IDENTITY_SEC1), &identity).unwrap();
    let stderr = succeeds(&mut child);
    b.every_event_arrived(&stderr);
    assert!(
        stderr.contains("refused the client certificate") || b.double.handshake_failures() > 0,
        "the refusal was seen: {stderr}"
    );
}
