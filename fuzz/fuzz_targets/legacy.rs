//! Legacy (pre-4.4) recordings: tar archives and the per-server session files.
//!
//! The first byte chooses the input's form:
//! - even: the rest is a tar archive. `read_tar` never panics; the files it finds, written
//!   again with `write_tar`, read back the same; a recording assembled from them is checked
//!   as below.
//! - odd: the rest is a list of session files `[source len u8][source][name len u8][name]
//!   [data len u16 LE][data]…` whose `.gz` files the harness compresses, so that the index,
//!   the event lines and the chunk offsets are fuzzed rather than the gzip checksums.
//!
//! Whenever `assemble` reads a session, `assemble_events` (the same without print data)
//! must read it too, to the same events with print data left out, and every event must
//! print JSON that reads back to the same JSON.
#![no_main]
use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use tapelog_core::AuditEvent;
use tapelog_core::codec::legacy::{
    LegacyFile, assemble, assemble_events, chunk_entries, index_entries, read_tar, write_tar,
};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// The session files of the odd form.
fn files(mut rest: &[u8]) -> Vec<LegacyFile> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head)
    }
    let mut out = Vec::new();
    loop {
        let Some(&[n]) = take(&mut rest, 1) else {
            break;
        };
        let Some(source) = take(&mut rest, n.into()) else {
            break;
        };
        let Some(&[n]) = take(&mut rest, 1) else {
            break;
        };
        let Some(name) = take(&mut rest, n.into()) else {
            break;
        };
        let Some(&[lo, hi]) = take(&mut rest, 2) else {
            break;
        };
        let len = usize::from(u16::from_le_bytes([lo, hi])).min(rest.len());
        let Some(data) = take(&mut rest, len) else {
            break;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let data = if name.ends_with(".gz") {
            gzip(data)
        } else {
            data.to_vec()
        };
        out.push(LegacyFile {
            source: String::from_utf8_lossy(source).into_owned(),
            name,
            data,
        });
    }
    out
}

fn without_print_data(e: &AuditEvent) -> AuditEvent {
    let mut e = e.clone();
    if let AuditEvent::SessionPrint(p) = &mut e {
        p.data.clear();
    }
    e
}

fn check_session(files: &[LegacyFile]) {
    if let Ok(entries) = index_entries(files) {
        let chunks = chunk_entries(&entries);
        assert!(chunks.windows(2).all(|w| w[0].offset <= w[1].offset));
    }
    let whole = assemble(files);
    let events = assemble_events(files);
    if let Ok(whole) = &whole {
        let Ok(events) = &events else {
            panic!("assemble read the session but assemble_events failed: {events:?}");
        };
        let stripped: Vec<AuditEvent> = whole.iter().map(without_print_data).collect();
        assert_eq!(&stripped, events);
        for e in whole {
            let json = e.to_json();
            let again = AuditEvent::from_json(&json).expect("printed JSON parses");
            assert_eq!(again.to_json(), json);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(found) = read_tar(rest, "archive") else {
            return;
        };
        // Names that fit the ustar name field survive a rewrite.
        if found
            .iter()
            .all(|f| f.name.len() <= 100 && !f.name.contains('\0'))
        {
            let named: Vec<(String, Vec<u8>)> = found
                .iter()
                .map(|f| (f.name.clone(), f.data.clone()))
                .collect();
            let again = read_tar(&write_tar(&named), "archive").expect("written tar reads");
            assert_eq!(again, found);
        }
        check_session(&found);
    } else {
        check_session(&files(rest));
    }
});
