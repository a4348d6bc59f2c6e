//! The product end to end, with the real binary: `tapelog serve` on loopback, a real command
//! recorded through it by `tapelog record` in a real PTY, then searched, played and exported;
//! and `serve` killed with SIGKILL in the middle of a recording and started again: the
//! recorder resumes and the recording is exact.

use crate::util::TestCommand;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::util::serve::ServeProcess;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tapelog");

fn serve_args<'a>(data: &'a Path, listen: &'a str) -> impl FnOnce(&mut Command) + 'a {
    move |c| {
        c.arg("--data-dir")
            .arg(data)
            .args(["--listen", listen, "--completer-interval", "3600"])
            .stderr(Stdio::inherit());
    }
}

/// `tapelog serve` over `data` on `listen`.
fn start_serve(data: &Path, listen: &str) -> ServeProcess {
    ServeProcess::start(serve_args(data, listen))
}

/// `tapelog serve` over `data` on `listen`, a port just freed: tried again while the port
/// is still taken (up to 30 s).
fn restart_serve(data: &Path, listen: &str) -> ServeProcess {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ServeProcess::try_start(serve_args(data, listen)) {
            Ok(s) => return s,
            Err(e) => assert!(Instant::now() < deadline, "serve did not restart: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(args: &[&str]) -> Output {
    TestCommand::new().args(args).run()
}

/// What bash's `echo line $i` for 1..=n shows through a PTY.
fn lines(n: usize) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("line {i}\r\n").into_bytes())
        .collect()
}

fn token_file(data: &Path) -> PathBuf {
    data.join("admin.token")
}

#[test]
fn serve_record_search_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = start_serve(&data, "127.0.0.1:0");
    let token = token_file(&data);
    let token = token.to_str().unwrap();
    let sid = "5c7e1d2a-3b4c-4d5e-8f60-718293a4b5c6";

    let out = run(&[
        "record",
        "--server",
        &serve.url,
        "--token-file",
        token,
        "--session-id",
        sid,
        "--",
        "bash",
        "-c",
        "for i in $(seq 1 200); do echo line $i; done",
    ]);
    assert!(out.status.success());

    // The audit log has the session's start and end.
    let found = run(&[
        "search",
        "--server",
        &serve.url,
        "--token-file",
        token,
        "--json",
    ]);
    let text = String::from_utf8(found.stdout).unwrap();
    let types: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["sid"] == sid)
        .map(|v| v["event"].as_str().unwrap().to_string())
        .collect();
    assert!(types.contains(&"session.start".to_string()), "{types:?}");
    assert!(types.contains(&"session.end".to_string()), "{types:?}");

    // The stored recording holds exactly the command's output.
    let file = data.join("log/records").join(format!("{sid}.tar"));
    let exported = run(&["export", "--format", "text", file.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&exported.stdout),
        String::from_utf8_lossy(&lines(200))
    );

    // Exported through the server, the same bytes.
    let remote = run(&[
        "export",
        "--server",
        &serve.url,
        "--token-file",
        token,
        "--format",
        "text",
        sid,
    ]);
    assert_eq!(remote.stdout, exported.stdout);

    // And so does playing it through the server (stdout not a terminal: output only).
    let played = run(&[
        "play",
        "--server",
        &serve.url,
        "--token-file",
        token,
        "--max-idle",
        "0",
        sid,
    ]);
    assert_eq!(played.stdout, lines(200));
    drop(serve);
}

#[test]
fn serve_killed_mid_recording_recorder_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = start_serve(&data, "127.0.0.1:0");
    let listen = format!("127.0.0.1:{}", serve.port());
    let url = serve.url.clone();
    let token = token_file(&data);
    let sid = "0d1e2f30-4152-4637-8899-aabbccddeeff";
    let n = 300;
    let script = format!("for i in $(seq 1 {n}); do echo line $i; sleep 0.01; done");
    let mut record = Command::new(BIN)
        .args(["record", "--server", &url, "--token-file"])
        .arg(&token)
        .args(["--session-id", sid, "--", "bash", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // record copies the session's output to its stdout as it records it: that says how far
    // the session is, whatever the machine's load.
    let (progress, shown) = std::sync::mpsc::channel();
    let out = record.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = progress.send(line);
        }
    });

    // Let part of the session through (line 50 of 300, each 10 ms apart: the session has
    // 2.5 s or more to go), then kill the server and start it again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match shown.recv_timeout(left) {
            Ok(line) if line.trim_end() == "line 50" => break,
            Ok(_) => {}
            Err(e) => panic!("the session did not reach line 50 within 60 s: {e}"),
        }
    }
    assert!(
        record.try_wait().unwrap().is_none(),
        "the recording ended too soon"
    );
    serve.kill();
    let serve = restart_serve(&data, &listen);

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = record.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tapelog record did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(record.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "record failed: {err}");

    let file = data.join("log/records").join(format!("{sid}.tar"));
    let exported = run(&["export", "--format", "text", file.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&exported.stdout),
        String::from_utf8_lossy(&lines(n))
    );
    let json = run(&[
        "export",
        "--format",
        "json",
        "--stats",
        file.to_str().unwrap(),
    ]);
    let text = String::from_utf8(json.stdout).unwrap();
    let indexes: Vec<i64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["ei"].as_i64())
        .collect();
    let expected: Vec<i64> = (0..indexes.len() as i64).collect();
    assert_eq!(indexes, expected, "every event index once, in order");
    drop(serve);
}
