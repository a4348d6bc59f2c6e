//! `tapelog forward` against a receiver that answers as Fluentd's `in_http` does
//! (`util/fluentd.rs`): client certificates, the options, the start-time guard, dry run,
//! audit and session events end to end with the real binary, dead letters, a receiver down
//! across several retries, SIGKILL in the middle of an export, and late events (appended
//! with an old time after the exporter passed it: the arrival-order feed of a data
//! directory or a `tapelog serve`, and the migration of a time reader's state).

use crate::util::TestCommand;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::fluentd::{Fluentd, Pki};
use crate::util::serve::ServeProcess;
use tapelog_forward::http::{HttpConfig, HttpOutput};
use tapelog_forward::pipeline::MAX_POST_EVENTS;
use tapelog_forward::{Destination, ForwardArgs, Output as _, SendError};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tapelog");

fn event(i: usize) -> String {
    format!(
        r#"{{"event":"user.login","code":"T1000I","uid":"ev-{i:06}","time":"2024-05-01T10:{:02}:{:02}.{:03}Z","user":"u{i}","success":true}}"#,
        (i / 60000) % 60,
        (i / 1000) % 60,
        i % 1000
    )
}

fn emit(data: &Path, lines: &[String]) {
    let mut child = Command::new(BIN)
        .args(["emit", "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "emit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn forward_args(data: &Path, storage: &Path, f: &Fluentd, pki: &Pki) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    [
        vec![
            "forward".into(),
            "--data-dir".into(),
            p(data),
            "--storage".into(),
            p(storage),
        ],
        fluentd_args(f, pki),
        vec![
            "--start-time".into(),
            "2024-05-01T00:00:00Z".into(),
            "--window-size".into(),
            "87600h".into(),
            "--timeout".into(),
            "200ms".into(),
        ],
    ]
    .concat()
}

/// The flags that point an exporter at the receiver `f` with the client certificate of `pki`.
pub(crate) fn fluentd_args(f: &Fluentd, pki: &Pki) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    vec![
        "--fluentd-url".into(),
        format!("{}/test.log", f.url),
        "--fluentd-session-url".into(),
        format!("{}/session", f.url),
        "--fluentd-ca".into(),
        p(&pki.ca),
        "--fluentd-cert".into(),
        p(&pki.client.0),
        "--fluentd-key".into(),
        p(&pki.client.1),
    ]
}

pub(crate) fn run(args: &[String]) -> Output {
    TestCommand::new().args(args).output()
}

pub(crate) fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ok()
}

pub(crate) fn audit_uids(f: &Fluentd) -> Vec<String> {
    f.records()
        .into_iter()
        .filter(|(tag, _)| tag == "test.log")
        .map(|(_, v)| v["uid"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn the_state_dir(storage: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(storage)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

#[test]
fn receiver_verifies_client_certificates_and_answers_like_in_http() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let output = |identity: Option<(PathBuf, PathBuf)>| {
        HttpOutput::new(&HttpConfig {
            url: format!("{}/test.log", f.url),
            session_url: format!("{}/session", f.url),
            ca: Some(pki.ca.clone()),
            identity,
            max_connections: 2,
        })
        .unwrap()
    };
    let events = vec![event(1), event(2)];
    // No certificate, or one from another CA: the handshake fails.
    for identity in [None, Some(pki.rogue.clone())] {
        let r = rt.block_on(output(identity.clone()).send(Destination::Audit, &events));
        assert!(
            matches!(r, Err(SendError::Transient(_))),
            "{identity:?}: {r:?}"
        );
    }
    assert_eq!(f.requests(), 0, "no request got through the handshake");
    let good = output(Some(pki.client.clone()));
    rt.block_on(good.send(Destination::Audit, &events)).unwrap();
    rt.block_on(good.send(Destination::Session("abc"), &events[..1]))
        .unwrap();
    let recs = f.records();
    assert_eq!(recs.len(), 3, "a JSON array is one record per element");
    assert_eq!(recs[0].0, "test.log");
    assert_eq!(recs[2].0, "session.abc.log", "the tag is the path");
    assert_eq!(recs[0].1["uid"], "ev-000001");
    assert!(
        recs[0].1.get("time").is_none(),
        "time is removed from the record"
    );

    // The raw answers.
    let mut pem = std::fs::read(&pki.client.0).unwrap();
    pem.extend(std::fs::read(&pki.client.1).unwrap());
    let http = reqwest::Client::builder()
        .tls_certs_only(
            reqwest::Certificate::from_pem_bundle(&std::fs::read(&pki.ca).unwrap()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let post = |body: Vec<u8>| {
        rt.block_on(async {
            let r = http
                .post(format!("{}/test.log", f.url))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (status, ct, r.text().await.unwrap())
        })
    };
    assert_eq!(
        post(event(3).into_bytes()),
        (200, Some("text/plain".to_string()), String::new())
    );
    let (s, _, body) = post(b"{not json".to_vec());
    assert_eq!(s, 400);
    assert!(body.contains("Received event is not json"), "{body}");
    let (s, _, body) = post(br#"{"event":"x","time":"yesterday"}"#.to_vec());
    assert_eq!(s, 400);
    assert!(body.contains("invalid time format"), "{body}");
    let (s, _, _) = post(br#"{"event":"no time"}"#.to_vec());
    assert_eq!(s, 200);
    let (s, _, _) = post(vec![b' '; 33 * 1024 * 1024]);
    assert_eq!(s, 413);
    // The output sorts the answers: 400 is a rejection.
    let bad = vec![r#"{"event":"x","time":"yesterday"}"#.to_string()];
    assert!(matches!(
        rt.block_on(good.send(Destination::Audit, &bad)),
        Err(SendError::Rejected(_))
    ));
}

#[test]
fn options_from_flags_env_both_spellings_and_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = tmp.path().join("fwd.toml");
    std::fs::write(
        &toml,
        r#"
storage = "/from/toml"
timeout = "10s"
batch = 20
window-size = "48h"
namespace = "default"
[forward.fluentd]
url = "https://toml:8888/test.log"
session-url = "https://toml:8888/session"
ca = "/toml/ca.crt"
cert = "/toml/client.crt"
key = "/toml/client.key"
[teleport]
addr = "toml:3025"
identity = "/toml/identity"
refresh.enabled = true
"#,
    )
    .unwrap();
    let env = |pairs: &[(&str, &str)]| {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| m.get(name).cloned()
    };
    let args = ForwardArgs {
        config: Some(toml.display().to_string()),
        ..ForwardArgs::default()
    };
    // TOML only.
    let o = args.resolve_with(env(&[])).unwrap();
    assert_eq!(o.storage, PathBuf::from("/from/toml"));
    assert_eq!(o.fluentd_session_url, "https://toml:8888/session");
    assert_eq!(o.fluentd_ca, Some(PathBuf::from("/toml/ca.crt")));
    assert_eq!(o.teleport_addr, "toml:3025");
    assert_eq!(o.teleport_identity, Some(PathBuf::from("/toml/identity")));
    assert!(o.teleport_refresh_enabled);
    assert_eq!(o.timeout, Duration::from_secs(10));
    assert_eq!(o.window_size, Duration::from_secs(48 * 3600));
    assert_eq!(o.batch, 20);
    assert_eq!(o.concurrency, 5);
    assert_eq!(o.fluentd_max_connections, 10, "0 = 2 × concurrency");
    assert_eq!(o.skip_session_types, ["print"]);
    // Both spellings of the variables; FDFWD_ wins over FDWRD_; env over TOML.
    let o = args
        .resolve_with(env(&[
            ("FDWRD_FLUENTD_CA", "/env/wrd-ca"),
            ("FDFWD_TIMEOUT", "1m"),
            ("FDWRD_TIMEOUT", "2m"),
            ("FDWRD_MAX_CONNECTIONS", "7"),
            ("FDFWD_SKIP_SESSION_TYPES", "print,desktop.recording"),
            ("FDFWD_TYPES", "user.login, session.start"),
            ("FDWRD_DRY_RUN", "true"),
            ("FDFWD_START_TIME", "2024-01-02T03:04:05Z"),
            ("FDWRD_CONCURRENCY", "3"),
        ]))
        .unwrap();
    assert_eq!(o.fluentd_ca, Some(PathBuf::from("/env/wrd-ca")));
    assert_eq!(o.timeout, Duration::from_secs(60));
    assert_eq!(o.fluentd_max_connections, 7);
    assert_eq!(o.concurrency, 3);
    assert_eq!(o.skip_session_types, ["print", "desktop.recording"]);
    assert_eq!(o.types, ["user.login", "session.start"]);
    assert!(o.dry_run);
    assert_eq!(o.start_time.unwrap().to_rfc3339(), "2024-01-02T03:04:05Z");
    // Upstream's misspelt FDWRD_TELEPORT_CERT next to FDFWD_TELEPORT_KEY/CA, no TOML.
    let o = ForwardArgs::default()
        .resolve_with(env(&[
            ("FDFWD_FLUENTD_URL", "https://env:8888/test.log"),
            ("FDWRD_FLUENTD_SESSION_URL", "https://env:8888/session"),
            ("FDFWD_STORAGE", "/env/storage"),
            ("FDWRD_TELEPORT_CERT", "/env/cert"),
            ("FDFWD_TELEPORT_KEY", "/env/key"),
            ("FDWRD_TELEPORT_CA", "/env/ca"),
            ("FDFWD_TELEPORT_ADDR", "env:3025"),
            ("FDWRD_BATCH", "100"),
            ("FDFWD_FLUENTD_MAX_CONNECTIONS", "3"),
            ("FDWRD_EXIT_ON_LAST_EVENT", "1"),
            ("FDFWD_WINDOW_SIZE", "1h30m"),
        ]))
        .unwrap();
    assert_eq!(o.fluentd_url, "https://env:8888/test.log");
    assert_eq!(o.fluentd_session_url, "https://env:8888/session");
    assert_eq!(o.storage, PathBuf::from("/env/storage"));
    assert_eq!(o.teleport_cert, Some(PathBuf::from("/env/cert")));
    assert_eq!(o.teleport_key, Some(PathBuf::from("/env/key")));
    assert_eq!(o.teleport_ca, Some(PathBuf::from("/env/ca")));
    assert_eq!(o.teleport_addr, "env:3025");
    assert_eq!(o.batch, 100);
    assert_eq!(o.fluentd_max_connections, 3);
    assert!(o.exit_on_last_event);
    assert_eq!(o.window_size, Duration::from_secs(5400));
    // The identity file (TOML) excludes a certificate (environment).
    let e = args
        .resolve_with(env(&[("FDWRD_TELEPORT_CERT", "/env/cert")]))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("--teleport-identity can't be combined"),
        "{e}"
    );
    // Flags over everything (parsed by clap, as the binary does).
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ForwardArgs,
    }
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "x",
        "--config",
        &toml.display().to_string(),
        "--timeout",
        "3s",
        "--fluentd-ca",
        "/flag/ca",
        "--dry-run",
        "--debug",
        "--skip-session-types",
        "",
        "--batch",
        "50",
    ])
    .unwrap();
    let o = cli
        .args
        .resolve_with(env(&[
            ("FDFWD_TIMEOUT", "1m"),
            ("FDWRD_FLUENTD_CA", "/env/ca"),
        ]))
        .unwrap();
    assert_eq!(o.timeout, Duration::from_secs(3));
    assert_eq!(o.fluentd_ca, Some(PathBuf::from("/flag/ca")));
    assert!(o.dry_run && o.debug);
    assert!(
        o.skip_session_types.is_empty(),
        "'' sends every session event"
    );
    assert_eq!(o.batch, 50);
    // Errors name the option.
    let e = ForwardArgs::default().resolve_with(env(&[])).unwrap_err();
    assert!(e.to_string().contains("--fluentd-url is required"), "{e}");
    let e = args
        .resolve_with(env(&[("FDFWD_TIMEOUT", "soon")]))
        .unwrap_err();
    assert!(e.to_string().contains("--timeout"), "{e}");
    let half = ForwardArgs {
        fluentd_url: Some("https://h/t".into()),
        fluentd_session_url: Some("https://h/s".into()),
        storage: Some("/s".into()),
        ..ForwardArgs::default()
    };
    let e = half
        .resolve_with(env(&[("FDWRD_FLUENTD_CERT", "/c")]))
        .unwrap_err();
    assert!(
        e.to_string().contains("--fluentd-cert and --fluentd-key"),
        "{e}"
    );
}

#[test]
fn start_time_cannot_change_once_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    emit(&data, &[event(1)]);
    let mut args = forward_args(&data, &storage, &f, &pki);
    args.push("--exit-on-last-event".into());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(audit_uids(&f), ["ev-000001"]);
    let i = args.iter().position(|a| a == "--start-time").unwrap();
    args[i + 1] = "2024-04-01T00:00:00Z".into();
    let out = run(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "You can not change start time in the middle of ingestion. To restart the ingestion, rm -rf {}",
            storage.display()
        )),
        "{stderr}"
    );
    // The same start time, or none, is fine.
    args.remove(i + 1);
    args.remove(i);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(audit_uids(&f), ["ev-000001"], "nothing resent");
}

#[test]
fn dry_run_sends_nothing_and_uses_its_own_state() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    emit(&data, &(0..30).map(event).collect::<Vec<_>>());
    let mut args = forward_args(&data, &storage, &f, &pki);
    args.extend(["--exit-on-last-event".into(), "--dry-run".into()]);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.requests(), 0);
    let dir = the_state_dir(&storage);
    assert!(
        !dir.join("cursor").exists() && !dir.join("id").exists(),
        "normal state untouched"
    );
    let runs: Vec<_> = std::fs::read_dir(dir.join("dry_run")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let run_dir = runs[0].as_ref().unwrap().path();
    assert!(run_dir.join("start_time").exists());
    // A real run afterwards still sends everything.
    args.pop();
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(audit_uids(&f).len(), 30);
}

/// A data dir with `n` audit events and an uploaded recording whose `session.upload` comes
/// last.
fn data_with_session(dir: &Path, n: usize) -> String {
    data_with_session_at(dir, n, n)
}

/// A data dir with `n` audit events and an uploaded recording whose `session.upload` comes
/// after the first `at` events.
fn data_with_session_at(dir: &Path, n: usize, at: usize) -> String {
    let data = dir.join("data");
    let sample = dir.join("sample.tar");
    TestCommand::new().args(["sample", "-o"]).arg(&sample).run();
    let sid = "7f3c0c8e-9d2a-4c1b-8f00-0123456789ab";
    TestCommand::new()
        .args(["upload"])
        .arg(&sample)
        .arg("--storage")
        .arg(data.join("log").join("records"))
        .args(["--session-id", sid])
        .run();
    let mut lines: Vec<String> = (0..n).map(event).collect();
    let time = if at >= n {
        "2024-05-01T11:00:00Z".to_string()
    } else if at == 0 {
        "2024-05-01T09:00:00Z".to_string()
    } else {
        // Half a millisecond after the event before it, so before the one after it.
        let before: serde_json::Value = serde_json::from_str(&lines[at - 1]).unwrap();
        format!(
            "{}5Z",
            before["time"].as_str().unwrap().trim_end_matches('Z')
        )
    };
    lines.insert(
        at.min(n),
        format!(
            r#"{{"event":"session.upload","code":"T2005I","uid":"upload-1","sid":"{sid}","time":"{time}","url":"file:///x"}}"#
        ),
    );
    emit(&data, &lines);
    sid.to_string()
}

#[test]
fn exports_audit_and_session_events_from_a_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let sid = data_with_session(tmp.path(), 45);
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    let mut args = forward_args(&data, &storage, &f, &pki);
    args.push("--exit-on-last-event".into());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uids = audit_uids(&f);
    assert_eq!(uids.len(), 46, "{uids:?}");
    let set: HashSet<&String> = uids.iter().collect();
    assert_eq!(set.len(), 46, "no duplicates");
    assert!(set.contains(&"upload-1".to_string()));
    let session: Vec<serde_json::Value> = f
        .records()
        .into_iter()
        .filter(|(t, _)| *t == format!("session.{sid}.log"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        !session.is_empty(),
        "session events arrive at session.<sid>.log"
    );
    assert!(
        session.iter().all(|e| e["event"] != "print"),
        "print skipped"
    );
    assert!(session.iter().any(|e| e["event"] == "session.start"));
    let idx: Vec<i64> = session.iter().map(|e| e["ei"].as_i64().unwrap()).collect();
    assert!(
        idx.windows(2).all(|w| w[0] < w[1]),
        "session order kept: {idx:?}"
    );
    let state = the_state_dir(&storage);
    assert!(
        !state.join(format!("session{sid}")).exists(),
        "finished session forgotten"
    );
    // A second run has nothing to send.
    let before = f.records().len();
    let out = run(&args);
    assert!(out.status.success());
    assert_eq!(f.records().len(), before);
    // As after a crash before the audit position passed the upload event: the audit events
    // come again, the finished session (in done_sessions) does not.
    for file in ["cursor", "id"] {
        let _ = std::fs::remove_file(state.join(file));
    }
    let session_before = f
        .records()
        .iter()
        .filter(|(t, _)| *t == format!("session.{sid}.log"))
        .count();
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(audit_uids(&f).len(), 2 * 46, "the audit events again");
    let session_after = f
        .records()
        .iter()
        .filter(|(t, _)| *t == format!("session.{sid}.log"))
        .count();
    assert_eq!(
        session_after, session_before,
        "the session is not exported again"
    );
}

#[test]
fn a_rejected_event_is_dead_lettered_and_the_rest_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    f.reject_when(|v| v["uid"] == "ev-000013");
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    emit(&data, &(0..50).map(event).collect::<Vec<_>>());
    let mut args = forward_args(&data, &storage, &f, &pki);
    args.push("--exit-on-last-event".into());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uids = audit_uids(&f);
    let want: Vec<String> = (0..50)
        .filter(|&i| i != 13)
        .map(|i| format!("ev-{i:06}"))
        .collect();
    assert_eq!(uids, want, "the others arrive once each, in order");
    let dead = std::fs::read_to_string(the_state_dir(&storage).join("dead-letter.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"]["uid"], "ev-000013");
    assert!(lines[0]["reason"].as_str().unwrap().contains("400"));
}

#[test]
fn receiver_down_across_retries_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    emit(&data, &(0..200).map(event).collect::<Vec<_>>());
    f.set_down(true);
    let mut args = forward_args(&data, &storage, &f, &pki);
    args.push("--exit-on-last-event".into());
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Three refused attempts: the exporter keeps retrying with backoff.
    assert!(
        wait_until(Duration::from_secs(60), || f.refused() >= 3),
        "the exporter did not retry: {} refused attempt(s)",
        f.refused()
    );
    assert!(child.try_wait().unwrap().is_none(), "still retrying");
    assert!(f.records().is_empty());
    f.set_down(false);
    let status = wait_child(&mut child, Duration::from_secs(60));
    assert!(status.success());
    let uids = audit_uids(&f);
    let want: Vec<String> = (0..200).map(|i| format!("ev-{i:06}")).collect();
    assert_eq!(uids, want, "all of them, once each, in order");
}

pub(crate) fn wait_child(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("tapelog forward did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks the arrivals of one source across runs: each key's first arrival comes in order
/// (so every key arrived, in order, ignoring replays), at most `restarts` times does a key
/// arrive lower than the one before it (a restarted exporter replaying what was in
/// flight), and the replays are at most `window` arrivals.
fn assert_in_order_ignoring_replays<T: Ord + Clone + std::fmt::Debug + std::hash::Hash>(
    what: &str,
    arrived: &[T],
    want: &[T],
    restarts: usize,
    window: usize,
) {
    let mut seen = HashSet::new();
    let firsts: Vec<T> = arrived
        .iter()
        .filter(|k| seen.insert((*k).clone()))
        .cloned()
        .collect();
    assert_eq!(
        firsts.len(),
        want.len(),
        "{what}: every event at least once"
    );
    if let Some(i) = (0..want.len()).find(|&i| firsts[i] != want[i]) {
        let lo = i.saturating_sub(3);
        panic!(
            "{what}: first arrivals out of order at {i}: {:?}, expected {:?}",
            &firsts[lo..(i + 4).min(firsts.len())],
            &want[lo..(i + 4).min(want.len())]
        );
    }
    let descents = arrived.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(
        descents <= restarts,
        "{what}: {descents} step(s) back in the arrivals, {restarts} restart(s)"
    );
    let replays = arrived.len() - firsts.len();
    assert!(
        replays <= window,
        "{what}: {replays} duplicates, in-flight window {window}"
    );
}

#[test]
fn killed_with_sigkill_mid_export_resumes_without_loss_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    f.set_latency(Duration::from_millis(100));
    let n = 20_000;
    let sid = data_with_session_at(tmp.path(), n, n / 2);
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    let mut args = forward_args(&data, &storage, &f, &pki);
    args.push("--exit-on-last-event".into());
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(120), || audit_uids(&f)
        .len()
        >= n / 4));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first = audit_uids(&f).len();
    assert!(first < n, "killed mid-export ({first} of {})", n + 1);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The audit log is one source: in order, every event, replays at most two requests (the
    // one in flight, and the one before it whose position was being stored meanwhile).
    let mut want: Vec<String> = (0..n).map(|i| format!("ev-{i:06}")).collect();
    want.insert(n / 2, "upload-1".into());
    let uids = audit_uids(&f);
    // Sort keys: the position in the log.
    let place: std::collections::HashMap<&String, usize> =
        want.iter().enumerate().map(|(i, u)| (u, i)).collect();
    let arrived: Vec<usize> = uids.iter().map(|u| place[u]).collect();
    let want_places: Vec<usize> = (0..want.len()).collect();
    assert_in_order_ignoring_replays("audit", &arrived, &want_places, 1, 2 * MAX_POST_EVENTS);
    // The session is a source of its own: its events in index order, every one.
    let session: Vec<i64> = f
        .records()
        .into_iter()
        .filter(|(t, _)| *t == format!("session.{sid}.log"))
        .map(|(_, v)| v["ei"].as_i64().unwrap())
        .collect();
    // What the session holds: exported alone, by a fresh exporter, to a fresh receiver.
    let g = Fluentd::start(&pki);
    let mut alone = forward_args(&data, &tmp.path().join("storage2"), &g, &pki);
    alone.extend([
        "--exit-on-last-event".into(),
        "--types".into(),
        "session.upload".into(),
    ]);
    let out = run(&alone);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<i64> = g
        .records()
        .into_iter()
        .filter(|(t, _)| *t == format!("session.{sid}.log"))
        .map(|(_, v)| v["ei"].as_i64().unwrap())
        .collect();
    assert!(all.len() > 2, "the session's events: {all:?}");
    assert_in_order_ignoring_replays("session", &session, &all, 1, MAX_POST_EVENTS);
    let state = the_state_dir(&storage);
    assert!(!state.join(format!("session{sid}")).exists());
    let done = std::fs::read_to_string(state.join("done_sessions")).unwrap();
    assert_eq!(done.trim(), sid, "the finished session is remembered");
}

/// A `user.login` event with this uid and time, as a line of Teleport's JSON.
fn login_at(uid: &str, time: &str) -> String {
    format!(
        r#"{{"event":"user.login","code":"T1000I","uid":"{uid}","time":"{time}","user":"u","success":true}}"#
    )
}

/// `tapelog forward` running in the background; killed (SIGKILL) when dropped.
struct Running(Child);

impl Running {
    fn start(args: &[String]) -> Running {
        Running(
            Command::new(BIN)
                .args(args)
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn sigkill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// Stops it as a service manager does: the request in flight finishes and its position
    /// is stored.
    fn sigterm(mut self) {
        let pid = i32::try_from(self.0.id()).unwrap();
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = wait_child(&mut self.0, Duration::from_secs(30));
        assert!(status.success(), "stopped by SIGTERM: {status:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every uid in `want` arrived exactly once, and nothing else did.
fn assert_once_each(got: &[String], want: &[String]) {
    let mut a = got.to_vec();
    a.sort();
    let mut b = want.to_vec();
    b.sort();
    assert_eq!(a, b, "each once: got {got:?}");
}

#[test]
fn a_late_event_appended_to_a_data_dir_is_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    let first: Vec<String> = (0..20)
        .map(|i| login_at(&format!("d2-{i:02}"), &format!("2024-05-02T10:00:{i:02}Z")))
        .collect();
    emit(&data, &first);
    let mut args = forward_args(&data, &storage, &f, &pki);
    let running = Running::start(&args);
    assert!(
        wait_until(Duration::from_secs(60), || audit_uids(&f).len() >= 20),
        "the first events: {:?}",
        audit_uids(&f)
    );
    // The exporter has passed 2024-05-02T10:00. A late event a day older than that, one
    // older than the start time (not exported), and a new one.
    emit(
        &data,
        &[
            login_at("too-old", "2024-04-30T10:00:00Z"),
            login_at("late", "2024-05-01T10:00:00Z"),
            login_at("new", "2024-05-02T12:00:00Z"),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            let u = audit_uids(&f);
            u.contains(&"late".to_string()) && u.contains(&"new".to_string())
        }),
        "the late event is exported: {:?}",
        audit_uids(&f)
    );
    running.sigterm();
    let mut want: Vec<String> = (0..20).map(|i| format!("d2-{i:02}")).collect();
    want.extend(["late".into(), "new".into()]);
    let got = audit_uids(&f);
    assert_once_each(&got, &want);
    assert_eq!(&got[..20], &want[..20], "the first ones in order");
    let state = the_state_dir(&storage);
    let cursor = std::fs::read_to_string(state.join("cursor")).unwrap();
    assert!(cursor.starts_with("f1:"), "the feed key: {cursor}");
    assert_eq!(
        std::fs::read_to_string(state.join("id")).unwrap_or_default(),
        ""
    );
    // A second run has nothing new.
    args.push("--exit-on-last-event".into());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(audit_uids(&f).len(), 22);
}

#[test]
fn a_late_event_posted_to_a_serve_is_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    TestCommand::new()
        .args(["certs", "init"])
        .arg(&certs)
        .args(["--host", "127.0.0.1"])
        .run();
    let data = tmp.path().join("serve-data");
    let serve = start_tls_serve(&data, &certs);
    let c = |name: &str| certs.join(name).display().to_string();
    let client = recorder_client(&certs, &serve.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let post = |lines: &[String]| {
        let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let n = rt
            .block_on(client.emit_json_lines(body.into_bytes()))
            .unwrap();
        assert_eq!(n as usize, lines.len());
    };
    post(
        &(0..10)
            .map(|i| login_at(&format!("s-{i:02}"), &format!("2024-05-02T10:00:{i:02}Z")))
            .collect::<Vec<_>>(),
    );
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let p = |x: &Path| x.display().to_string();
    let args: Vec<String> = [
        vec![
            "forward".into(),
            "--teleport-addr".into(),
            format!("https://{}", serve.addr()),
            "--teleport-cert".into(),
            c("auditor.pem"),
            "--teleport-key".into(),
            c("auditor-key.pem"),
            "--teleport-ca".into(),
            c("ca.pem"),
            "--storage".into(),
            p(&tmp.path().join("storage")),
        ],
        fluentd_args(&f, &pki),
        vec![
            "--start-time".into(),
            "2024-05-01T00:00:00Z".into(),
            "--window-size".into(),
            "1h".into(),
            "--timeout".into(),
            "200ms".into(),
        ],
    ]
    .concat();
    let running = Running::start(&args);
    assert!(
        wait_until(Duration::from_secs(60), || audit_uids(&f).len() >= 10),
        "the first events: {:?}",
        audit_uids(&f)
    );
    post(&[
        login_at("late", "2024-05-01T10:00:00Z"),
        login_at("new", "2024-05-02T12:00:00Z"),
    ]);
    assert!(
        wait_until(Duration::from_secs(60), || audit_uids(&f).len() >= 12),
        "the late event is exported: {:?}",
        audit_uids(&f)
    );
    running.sigkill();
    let mut want: Vec<String> = (0..10).map(|i| format!("s-{i:02}")).collect();
    want.extend(["late".into(), "new".into()]);
    assert_once_each(&audit_uids(&f), &want);
    drop(serve);
}

#[test]
fn sigkill_while_late_events_arrive_then_restart_delivers_every_event() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    f.set_latency(Duration::from_millis(200));
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    let at = |day: u32, i: usize| {
        format!(
            "2024-05-{day:02}T10:{:02}:{:02}.{:03}Z",
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1000
        )
    };
    let n = 20_000;
    let mut want: Vec<String> = (0..n).map(|i| format!("d3-{i:05}")).collect();
    emit(
        &data,
        &(0..n)
            .map(|i| login_at(&want[i], &at(3, i)))
            .collect::<Vec<_>>(),
    );
    let args = forward_args(&data, &storage, &f, &pki);
    let running = Running::start(&args);
    assert!(wait_until(Duration::from_secs(120), || audit_uids(&f)
        .len()
        >= 2000));
    // Late events (two days older) and new ones arrive during the export.
    let late: Vec<String> = (0..300).map(|i| format!("late-{i:03}")).collect();
    let new: Vec<String> = (0..300).map(|i| format!("new-{i:03}")).collect();
    let mut lines = Vec::new();
    for i in 0..300 {
        lines.push(login_at(&late[i], &at(1, i)));
        lines.push(login_at(&new[i], &at(4, i)));
    }
    emit(&data, &lines);
    let seen = audit_uids(&f).len();
    assert!(wait_until(Duration::from_secs(60), || audit_uids(&f).len()
        >= seen + 1000));
    running.sigkill();
    let before = audit_uids(&f).len();
    assert!(
        before < n + 600,
        "killed mid-export ({before} of {})",
        n + 600
    );
    let mut args = args;
    args.push("--exit-on-last-event".into());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    want.extend(late);
    want.extend(new);
    let got = audit_uids(&f);
    let got_set: HashSet<&String> = got.iter().collect();
    let missing: Vec<&String> = want.iter().filter(|u| !got_set.contains(u)).collect();
    assert!(
        missing.is_empty(),
        "skipped: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(got_set.len(), want.len(), "nothing else");
    assert!(
        got.len() - want.len() <= 2 * MAX_POST_EVENTS,
        "{} duplicates: more than the request in flight and the one being stored",
        got.len() - want.len()
    );
}

#[test]
fn a_time_readers_state_migrates_to_the_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    let mut lines: Vec<String> = (0..10)
        .map(|i| login_at(&format!("a-{i}"), &format!("2024-05-01T10:00:0{i}Z")))
        .collect();
    lines.extend((0..10).map(|i| login_at(&format!("b-{i}"), &format!("2024-05-03T10:00:0{i}Z"))));
    emit(&data, &lines);
    // What the time reader left: everything before 2024-05-02 exported, a page key in the
    // window after.
    let state = storage.join(tapelog_forward::state::data_dir_name(&data));
    std::fs::create_dir_all(&state).unwrap();
    for (file, text) in [
        ("start_time", "2024-05-01T00:00:00Z"),
        ("window_time", "2024-05-02T00:00:00Z"),
        ("cursor", "tl1.eyJ0IjoxfQ"),
        ("id", "ev-old"),
    ] {
        std::fs::write(state.join(file), text).unwrap();
    }
    let mut args = forward_args(&data, &storage, &f, &pki);
    args.push("--exit-on-last-event".into());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<String> = (0..10).map(|i| format!("b-{i}")).collect();
    assert_eq!(
        audit_uids(&f),
        want,
        "what the old reader had not reached, once each"
    );
    let read = |file: &str| std::fs::read_to_string(state.join(file)).unwrap();
    assert!(read("cursor").starts_with("f1:"), "{}", read("cursor"));
    assert_eq!(read("id"), "");
    assert_eq!(
        read("window_time"),
        "2024-05-01T00:00:00Z",
        "caught up: only the start time holds events back now"
    );
    // From now on a late event is exported whatever its time (after the start time).
    emit(&data, &[login_at("late", "2024-05-01T12:00:00Z")]);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(audit_uids(&f).last().map(String::as_str), Some("late"));
    assert_eq!(audit_uids(&f).len(), 11);
}

/// A client of the serve at `url` with the recorder certificate `tapelog certs init` wrote
/// in `certs`.
fn recorder_client(certs: &Path, url: &str) -> tapelog_client::Client {
    let mut identity = std::fs::read(certs.join("recorder.pem")).unwrap();
    identity.push(b'\n');
    identity.extend(std::fs::read(certs.join("recorder-key.pem")).unwrap());
    tapelog_client::Client::new(tapelog_client::ClientConfig::new(
        url,
        tapelog_client::Credentials {
            token: None,
            identity_pem: Some(identity),
            ca_pem: Some(std::fs::read(certs.join("ca.pem")).unwrap()),
        },
    ))
    .unwrap()
}

/// `tapelog serve --tls-cert --tls-key --client-ca` over `data` on a free loopback port,
/// with the certificates of `tapelog certs init` in `certs`.
fn start_tls_serve(data: &Path, certs: &Path) -> ServeProcess {
    ServeProcess::start(|c| {
        c.arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--completer-interval", "3600"])
            .arg("--tls-cert")
            .arg(certs.join("server.pem"))
            .arg("--tls-key")
            .arg(certs.join("server-key.pem"))
            .arg("--client-ca")
            .arg(certs.join("ca.pem"))
            .env_remove("TAPELOG_TOKENS")
            .stderr(Stdio::null());
    })
}

#[test]
fn exports_from_a_real_serve_over_mutual_tls_with_cert_files_and_an_identity_file() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    TestCommand::new()
        .args(["certs", "init"])
        .arg(&certs)
        .args(["--host", "127.0.0.1"])
        .run();
    let data = tmp.path().join("serve-data");
    let serve = start_tls_serve(&data, &certs);
    assert!(serve.url.starts_with("https://"), "{}", serve.url);
    let c = |name: &str| certs.join(name).display().to_string();

    // A session recorded through the server with a recorder's certificate.
    let sid = "2b9c1f4e-6a7d-4e3f-9a10-5c6d7e8f9a0b";
    TestCommand::new()
        .args(["record", "--server", &serve.url])
        .args([
            "--cert",
            &c("recorder.pem"),
            "--key",
            &c("recorder-key.pem"),
        ])
        .args(["--ca", &c("ca.pem"), "--session-id", sid, "--"])
        .args(["bash", "-c", "for i in $(seq 1 30); do echo line $i; done"])
        .run();
    // Audit events emitted into it, then the session's upload event (times in the past: the
    // exporter searches up to its now).
    let now = tapelog_audit::emit::system_clock();
    let at = |ms: i128| {
        tapelog_core::Timestamp::from_unix_nanos(now.unix_nanos() + ms * 1_000_000).to_rfc3339()
    };
    let mut lines = String::new();
    for i in 0..25 {
        lines.push_str(&format!(
            r#"{{"event":"user.login","code":"T1000I","uid":"srv-{i:03}","time":"{}","user":"u{i}","success":true}}"#,
            at(i - 200)
        ));
        lines.push('\n');
    }
    lines.push_str(&format!(
        r#"{{"event":"session.upload","code":"T2005I","uid":"srv-upload","sid":"{sid}","time":"{}","url":"file:///x"}}"#,
        at(-50)
    ));
    lines.push('\n');
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = recorder_client(&certs, &serve.url);
    let stored = rt
        .block_on(client.emit_json_lines(lines.into_bytes()))
        .unwrap();
    assert_eq!(stored, 26);

    // An identity file: the auditor's certificate, its key and the CA in one PEM.
    let identity_file = tmp.path().join("identity.pem");
    let mut pem = String::new();
    for f in ["auditor.pem", "auditor-key.pem", "ca.pem"] {
        pem.push_str(&std::fs::read_to_string(certs.join(f)).unwrap());
        pem.push('\n');
    }
    std::fs::write(&identity_file, pem).unwrap();
    let start =
        tapelog_core::Timestamp::from_unix_nanos(now.unix_nanos() - 3_600_000_000_000).to_rfc3339();

    let credentials: [Vec<String>; 2] = [
        vec![
            "--teleport-cert".into(),
            c("auditor.pem"),
            "--teleport-key".into(),
            c("auditor-key.pem"),
            "--teleport-ca".into(),
            c("ca.pem"),
        ],
        vec![
            "--teleport-identity".into(),
            identity_file.display().to_string(),
        ],
    ];
    for (k, creds) in credentials.iter().enumerate() {
        let pki = Pki::new(&tmp.path().join(format!("pki{k}")));
        let f = Fluentd::start(&pki);
        let storage = tmp.path().join(format!("storage{k}"));
        let p = |x: &Path| x.display().to_string();
        let mut args: Vec<String> = [
            vec![
                "forward".into(),
                "--teleport-addr".into(),
                format!("https://{}", serve.addr()),
                "--storage".into(),
                p(&storage),
            ],
            fluentd_args(&f, &pki),
            vec![
                "--start-time".into(),
                start.clone(),
                "--exit-on-last-event".into(),
            ],
        ]
        .concat();
        args.extend(creds.iter().cloned());
        let out = run(&args);
        assert!(
            out.status.success(),
            "{creds:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The audit log: the recording's own events, the emitted ones, the upload.
        let records = f.records();
        let audit: Vec<&serde_json::Value> = records
            .iter()
            .filter(|(t, _)| t == "test.log")
            .map(|(_, v)| v)
            .collect();
        let uids: Vec<&str> = audit.iter().filter_map(|v| v["uid"].as_str()).collect();
        let emitted: Vec<String> = (0..25).map(|i| format!("srv-{i:03}")).collect();
        let got_emitted: Vec<&str> = uids
            .iter()
            .copied()
            .filter(|u| u.starts_with("srv-") && *u != "srv-upload")
            .collect();
        assert_eq!(got_emitted, emitted, "{creds:?}: in order, once each");
        assert!(uids.contains(&"srv-upload"), "{creds:?}");
        let types: Vec<&str> = audit.iter().filter_map(|v| v["event"].as_str()).collect();
        for t in ["session.start", "session.end", "session.upload"] {
            assert!(types.contains(&t), "{creds:?}: no {t} in {types:?}");
        }
        // The session's events at session.<sid>.log, in order, without print.
        let session: Vec<&serde_json::Value> = records
            .iter()
            .filter(|(t, _)| *t == format!("session.{sid}.log"))
            .map(|(_, v)| v)
            .collect();
        let stypes: Vec<&str> = session.iter().filter_map(|v| v["event"].as_str()).collect();
        assert_eq!(
            stypes.first(),
            Some(&"session.start"),
            "{creds:?}: {stypes:?}"
        );
        assert!(stypes.contains(&"session.end"), "{creds:?}: {stypes:?}");
        assert!(!stypes.contains(&"print"), "{creds:?}: print is skipped");
        let idx: Vec<i64> = session.iter().map(|v| v["ei"].as_i64().unwrap()).collect();
        assert!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "{creds:?}: session order kept: {idx:?}"
        );
        let state = storage.join(format!(
            "127.0.0.1_{}",
            serve.addr().rsplit(':').next().unwrap()
        ));
        assert!(state.join("start_time").exists(), "{}", state.display());
        assert!(!state.join(format!("session{sid}")).exists());
    }

    // --teleport-refresh-enabled: the identity file first holds a certificate of another CA,
    // which the server refuses; the exporter keeps trying, and once the file is replaced by
    // a good identity the re-read one gets in and the export completes.
    let other = tmp.path().join("other-certs");
    TestCommand::new()
        .args(["certs", "init"])
        .arg(&other)
        .args(["--host", "127.0.0.1"])
        .run();
    let pem_of = |files: [&Path; 3]| {
        let mut pem = String::new();
        for f in files {
            pem.push_str(&std::fs::read_to_string(f).unwrap());
            pem.push('\n');
        }
        pem
    };
    let refreshed = tmp.path().join("refreshed-identity.pem");
    std::fs::write(
        &refreshed,
        pem_of([
            &other.join("auditor.pem"),
            &other.join("auditor-key.pem"),
            &certs.join("ca.pem"),
        ]),
    )
    .unwrap();
    let pki = Pki::new(&tmp.path().join("pki-refresh"));
    let f = Fluentd::start(&pki);
    let p = |x: &Path| x.display().to_string();
    let args: Vec<String> = [
        vec![
            "forward".into(),
            "--teleport-addr".into(),
            format!("https://{}", serve.addr()),
            "--teleport-identity".into(),
            p(&refreshed),
            "--teleport-refresh-enabled".into(),
            "--teleport-refresh-interval".into(),
            "1s".into(),
            "--storage".into(),
            p(&tmp.path().join("storage-refresh")),
        ],
        fluentd_args(&f, &pki),
        vec![
            "--start-time".into(),
            start.clone(),
            "--timeout".into(),
            "200ms".into(),
            "--exit-on-last-event".into(),
        ],
    ]
    .concat();
    let log = tmp.path().join("refresh.log");
    let mut child = Command::new(BIN)
        .args(&args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Two refused attempts logged: it is retried, not fatal.
    wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("retrying in")
            .count()
            >= 2
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "a refused identity is retried, not fatal: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        f.records().is_empty(),
        "nothing read with the refused identity"
    );
    let next = tmp.path().join("identity.next");
    std::fs::write(
        &next,
        pem_of([
            &certs.join("auditor.pem"),
            &certs.join("auditor-key.pem"),
            &certs.join("ca.pem"),
        ]),
    )
    .unwrap();
    std::fs::rename(&next, &refreshed).unwrap();
    let status = wait_child(&mut child, Duration::from_secs(120));
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let uids: Vec<String> = f
        .records()
        .iter()
        .filter(|(t, _)| t == "test.log")
        .filter_map(|(_, v)| v["uid"].as_str().map(String::from))
        .filter(|u| u.starts_with("srv-") && u != "srv-upload")
        .collect();
    let emitted: Vec<String> = (0..25).map(|i| format!("srv-{i:03}")).collect();
    assert_eq!(uids, emitted, "after the refresh: in order, once each");
    drop(serve);
}

/// Every option, from each place it can come from: its flag, `FDFWD_<NAME>`,
/// `FDWRD_<NAME>` and the TOML key upstream's resolver reads.
#[test]
fn every_option_from_flag_both_env_spellings_and_toml() {
    use tapelog_forward::ForwardOptions;
    type Get = fn(&ForwardOptions) -> String;
    fn path(o: &Option<PathBuf>) -> String {
        o.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
    // (flag, TOML key as upstream's files write it, value, the value as resolved)
    let options: Vec<(&str, &str, &str, Get)> = vec![
        ("teleport-addr", "[teleport] addr", "h:1", |o| {
            o.teleport_addr.clone()
        }),
        ("teleport-ca", "[teleport] ca", "/x/ca", |o| {
            path(&o.teleport_ca)
        }),
        ("teleport-cert", "[teleport] cert", "/x/c", |o| {
            path(&o.teleport_cert)
        }),
        ("teleport-key", "[teleport] key", "/x/k", |o| {
            path(&o.teleport_key)
        }),
        ("teleport-identity", "[teleport] identity", "/x/i", |o| {
            path(&o.teleport_identity)
        }),
        (
            "teleport-refresh-enabled",
            "[teleport] refresh.enabled",
            "true",
            |o| o.teleport_refresh_enabled.to_string(),
        ),
        (
            "teleport-refresh-interval",
            "[teleport] refresh.interval",
            "90s",
            |o| format!("{:?}", o.teleport_refresh_interval),
        ),
        ("data-dir", "data-dir", "/x/data", |o| path(&o.data_dir)),
        (
            "fluentd-url",
            "[forward.fluentd] url",
            "https://x/t.log",
            |o| o.fluentd_url.clone(),
        ),
        (
            "fluentd-session-url",
            "[forward.fluentd] session-url",
            "https://x/s",
            |o| o.fluentd_session_url.clone(),
        ),
        ("fluentd-ca", "[forward.fluentd] ca", "/x/fca", |o| {
            path(&o.fluentd_ca)
        }),
        ("fluentd-cert", "[forward.fluentd] cert", "/x/fc", |o| {
            path(&o.fluentd_cert)
        }),
        ("fluentd-key", "[forward.fluentd] key", "/x/fk", |o| {
            path(&o.fluentd_key)
        }),
        (
            "fluentd-max-connections",
            "[forward.fluentd] max-connections",
            "7",
            |o| o.fluentd_max_connections.to_string(),
        ),
        ("storage", "storage", "/x/st", |o| {
            o.storage.display().to_string()
        }),
        ("batch", "batch", "77", |o| o.batch.to_string()),
        ("types", "types", "a.b,c.d", |o| o.types.join(",")),
        ("skip-event-types", "skip-event-types", "e.f", |o| {
            o.skip_event_types.join(",")
        }),
        ("skip-session-types", "skip-session-types", "print,g", |o| {
            o.skip_session_types.join(",")
        }),
        ("start-time", "start-time", "2024-01-02T03:04:05Z", |o| {
            o.start_time.map(|t| t.to_rfc3339()).unwrap_or_default()
        }),
        ("timeout", "timeout", "90s", |o| format!("{:?}", o.timeout)),
        ("cursor", "cursor", "key-1", |o| {
            o.cursor.clone().unwrap_or_default()
        }),
        ("concurrency", "concurrency", "9", |o| {
            o.concurrency.to_string()
        }),
        ("window-size", "window-size", "90s", |o| {
            format!("{:?}", o.window_size)
        }),
        ("dry-run", "dry-run", "true", |o| o.dry_run.to_string()),
        ("exit-on-last-event", "exit-on-last-event", "true", |o| {
            o.exit_on_last_event.to_string()
        }),
        ("debug", "debug", "true", |o| o.debug.to_string()),
    ];
    // The base: required options and a data dir (so partial --teleport-* are fine), in
    // TOML; each check overrides one option.
    let base: Vec<(&str, &str)> = vec![
        ("[forward.fluentd] url", "https://base/t.log"),
        ("[forward.fluentd] session-url", "https://base/s"),
        ("[forward.fluentd] cert", "/base/c"),
        ("[forward.fluentd] key", "/base/k"),
        ("storage", "/base/st"),
        ("data-dir", "/base/data"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let write_toml = |name: &str, entries: &[(&str, &str)]| -> PathBuf {
        let mut tables: BTreeMap<&str, Vec<(String, &str)>> = BTreeMap::new();
        for (key, value) in entries {
            let (table, k) = match key.strip_prefix('[') {
                Some(rest) => {
                    let (t, k) = rest.split_once("] ").unwrap();
                    (t, k.to_string())
                }
                None => ("", key.to_string()),
            };
            tables.entry(table).or_default().push((k, value));
        }
        let mut text = String::new();
        for (table, entries) in &tables {
            if !table.is_empty() {
                text.push_str(&format!("[{table}]\n"));
            }
            for (k, v) in entries {
                let v = match *v {
                    "true" => "true".to_string(),
                    n if n.parse::<u64>().is_ok() => n.to_string(),
                    s => format!("{s:?}"),
                };
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        let file = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        file
    };
    let base_toml = write_toml("base", &base);
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ForwardArgs,
    }
    use clap::Parser;
    for (name, toml_key, value, get) in &options {
        let upper = name.to_ascii_uppercase().replace('-', "_");
        // The flag.
        let cli = Cli::try_parse_from([
            "x".to_string(),
            "--config".into(),
            base_toml.display().to_string(),
            format!("--{name}"),
            value.to_string(),
        ])
        .unwrap_or_else(|e| panic!("--{name}: {e}"));
        let o = cli
            .args
            .resolve_with(|_| None)
            .unwrap_or_else(|e| panic!("--{name}: {e}"));
        assert_eq!(get(&o), *value, "--{name}");
        // Both spellings of the variable.
        for prefix in ["FDFWD", "FDWRD"] {
            let var = format!("{prefix}_{upper}");
            let args = ForwardArgs {
                config: Some(base_toml.display().to_string()),
                ..ForwardArgs::default()
            };
            let o = args
                .resolve_with(|n| (n == var).then(|| value.to_string()))
                .unwrap_or_else(|e| panic!("{var}: {e}"));
            assert_eq!(get(&o), *value, "{var}");
        }
        // The TOML key.
        let mut entries: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(k, _)| k != toml_key)
            .collect();
        entries.push((toml_key, value));
        let file = write_toml(name, &entries);
        let args = ForwardArgs {
            config: Some(file.display().to_string()),
            ..ForwardArgs::default()
        };
        let o = args
            .resolve_with(|_| None)
            .unwrap_or_else(|e| panic!("TOML {toml_key}: {e}"));
        assert_eq!(get(&o), *value, "TOML {toml_key}");
    }
    // --config itself from its variable (both spellings).
    for var in ["FDFWD_CONFIG", "FDWRD_CONFIG"] {
        let o = ForwardArgs::default()
            .resolve_with(|n| (n == var).then(|| base_toml.display().to_string()))
            .unwrap();
        assert_eq!(o.storage, PathBuf::from("/base/st"), "{var}");
    }
}

#[test]
fn sigterm_stops_after_the_request_in_flight_and_a_restart_resends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    f.set_latency(Duration::from_millis(100));
    let data = tmp.path().join("data");
    let storage = tmp.path().join("storage");
    let n = 20_000;
    emit(&data, &(0..n).map(event).collect::<Vec<_>>());
    let mut args = forward_args(&data, &storage, &f, &pki);
    args.push("--exit-on-last-event".into());
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(120), || audit_uids(&f)
        .len()
        >= n / 4));
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_child(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(err.contains("stopped:"), "{err}");
    let first = audit_uids(&f).len();
    assert!(first < n, "stopped mid-export ({first} of {n})");
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The request in flight finished within the grace period and its position was stored:
    // nothing comes twice, everything once, in order.
    let want: Vec<String> = (0..n).map(|i| format!("ev-{i:06}")).collect();
    assert_eq!(audit_uids(&f), want);
}

/// `tapelog forward` against a Teleport cluster: the Auth API test double of tapelog-teleport
/// (tonic, mutual TLS with Teleport-shaped certificates, an identity file in Teleport's
/// layout), `--teleport-addr HOST:PORT` as teleport-event-handler takes it. Polling mode
/// (`GetUnstructuredEvents` pages of `--batch`), the session of a `session.upload` through
/// `StreamUnstructuredSessionEvents` without `print`, upstream's state directory name; a
/// second run sends nothing again; a server failing calls for a while (`Unavailable`) is
/// waited out.
#[test]
fn forward_reads_a_teleport_cluster_in_polling_mode() {
    use tapelog_core::AuditEvent;
    use tapelog_teleport::double::Double;

    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(Double::start()).unwrap();
    let sid = "5f0fbb5c-0c2f-4b8e-9d1e-2d8f5a3b9c11";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |s: i64| {
        tapelog_core::Timestamp::from_unix_nanos(i128::from(s) * 1_000_000_000).to_rfc3339()
    };
    let ev = |v: serde_json::Value| AuditEvent::from_json(&v.to_string()).unwrap();
    let base = now - 1800;
    let mut audit: Vec<AuditEvent> = (0..45)
        .map(|i| {
            ev(serde_json::json!({"event": "user.login", "code": "T1000I",
                "uid": format!("tp-{i:03}"), "time": at(base + i), "user": format!("u{i}"),
                "success": true}))
        })
        .collect();
    // Four failed logins of mallory as root: the fourth finds the bucket (3 a minute) empty.
    for i in 0..4 {
        audit.push(ev(
            serde_json::json!({"event": "user.login", "code": "T1000W",
            "uid": format!("tp-fail-{i}"), "time": at(base + 70 + i), "user": "mallory",
            "login": "root", "success": false, "error": "bad password"}),
        ));
    }
    audit.push(ev(
        serde_json::json!({"event": "session.upload", "code": "T2005I",
        "uid": "tp-upload", "time": at(base + 100), "sid": sid,
        "url": format!("s3://bucket/{sid}")}),
    ));
    double.add_events(audit);
    let session = vec![
        ev(
            serde_json::json!({"event": "session.start", "code": "T2000I", "ei": 0,
            "uid": "s0", "time": at(base + 50), "sid": sid, "user": "alice"}),
        ),
        ev(
            serde_json::json!({"event": "print", "ei": 1, "time": at(base + 51), "ci": 0,
            "bytes": 3, "ms": 1000, "offset": 0}),
        ),
        ev(
            serde_json::json!({"event": "session.end", "code": "T2004I", "ei": 2,
            "uid": "s2", "time": at(base + 60), "sid": sid, "user": "alice"}),
        ),
    ];
    double.add_session(sid, session);

    let pki = Pki::new(&tmp.path().join("pki"));
    let f = Fluentd::start(&pki);
    let storage = tmp.path().join("storage");
    let p = |x: &Path| x.display().to_string();
    let args: Vec<String> = [
        vec![
            "forward".into(),
            "--teleport-addr".into(),
            double.addr(),
            "--teleport-identity".into(),
            p(&double.identity_file()),
            "--storage".into(),
            p(&storage),
        ],
        fluentd_args(&f, &pki),
        vec![
            "--start-time".into(),
            at(base - 3600),
            "--batch".into(),
            "20".into(),
            "--exit-on-last-event".into(),
            "--lock-enabled".into(),
            "--lock-for".into(),
            "1h".into(),
        ],
    ]
    .concat();
    // An older cluster: the export probe answers Unimplemented, so the exporter polls.
    double.set_export_unimplemented(true);
    // The first two calls fail as an Auth server that is restarting would.
    double.fail_next(2);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected: Vec<String> = (0..45).map(|i| format!("tp-{i:03}")).collect();
    expected.extend((0..4).map(|i| format!("tp-fail-{i}")));
    expected.push("tp-upload".into());
    assert_eq!(audit_uids(&f), expected, "every event once, in order");
    assert!(double.calls("GetUnstructuredEvents") >= 3, "pages of 20");
    assert!(
        double.calls("GetEventExportChunks") >= 1,
        "the export API was probed"
    );
    assert_eq!(double.calls("ExportUnstructuredEvents"), 0);
    let session: Vec<String> = f
        .records()
        .into_iter()
        .filter(|(tag, _)| *tag == format!("session.{sid}.log"))
        .map(|(_, v)| v["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        session,
        ["session.start", "session.end"],
        "print is skipped"
    );
    assert_eq!(double.calls_without_version(), 0);
    // Auto-lock: one UpsertLock, upstream's name, target, message and expiry.
    let locks = double.locks();
    assert_eq!(locks.len(), 1, "{locks:?}");
    let lock = &locks[0];
    assert_eq!(
        lock.metadata.as_ref().unwrap().name,
        "event-handler-auto-lock-mallory-root"
    );
    let spec = lock.spec.as_ref().unwrap();
    let target = spec.target.as_ref().unwrap();
    assert_eq!(
        (target.user.as_str(), target.login.as_str()),
        ("mallory", "root")
    );
    assert_eq!(
        spec.message,
        "User is locked due to too many failed login attempts"
    );
    let expires = spec.expires.as_ref().unwrap().seconds;
    assert!(
        (now + 3500..now + 3700 + 120).contains(&expires),
        "{expires} vs {now}"
    );
    let port = double.addr().rsplit(':').next().unwrap().to_string();
    let state = storage.join(format!("127.0.0.1_{port}"));
    assert!(state.join("start_time").exists(), "{}", state.display());
    assert!(
        !state.join(format!("session{sid}")).exists(),
        "session done"
    );

    // Again: nothing new to send.
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(audit_uids(&f), expected, "a second run sends nothing again");
    assert_eq!(
        double.locks().len(),
        1,
        "nothing new read, nothing locked again"
    );
    drop(double);
}
