//! The `tapelog` binary on the test vectors: what a user sees.

use crate::util::repo_root;
use tapelog_core::codec::read_all;
use tapelog_core::vectors::{self, Expect};

fn tapelog(args: &[&str]) -> std::process::Output {
    crate::util::tapelog(args).output()
}

#[test]
fn export_json_and_text_of_every_vector() {
    let dir = tempfile::tempdir().unwrap();
    for v in vectors::all() {
        let path = dir.path().join(format!("{}.tar", v.name));
        std::fs::write(&path, &v.bytes).unwrap();
        let p = path.to_str().unwrap();
        let json = tapelog(&["export", "--format", "json", "--stats", p]);
        let text = tapelog(&["export", "--format", "text", p]);
        match &v.expect {
            Expect::Events { events, stats } => {
                assert!(
                    json.status.success(),
                    "{}: {}",
                    v.name,
                    String::from_utf8_lossy(&json.stderr)
                );
                let want: String = events.iter().map(|e| e.to_json() + "\n").collect();
                assert_eq!(String::from_utf8(json.stdout).unwrap(), want, "{}", v.name);
                let out: Vec<u8> = events
                    .iter()
                    .filter_map(|e| e.print_data())
                    .flatten()
                    .copied()
                    .collect();
                assert_eq!(text.stdout, out, "{}", v.name);
                // Every format counts its events (a legacy tar too: its total is the events read).
                let stderr = String::from_utf8_lossy(&json.stderr);
                assert!(
                    stderr.contains(&format!(
                        "total={} skipped={} out-of-order={}",
                        stats.0, stats.1, stats.2
                    )),
                    "{}: {stderr}",
                    v.name
                );
            }
            Expect::Error { before, offset, .. } => {
                assert_eq!(json.status.code(), Some(1), "{}", v.name);
                let lines = String::from_utf8(json.stdout).unwrap().lines().count();
                assert_eq!(lines, *before, "{}: events before the damage", v.name);
                let stderr = String::from_utf8_lossy(&json.stderr);
                assert!(
                    stderr.contains(&format!("at byte {offset}")),
                    "{}: {stderr}",
                    v.name
                );
                assert!(
                    stderr.contains(p),
                    "{}: the message names the file: {stderr}",
                    v.name
                );
            }
        }
    }
}

#[test]
fn export_proto_normalises_any_readable_recording() {
    let dir = tempfile::tempdir().unwrap();
    for v in vectors::all() {
        let Expect::Events { events, .. } = &v.expect else {
            continue;
        };
        let input = dir.path().join(format!("{}.in", v.name));
        let output = dir.path().join(format!("{}.out", v.name));
        std::fs::write(&input, &v.bytes).unwrap();
        let r = tapelog(&[
            "export",
            "--format",
            "proto",
            "--part-size",
            "100000",
            "-o",
            output.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        assert!(
            r.status.success(),
            "{}: {}",
            v.name,
            String::from_utf8_lossy(&r.stderr)
        );
        let back = read_all(&std::fs::read(&output).unwrap());
        assert!(back.error.is_none(), "{}: {:?}", v.name, back.error);
        assert_eq!(&back.events, events, "{}", v.name);
        assert_eq!(
            (back.stats.skipped, back.stats.out_of_order),
            (0, 0),
            "{}",
            v.name
        );
    }
}

#[test]
fn export_reads_standard_input() {
    let v = &vectors::all()[0];
    let out = crate::util::tapelog(["export", "--format", "text", "-"])
        .stdin(v.bytes.clone())
        .run();
    assert_eq!(out.stdout, vectors::sample_output(40));
}

#[test]
fn not_a_recording_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "hello, this is not a recording\n").unwrap();
    let r = tapelog(&["export", p.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("not a recording"), "{stderr}");
    let r = tapelog(&["export", dir.path().join("missing.tar").to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("missing.tar"));
}

#[test]
fn shipped_legacy_example_is_the_vector_builders_output() {
    let shipped = std::fs::read(repo_root().join("examples/legacy-session.tar")).unwrap();
    assert_eq!(
        shipped,
        vectors::legacy_tar(20),
        "regenerate with: cargo run -p tapelog-tests --bin write-examples"
    );
}
