//! `tapelog export --jobs N`: parts decoded on several threads give the same bytes, counters
//! and errors as the sequential path (`--jobs 1`), for every format; the text export (which
//! reads prints without the typed decode) gives the print data the typed reader finds.

use tapelog_core::codec::parallel::split;
use tapelog_core::codec::{WriterConfig, encode_recording, read_all};
use tapelog_core::vectors;

const FORMATS: [&str; 4] = ["json", "text", "asciicast", "proto"];

fn export(path: &str, format: &str, jobs: &str) -> std::process::Output {
    crate::util::tapelog([
        "export", "--format", format, "--stats", "--jobs", jobs, path,
    ])
    .output()
}

/// Exports `bytes` with 1, 2 and 5 jobs in every format and checks the outputs are equal.
fn same_whatever_the_jobs(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let p = path.to_str().unwrap();
    // The typed reader's print data, up to its error: what the text export must write.
    let reference = read_all(bytes);
    let mut want_text = Vec::new();
    for e in &reference.events {
        want_text.extend_from_slice(e.print_data().unwrap_or_default());
    }
    for format in FORMATS {
        let one = export(p, format, "1");
        let proto = matches!(
            tapelog_core::codec::detect_format(bytes),
            tapelog_core::codec::Format::ProtoV1 | tapelog_core::codec::Format::ProtoV2
        );
        if format == "text" && proto {
            assert!(
                one.stdout == want_text,
                "{name}: text export differs from the typed reader's prints ({} and {} bytes)",
                one.stdout.len(),
                want_text.len()
            );
            assert_eq!(
                one.status.code(),
                Some(if reference.error.is_some() { 1 } else { 0 }),
                "{name} text"
            );
        }
        for jobs in ["2", "5"] {
            let many = export(p, format, jobs);
            assert_eq!(
                many.status.code(),
                one.status.code(),
                "{name} {format} --jobs {jobs}"
            );
            assert!(
                many.stdout == one.stdout,
                "{name} {format} --jobs {jobs}: outputs differ ({} and {} bytes)",
                many.stdout.len(),
                one.stdout.len()
            );
            assert_eq!(
                String::from_utf8_lossy(&many.stderr),
                String::from_utf8_lossy(&one.stderr),
                "{name} {format} --jobs {jobs}"
            );
        }
    }
}

#[test]
fn every_vector_exports_the_same_with_any_number_of_jobs() {
    let dir = tempfile::tempdir().unwrap();
    for v in vectors::all() {
        same_whatever_the_jobs(dir.path(), &format!("{}.rec", v.name), &v.bytes);
    }
}

/// A session of many small parts (more than the in-flight window of 2 × jobs).
fn many_parts() -> Vec<u8> {
    let events = tapelog_core::sample::sample_session(12000);
    let config = WriterConfig {
        min_upload_bytes: 4 * 1024,
        ..WriterConfig::default()
    };
    encode_recording(&events, config).unwrap()
}

/// A recording of many small parts, and the same replayed, with a part left out, and
/// damaged three ways, by name (`parallel_read` reads them too).
pub(crate) fn replayed_and_damaged() -> Vec<(&'static str, Vec<u8>)> {
    let clean = many_parts();
    let parts: Vec<&[u8]> = split(&clean).into_iter().map(|(_, _, b)| b).collect();
    assert!(parts.len() > 20, "only {} parts", parts.len());
    let join = |ps: &[&[u8]]| ps.concat();

    // Parts 3..6 written again after part 8 (a resumed writer's replay), then the rest.
    let mut replayed: Vec<&[u8]> = parts[..9].to_vec();
    replayed.extend_from_slice(&parts[3..6]);
    replayed.extend_from_slice(&parts[9..]);
    let replayed = join(&replayed);
    let r = read_all(&replayed);
    assert!(r.error.is_none() && r.stats.skipped > 0);

    // A part left out: the next events skip ahead (out of order).
    let mut gap = parts.clone();
    gap.remove(7);
    let gap = join(&gap);
    assert!(read_all(&gap).stats.out_of_order > 0);

    // Damage in part 11's compressed bytes, a bad header at part 13, a cut inside part 15.
    let start = |k: usize| parts[..k].iter().map(|p| p.len()).sum::<usize>();
    let mut deflate = clean.clone();
    deflate[start(11) + 24 + 20] ^= 0x5a;
    let mut header = clean.clone();
    header[start(13) + 7] = 9;
    let cut = clean[..start(15) + parts[15].len() / 3].to_vec();
    vec![
        ("replayed", replayed),
        ("gap", gap),
        ("deflate", deflate),
        ("header", header),
        ("cut", cut),
        ("clean", clean),
    ]
}

#[test]
fn many_parts_with_replays_and_damage_export_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = replayed_and_damaged();
    for (name, bytes) in &recordings {
        same_whatever_the_jobs(dir.path(), name, bytes);
    }
    let named = |n: &str| &recordings.iter().find(|r| r.0 == n).unwrap().1;
    let (deflate, header, cut) = (named("deflate"), named("header"), named("cut"));

    // The damaged ones: every event before the damage is written, and the error names the
    // byte the sequential reader names.
    for (name, bytes, part) in [
        ("deflate", deflate, 11),
        ("header", header, 13),
        ("cut", cut, 15),
    ] {
        let want = read_all(bytes);
        let err = want.error.clone().unwrap();
        assert_eq!(err.part, part as u64, "{name}");
        let out = export(dir.path().join(name).to_str().unwrap(), "json", "4");
        assert_eq!(out.status.code(), Some(1), "{name}");
        let lines = out
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(lines, want.events.len(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("at byte {} (part {part}", err.offset)),
            "{name}: {stderr}"
        );
    }
}
