//! `tapelog export --format asciicast` checked by asciinema itself: `asciinema cat` (asciinema
//! 2.4.0 from PyPI, installed by scripts/setup.sh into target/asciinema) must print exactly the
//! bytes of `tapelog export --format text`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tapelog_core::AuditEvent;
use tapelog_core::codec::{WriterConfig, encode_recording};
use tapelog_core::event::{Metadata, Resize, event_code, event_type};
use tapelog_core::proto::Timestamp;
use tapelog_core::vectors::{SESSION_ID, START_MILLIS, print, sample_session};

/// asciinema: target/asciinema/bin/asciinema (scripts/setup.sh), else on PATH.
fn asciinema() -> PathBuf {
    let local =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/asciinema/bin/asciinema");
    if local.exists() {
        return local;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("asciinema"))
            .find(|p| p.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "asciinema is missing: neither {} nor `asciinema` on PATH. Install it with \
             `bash scripts/setup.sh` (asciinema 2.4.0 from PyPI into target/asciinema)",
            local.display()
        )
    })
}

fn tapelog(args: &[&str]) -> Vec<u8> {
    crate::util::tapelog(args).run().stdout
}

/// `asciinema cat FILE`'s standard output. It runs without a controlling terminal (its own
/// session), so it does not touch the terminal of whoever runs the tests.
fn asciinema_cat(cast: &Path) -> Vec<u8> {
    // asciinema writes an install id into its config dir on first use; parallel first uses
    // race on it ("no install ID found"), so each call gets a config dir of its own.
    let config = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(asciinema());
    cmd.arg("cat")
        .arg(cast)
        .env("PYTHONIOENCODING", "utf-8")
        .env("ASCIINEMA_CONFIG_HOME", config.path())
        .stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "asciinema cat {}: {}",
        cast.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Exports `events` as asciicast and text; asciinema's output must equal the text.
fn check(dir: &Path, name: &str, events: &[AuditEvent]) -> String {
    let file = dir.join(format!("{name}.tar"));
    std::fs::write(
        &file,
        encode_recording(events, WriterConfig::default()).unwrap(),
    )
    .unwrap();
    let cast = dir.join(format!("{name}.cast"));
    let f = file.to_str().unwrap();
    tapelog(&[
        "export",
        "--format",
        "asciicast",
        "-o",
        cast.to_str().unwrap(),
        f,
    ]);
    let text = tapelog(&["export", "--format", "text", f]);
    assert!(!text.is_empty());
    let catted = asciinema_cat(&cast);
    assert_eq!(
        String::from_utf8_lossy(&catted),
        String::from_utf8_lossy(&text),
        "{name}"
    );
    assert_eq!(catted, text, "{name}");
    std::fs::read_to_string(&cast).unwrap()
}

#[test]
fn asciinema_version_is_2_4_0() {
    let out = Command::new(asciinema()).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "asciinema 2.4.0"
    );
}

#[test]
fn the_sample_recording() {
    let dir = tempfile::tempdir().unwrap();
    let cast = check(dir.path(), "sample", &sample_session(120));
    let header: serde_json::Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(25))
    );
    assert_eq!(header["timestamp"].as_i64(), Some(START_MILLIS / 1000));
}

#[test]
fn utf8_split_across_prints() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Grüße, 世界! ✓ naïve café — 😀🎉\r\n\x1b[1mbold ünïcödé\x1b[0m\r\n".repeat(20);
    let bytes = text.as_bytes();
    let sample = sample_session(0);
    let mut events = vec![sample[0].clone()];
    // Cut at every 1..7 bytes, so that many multi-byte characters are split.
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = (i % 7 + 1).min(bytes.len() - at);
        events.push(print(
            i as i64 + 1,
            i as i64,
            at as i64,
            i as i64 * 3,
            &bytes[at..at + n],
        ));
        at += n;
        i += 1;
    }
    let cast = check(dir.path(), "utf8", &events);
    assert!(!cast.contains('\u{fffd}'));
}

#[test]
fn resizes() {
    let dir = tempfile::tempdir().unwrap();
    let resize = |index: i64, ms: i64, size: &str| -> AuditEvent {
        Resize {
            metadata: Metadata {
                index,
                type_: event_type::RESIZE.into(),
                code: event_code::TERMINAL_RESIZE.into(),
                time: Timestamp::from_unix_millis(START_MILLIS + ms),
                ..Default::default()
            },
            terminal_size: size.into(),
            ..Default::default()
        }
        .into()
    };
    let mut events = sample_session(0)[..1].to_vec();
    events.push(print(1, 0, 0, 10, b"before\r\n"));
    events.push(resize(2, 500, "120:40"));
    events.push(print(3, 1, 8, 600, b"\x1b[2Jwide\r\n"));
    events.push(resize(4, 900, "40:10"));
    events.push(print(5, 2, 21, 1000, b"narrow\r\n"));
    let cast = check(dir.path(), "resizes", &events);
    let lines: Vec<serde_json::Value> = cast
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["title"], format!("session {SESSION_ID}"));
    assert_eq!(lines[2], serde_json::json!([0.5, "r", "120x40"]));
    assert_eq!(lines[4], serde_json::json!([0.9, "r", "40x10"]));
}
