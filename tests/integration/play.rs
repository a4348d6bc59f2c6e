//! `tapelog play`: the real binary plays recordings made here, to a pipe (output and printed
//! timing) and on a test PTY (keys: space, arrows, q; the terminal restored).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::pty::{OnPty, tapelog_bin, termios_fields};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{WriterConfig, encode_recording};
use tapelog_core::vectors::{SESSION_ID, print, sample_session};

/// A recording of session.start, one print per entry of `prints` (delay in ms, data), and
/// session.end, written to `dir/name`.
fn write_recording(dir: &Path, name: &str, prints: &[(i64, Vec<u8>)]) -> PathBuf {
    let sample = sample_session(0);
    let mut start = sample[0].clone();
    if let AuditEvent::SessionStart(s) = &mut start {
        // The test terminal's size.
        s.terminal_size = "80:24".into();
    }
    let mut events: Vec<AuditEvent> = vec![start];
    let mut offset = 0;
    for (i, (ms, data)) in prints.iter().enumerate() {
        let mut p = print(i as i64 + 1, i as i64, offset, *ms, data);
        p.set_time(tapelog_core::Timestamp::from_unix_millis(
            tapelog_core::vectors::START_MILLIS + ms,
        ));
        events.push(p);
        offset += data.len() as i64;
    }
    let mut end = sample[2].clone();
    end.set_index(prints.len() as i64 + 1);
    events.push(end);
    let path = dir.join(name);
    std::fs::write(
        &path,
        encode_recording(&events, WriterConfig::default()).unwrap(),
    )
    .unwrap();
    path
}

fn tapelog(args: &[&str]) -> std::process::Output {
    crate::util::tapelog(args).run()
}

#[test]
fn output_to_a_pipe_equals_the_text_export_by_file_and_by_session_id() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sample.tar");
    let f = file.to_str().unwrap();
    tapelog(&["sample", "-o", f, "--lines", "40"]);
    let text = tapelog(&["export", "--format", "text", f]).stdout;
    assert!(!text.is_empty());
    let played = tapelog(&["play", "--speed", "20", f]).stdout;
    assert_eq!(played, text);

    // By session id, from the data directory's records.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("log/records")).unwrap();
    std::fs::copy(&file, data.join(format!("log/records/{SESSION_ID}.tar"))).unwrap();
    let by_id = tapelog(&[
        "play",
        "--speed",
        "20",
        "--data-dir",
        data.to_str().unwrap(),
        SESSION_ID,
    ])
    .stdout;
    assert_eq!(by_id, text);

    // An unknown session id says where it looked.
    let out = crate::util::tapelog(["play", "--data-dir", data.to_str().unwrap()])
        .arg("0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b")
        .run_fail();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no recording of session 0b0b0b0b") && stderr.contains("log/records"),
        "{stderr}"
    );
}

/// The `DELAY BYTES` lines of a timing file.
fn timing(path: &Path) -> Vec<(f64, usize)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (d, n) = l.split_once(' ').unwrap();
            (d.parse().unwrap(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn max_idle_and_speed_shorten_long_gaps() {
    let dir = tempfile::tempdir().unwrap();
    // Four outputs 10 s apart: 30 s of session.
    let prints: Vec<(i64, Vec<u8>)> = (0..4)
        .map(|i| (i * 10_000, format!("step {i}\r\n").into_bytes()))
        .collect();
    let file = write_recording(dir.path(), "gaps.tar", &prints);
    let f = file.to_str().unwrap();
    let text: Vec<u8> = prints.iter().flat_map(|(_, d)| d.clone()).collect();
    let t = dir.path().join("timing");
    let ts = t.to_str().unwrap();

    let started = Instant::now();
    let out = tapelog(&["play", "--max-idle", "0.25", "--timing", ts, f]);
    let took = started.elapsed();
    assert_eq!(out.stdout, text);
    assert_eq!(timing(&t), vec![(0.0, 8), (0.25, 8), (0.25, 8), (0.25, 8)]);
    // The real run follows the schedule (0.75 s); generously bounded, far below 30 s.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(took >= Duration::from_millis(700), "{took:?}");

    tapelog(&["play", "--speed", "4", "--max-idle", "2", "--timing", ts, f]);
    assert_eq!(timing(&t), vec![(0.0, 8), (0.5, 8), (0.5, 8), (0.5, 8)]);

    tapelog(&["play", "--speed", "1000", "--timing", ts, f]);
    assert_eq!(timing(&t), vec![(0.0, 8), (0.01, 8), (0.01, 8), (0.01, 8)]);

    for (bad, flag) in [
        ("--speed=0", "--speed"),
        ("--speed=-1", "--speed"),
        ("--max-idle=-2", "--max-idle"),
    ] {
        let out = crate::util::tapelog(["play", bad, f]).run_fail();
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(flag), "{bad}");
    }
}

/// The highest `line N` on the screen the test's terminal shows.
fn last_line(screen: &vt100::Parser) -> Option<u32> {
    screen
        .screen()
        .contents()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("line ")?.parse().ok())
        .max()
}

fn screen_of(bytes: &[u8]) -> vt100::Parser {
    let mut p = vt100::Parser::new(
        std::num::NonZeroU16::new(24).unwrap(),
        std::num::NonZeroU16::new(80).unwrap(),
        0,
    );
    p.process(bytes);
    p
}

#[test]
fn keys_pause_seek_and_quit_on_a_terminal_and_the_terminal_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    // "line N" at N seconds, for 60 s.
    let prints: Vec<(i64, Vec<u8>)> = (0..60)
        .map(|i| (i * 1000, format!("line {i}\r\n").into_bytes()))
        .collect();
    let file = write_recording(dir.path(), "lines.tar", &prints);
    let mut cmd = Command::new(tapelog_bin());
    cmd.arg("play").arg(&file);
    let started = Instant::now();
    let mut p = OnPty::start(&mut cmd, 80, 24);
    let before = p.initial;
    let limit = Duration::from_secs(10);
    p.wait_for("line 0", limit, |o| last_line(&screen_of(o)) == Some(0));
    assert_eq!(
        p.attributes().c_lflag & libc::ICANON,
        0,
        "raw mode while playing"
    );

    // Three steps forward (5 s each): line 15 shows long before its time.
    p.send(b"\x1b[C\x1b[C\x1b[C");
    p.wait_for("a seek to line 15", limit, |o| {
        last_line(&screen_of(o)).is_some_and(|n| n >= 15)
    });
    assert!(started.elapsed() < Duration::from_secs(12));

    // Space pauses: nothing is written while paused.
    p.send(b" ");
    std::thread::sleep(Duration::from_millis(400));
    let paused_at = p.output_len();
    let paused_line = last_line(&screen_of(&p.output())).unwrap();
    // Lines come every second while playing: nothing for 2.5 s, checked every 100 ms.
    let quiet_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < quiet_until {
        assert_eq!(p.output_len(), paused_at, "output while paused");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Space resumes.
    p.send(b" ");
    p.wait_for("output after resuming", limit, |o| {
        last_line(&screen_of(o)).is_some_and(|n| n > paused_line)
    });

    // Two steps back: the screen is redrawn as it was 10 s earlier.
    let here = last_line(&screen_of(&p.output())).unwrap();
    p.send(b"\x1b[D\x1b[D");
    p.wait_for("a seek back", limit, |o| {
        last_line(&screen_of(o)).is_some_and(|n| n + 8 <= here)
    });
    let screen = screen_of(&p.output());
    let back = last_line(&screen).unwrap();
    // The redrawn screen holds the lines before the target, in order, up to it.
    let contents = screen.screen().contents();
    assert!(
        contents.contains(&format!("line {}\nline {back}", back - 1)),
        "{contents}"
    );

    p.send(b"q");
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "q did not quit"
    );
    assert_eq!(termios_fields(&p.attributes()), termios_fields(&before));
}

#[test]
fn ctrl_c_quits_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let prints: Vec<(i64, Vec<u8>)> = (0..30)
        .map(|i| (i * 1000, format!("line {i}\r\n").into_bytes()))
        .collect();
    let file = write_recording(dir.path(), "lines.tar", &prints);
    let mut cmd = Command::new(tapelog_bin());
    cmd.arg("play").arg(&file);
    let mut p = OnPty::start(&mut cmd, 80, 24);
    let before = p.initial;
    p.wait_for("line 0", Duration::from_secs(10), |o| {
        last_line(&screen_of(o)) == Some(0)
    });
    p.send(b"\x03");
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert_eq!(termios_fields(&p.attributes()), termios_fields(&before));
    // SIGTERM while playing: also a clean exit.
    let mut cmd = Command::new(tapelog_bin());
    cmd.arg("play").arg(&file);
    let mut p = OnPty::start(&mut cmd, 80, 24);
    p.wait_for("line 0", Duration::from_secs(10), |o| {
        last_line(&screen_of(o)) == Some(0)
    });
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert_eq!(termios_fields(&p.attributes()), termios_fields(&p.initial));
}
