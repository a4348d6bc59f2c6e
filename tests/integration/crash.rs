//! A real crash: the `tapelog upload` process is killed with SIGKILL part-way through an
//! upload; a second process resumes it from the store and completes it, and the upload
//! completer completes one that nobody resumes. Nothing a status update acknowledged is lost.

use crate::util::TestCommand;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tapelog_core::AuditEvent;
use tapelog_core::codec::{WriterConfig, encode_recording, read_all};
use tapelog_core::vectors;

const BIN: &str = env!("CARGO_BIN_EXE_tapelog");

/// Where the killed upload goes: a directory, or native S3 multipart uploads on moto.
enum Place {
    Dir(std::path::PathBuf),
    S3 { url: String },
}

impl Place {
    fn s3() -> Place {
        let moto = crate::util::stores::moto();
        // Teleport's own query options carry the endpoint (`insecure`: plain HTTP).
        let host = moto.endpoint.trim_start_matches("http://");
        Place::S3 {
            url: format!("s3://{}/crash?endpoint={host}&insecure=true", moto.bucket()),
        }
    }

    /// `--storage ...` and the credentials of the store.
    fn apply(&self, cmd: &mut Command) {
        match self {
            Place::Dir(d) => {
                cmd.arg("--storage").arg(d);
            }
            Place::S3 { url } => {
                cmd.arg("--storage")
                    .arg(url)
                    .env("AWS_ACCESS_KEY_ID", crate::util::stores::S3_ACCESS_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", crate::util::stores::S3_SECRET_KEY)
                    .env("AWS_REGION", "us-east-1");
            }
        }
    }

    /// The completed recording of `sid`.
    fn recording(&self, sid: &str) -> Vec<u8> {
        match self {
            Place::Dir(d) => std::fs::read(d.join(format!("{sid}.tar"))).unwrap(),
            Place::S3 { url } => {
                let moto = crate::util::stores::moto();
                let s = tapelog_store::open_storage(url, &moto.options()).unwrap();
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async {
                    use object_store::ObjectStoreExt;
                    s.store()
                        .get(&s.recording_path(sid))
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap()
                        .to_vec()
                })
            }
        }
    }

    /// The recording URL `tapelog` prints for `sid`.
    fn recording_url(&self, sid: &str) -> String {
        match self {
            Place::Dir(d) => format!("file://{}/{sid}", d.display()),
            Place::S3 { url } => {
                let base = url.split('?').next().unwrap();
                format!("{base}/{sid}")
            }
        }
    }
}

/// A recording of `n` poorly compressible events for session `sid`, written to `path`.
fn write_recording(path: &Path, n: usize, sid: &str) -> Vec<AuditEvent> {
    let mut events = vectors::noisy_session(n);
    for e in &mut events {
        if let Some(s) = e.session_metadata_mut() {
            s.session_id = sid.to_string();
        }
    }
    let bytes = encode_recording(&events, WriterConfig::default()).unwrap();
    std::fs::write(path, bytes).unwrap();
    events
}

/// Starts `tapelog upload` slowly (rate-limited) and kills it with SIGKILL once the store has
/// acknowledged at least `min_durable`. Returns the upload id and the highest acknowledged
/// index.
fn upload_and_kill(file: &Path, store: &Place, min_durable: i64) -> (String, i64) {
    let rate = std::fs::metadata(file).unwrap().len() / 6; // about 6 s for the whole file
    let mut cmd = Command::new(BIN);
    cmd.args(["upload", "--part-size", "70000", "--concurrency", "2"])
        .args(["--rate", &rate.to_string(), "--print-status"]);
    store.apply(&mut cmd);
    let mut child: Child = cmd
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut upload = None;
    let mut durable = -1;
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            assert!(
                child.try_wait().unwrap().is_none(),
                "tapelog upload ended before it could be killed"
            );
            continue;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["upload", id, "session", _] => upload = Some(id.to_string()),
            ["durable", i] => durable = durable.max(i.parse().unwrap()),
            _ => panic!("unexpected output {line:?}"),
        }
        if durable >= min_durable {
            break;
        }
    }
    assert!(durable >= min_durable, "no status reached {min_durable}");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not finished");
    // Status lines printed before the kill was noticed.
    while let Ok(line) = rx.try_recv() {
        if let Some(i) = line.strip_prefix("durable ") {
            durable = durable.max(i.parse().unwrap());
        }
    }
    (upload.expect("the upload id is printed first"), durable)
}

fn run(args: &[&str], store: &Place) -> String {
    let mut c = TestCommand::new();
    c.args(args);
    store.apply(c.cmd());
    let out = c.run();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_killed_upload_is_resumed_by_another_process_and_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    killed_upload_resumed(&dir, &Place::Dir(dir.path().join("store")));
}

/// The same with native S3 multipart uploads (moto): the resume finds each part's events in
/// tapelog's span objects, since S3 can't give an unfinished upload's parts back.
#[test]
fn a_killed_s3_multipart_upload_is_resumed_by_another_process_and_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    killed_upload_resumed(&dir, &Place::s3());
}

fn killed_upload_resumed(dir: &tempfile::TempDir, store: &Place) {
    let file = dir.path().join("rec.tar");
    let sid = "0d7a1f8e-3b2c-4e5f-9a6b-7c8d9e0f1a2b";
    let events = write_recording(&file, 30_000, sid);
    let (upload, acked) = upload_and_kill(&file, store, 3000);
    assert!(acked < events.last().unwrap().index(), "killed part-way");

    let listed = run(&["uploads", "list", "--json"], store);
    assert!(listed.contains(&upload), "{listed}");

    let mut resume = TestCommand::new();
    resume.args(["upload", "--part-size", "70000", "--resume", &upload]);
    store.apply(resume.cmd());
    let out = resume.arg(&file).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("upload {upload} session {sid}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("complete {}", store.recording_url(sid))),
        "{stdout}"
    );
    assert!(
        stderr.contains("the store holds every event up to index"),
        "{stderr}"
    );

    let got = read_all(&store.recording(sid));
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.stats.out_of_order, 0);
    assert_eq!(got.events.len(), events.len());
    assert!(got.events == events, "the resumed recording differs");
    let listed = run(&["uploads", "list", "--json"], store);
    assert!(
        !listed.contains(&upload),
        "completed upload still listed: {listed}"
    );
}

#[test]
fn the_completer_completes_a_killed_upload_that_nobody_resumes() {
    let dir = tempfile::tempdir().unwrap();
    killed_upload_completed(&dir, &Place::Dir(dir.path().join("store")));
}

/// The same with native S3 multipart uploads (moto): `CompleteMultipartUpload`, then the
/// completer reads the recording for its session end, as upstream's does.
#[test]
fn the_completer_completes_a_killed_s3_multipart_upload_that_nobody_resumes() {
    let dir = tempfile::tempdir().unwrap();
    killed_upload_completed(&dir, &Place::s3());
}

fn killed_upload_completed(dir: &tempfile::TempDir, store: &Place) {
    let file = dir.path().join("rec.tar");
    let sid = "5e2b8c1d-6f4a-4b3c-8d2e-1f0a9b8c7d6e";
    let events = write_recording(&file, 30_000, sid);
    let (upload, acked) = upload_and_kill(&file, store, 2000);
    let events_out = dir.path().join("events.jsonl");
    let mut complete = TestCommand::new();
    complete.args(["uploads", "complete", "--grace", "0", "--events"]);
    complete.arg(&events_out);
    store.apply(complete.cmd());
    complete.run();
    let got = read_all(&store.recording(sid));
    assert!(got.error.is_none(), "{:?}", got.error);
    // Every acknowledged event is there, in order, exactly as recorded.
    let acked_events: Vec<&AuditEvent> = events.iter().filter(|e| e.index() <= acked).collect();
    assert!(got.events.len() >= acked_events.len());
    for (want, have) in acked_events.iter().zip(&got.events) {
        assert!(*want == have, "event {} differs", want.index());
    }
    let emitted = std::fs::read_to_string(&events_out).unwrap();
    assert!(
        emitted.contains("\"event\":\"session.upload\""),
        "{emitted}"
    );
    assert!(emitted.contains(sid), "{emitted}");
    // The killed recording had no session.end: one was recovered.
    assert!(emitted.contains("\"event\":\"session.end\""), "{emitted}");
    let listed = run(&["uploads", "list", "--json"], store);
    assert!(!listed.contains(&upload), "{listed}");
}

/// While `tapelog upload` is still sending, another process completes its upload (the
/// completer with no grace): the first process says the upload was completed by another
/// process, names the recording, does not offer `--resume`, and exits non-zero.
#[test]
fn an_upload_completed_by_another_process_stops_the_writer_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("in.tar");
    let sid = "6a1f0c2e-57b1-4f0e-9d55-3c1f7e3f0a11";
    write_recording(&file, 4000, sid);
    let rate = std::fs::metadata(&file).unwrap().len() / 8; // about 8 s for the whole file
    let mut child: Child = Command::new(BIN)
        .args(["upload", "--part-size", "70000", "--concurrency", "1"])
        .args(["--rate", &rate.to_string(), "--print-status", "--storage"])
        .arg(&store)
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until a part is durable, then complete the upload from another process.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no part became durable");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
            && let Some(i) = line.strip_prefix("durable ")
            && i.parse::<i64>().unwrap() >= 0
        {
            break;
        }
    }
    TestCommand::new()
        .args(["uploads", "complete", "--grace", "0", "--storage"])
        .arg(&store)
        .run();
    let status = child.wait_timeout_or_kill(Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "the writer must fail: {stderr}");
    assert!(
        stderr.contains("no longer open: another process completed or took over it"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "(the recording is at file://{}/{sid})",
            store.display()
        )),
        "{stderr}"
    );
    assert!(store.join(format!("{sid}.tar")).is_file());
    assert!(!stderr.contains("--resume"), "{stderr}");
}

/// `wait` with a bound: kills the child if it has not ended in time.
trait WaitBounded {
    fn wait_timeout_or_kill(&mut self, limit: Duration) -> std::process::ExitStatus;
}

impl WaitBounded for Child {
    fn wait_timeout_or_kill(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill().unwrap();
        panic!("the writer did not stop within {limit:?}");
    }
}
