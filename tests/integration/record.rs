//! `tapelog record`: the real binary records real commands on a real PTY into a temporary
//! data directory; the recording, the audit log and the exit status are checked.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::pty::{OnPty, tapelog_bin, termios_fields};
use serde_json::Value;

const SID: &str = "5a0f3c1e-9b7d-4c2a-8e6f-1d2c3b4a5968";

fn lines_200() -> String {
    (1..=200).map(|i| format!("line {i}\r\n")).collect()
}

fn export(data: &Path, sid: &str, format: &str) -> Vec<u8> {
    let file = data.join("log/records").join(format!("{sid}.tar"));
    crate::util::tapelog(["export", "--format", format])
        .arg(&file)
        .run()
        .stdout
}

fn json_events(data: &Path, sid: &str) -> Vec<Value> {
    String::from_utf8(export(data, sid, "json"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn search(data: &Path, args: &[&str]) -> Vec<Value> {
    crate::util::tapelog(["search", "--data-dir"])
        .arg(data)
        .args(args)
        .args(["--json", "--all"])
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn record(data: &Path, sid: &str, cmd: &[&str]) -> std::process::Output {
    crate::util::tapelog(["record", "--data-dir"])
        .arg(data)
        .args([
            "--session-id",
            sid,
            "--cols",
            "100",
            "--rows",
            "30",
            "--user",
            "alice",
            "--server-id",
            "test-host",
            "--cluster-name",
            "test-cluster",
            "--",
        ])
        .args(cmd)
        .output()
}

#[test]
fn records_200_lines_exactly_with_session_events_in_recording_and_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let script = "for i in $(seq 1 200); do echo line $i; done";
    let out = record(data, SID, &["bash", "-c", script]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The terminal is passed through: our standard output got the same bytes.
    assert_eq!(String::from_utf8_lossy(&out.stdout), lines_200());
    assert!(stderr.contains(SID), "{stderr}");
    assert!(stderr.contains("tapelog play --data-dir"), "{stderr}");

    // The recording's terminal text.
    assert_eq!(
        String::from_utf8(export(data, SID, "text")).unwrap(),
        lines_200()
    );

    // Its session events.
    let events = json_events(data, SID);
    let start = &events[0];
    assert_eq!(start["event"], "session.start");
    assert_eq!(start["code"], "T2000I");
    assert_eq!(start["sid"], SID);
    assert_eq!(start["user"], "alice");
    assert!(start["login"].as_str().is_some_and(|l| !l.is_empty()));
    assert_eq!(start["server_id"], "test-host");
    assert_eq!(start["cluster_name"], "test-cluster");
    assert_eq!(start["namespace"], "default");
    assert_eq!(start["size"], "100:30");
    assert_eq!(
        start["initial_command"],
        serde_json::json!(["bash", "-c", script])
    );
    assert_eq!(start["session_recording"], "node");
    assert_eq!(start["ei"], 0);
    let end = events.last().unwrap();
    assert_eq!(end["event"], "session.end");
    assert_eq!(end["code"], "T2004I");
    assert_eq!(end["sid"], SID);
    assert_eq!(end["interactive"], true);
    assert_eq!(end["participants"], serde_json::json!(["alice"]));
    assert_eq!(end["session_start"], start["time"]);
    assert!(end["session_stop"].as_str().unwrap() >= start["time"].as_str().unwrap());
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let n = types.len();
    assert_eq!(
        &types[n - 3..],
        &["session.leave", "session.data", "session.end"]
    );
    assert!(types[1..n - 3].iter().all(|t| *t == "print"), "{types:?}");
    let data_ev = &events[n - 2];
    assert_eq!(data_ev["code"], "T2006I");
    assert_eq!(data_ev["tx"], lines_200().len());
    assert_eq!(data_ev["rx"], 0);
    assert_eq!(events[n - 3]["code"], "T2003I");
    // Indexes count from 0 without gaps.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["ei"], i, "{e}");
    }

    // The audit log has the same session events.
    let starts = search(data, &["--type", "session.start"]);
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0]["sid"], SID);
    assert_eq!(starts[0]["uid"], start["uid"]);
    assert_eq!(starts[0]["size"], "100:30");
    let sessions = search(data, &["--sessions", "--session-id", SID]);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["event"], "session.end");
    assert_eq!(sessions[0]["participants"], serde_json::json!(["alice"]));
    assert_eq!(sessions[0]["uid"], end["uid"]);
    for t in ["session.leave", "session.data"] {
        let found = search(data, &["--type", t]);
        assert_eq!(found.len(), 1, "{t}");
        assert_eq!(found[0]["sid"], SID);
    }
    assert_eq!(search(data, &["--type", "print"]).len(), 0);
}

#[test]
fn exit_status_is_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = record(dir.path(), SID, &["bash", "-c", "echo bye; exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(export(dir.path(), SID, "text"), b"bye\r\n");
    // Ended by a signal: 128 + its number, as a shell reports it.
    let sid2 = "5a0f3c1e-9b7d-4c2a-8e6f-1d2c3b4a5969";
    let out = record(dir.path(), sid2, &["bash", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
    let events = json_events(dir.path(), sid2);
    assert_eq!(events.last().unwrap()["event"], "session.end");
}

#[test]
fn a_missing_command_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = record(dir.path(), SID, &["/nonexistent/tapelog-test-command"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/tapelog-test-command") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn a_resize_of_the_outer_terminal_is_recorded_and_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut cmd = Command::new(tapelog_bin());
    cmd.args(["record", "--data-dir"])
        .arg(data)
        .args(["--session-id", SID, "--user", "bob", "--"])
        .args(["bash", "-c", "echo ready; while read x; do stty size; done"]);
    let mut p = OnPty::start(&mut cmd, 90, 20);
    let before = p.initial;
    p.wait_for("ready", Duration::from_secs(20), |o| {
        String::from_utf8_lossy(o).contains("ready")
    });
    // tapelog has the test terminal in raw mode while the command runs.
    assert_eq!(p.attributes().c_lflag & libc::ECHO, 0);

    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: a valid winsize for TIOCSWINSZ on our PTY.
    assert_eq!(
        unsafe { libc::ioctl(p.pty.master().as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGWINCH) };
    // The command's terminal follows: `stty size` prints "40 120" (ask until it does).
    let start = std::time::Instant::now();
    while !String::from_utf8_lossy(&p.output()).contains("40 120") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the session's terminal was not resized: {:?}",
            String::from_utf8_lossy(&p.output())
        );
        p.send(b"\r");
        std::thread::sleep(Duration::from_millis(200));
    }
    // End of input for `read`: the loop ends, bash exits, the recording completes.
    p.send(b"\x04");
    let status = p.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    assert_eq!(termios_fields(&p.attributes()), termios_fields(&before));

    let events = json_events(data, SID);
    assert_eq!(events[0]["size"], "90:20");
    let resizes: Vec<&Value> = events.iter().filter(|e| e["event"] == "resize").collect();
    assert_eq!(resizes.len(), 1, "{events:?}");
    assert_eq!(resizes[0]["code"], "T2002I");
    assert_eq!(resizes[0]["size"], "120:40");
    assert_eq!(resizes[0]["user"], "bob");
    assert_eq!(resizes[0]["sid"], SID);
    let text = String::from_utf8(export(data, SID, "text")).unwrap();
    assert!(text.starts_with("ready\r\n"), "{text:?}");
    assert!(text.contains("40 120\r\n"), "{text:?}");
    // Keystrokes reached the command: session.data counts them.
    let data_ev = events
        .iter()
        .find(|e| e["event"] == "session.data")
        .unwrap();
    assert!(data_ev["rx"].as_u64().unwrap() >= 2, "{data_ev}");
}

use std::os::fd::AsRawFd;
