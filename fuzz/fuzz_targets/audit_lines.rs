//! The file audit log's readers: day-file lines and sidecar index files.
//!
//! The first byte chooses the input's form:
//! - even: the rest is a day file. Fed to `LineScanner` in chunks cut where the first byte's
//!   generator says, it gives the same lines as fed whole (with a small line limit, so that
//!   over-long lines are exercised too); every line becomes an index entry (`index_line`, the
//!   rule of index building) that decodes from its encoding to itself and describes the line
//!   it came from; an event line the index accepts is read as the search reads it
//!   (`AuditEvent::from_json`) without panicking.
//! - odd: the rest is an index file. `Index::decode` never panics; an index it accepts
//!   encodes to the same entries and header fields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_core::audit::index::{Index, IndexEntry, IndexedLine, index_line};
use tapelog_core::audit::lines::{LineScanner, ScannedLine};
use tapelog_core::{AuditEvent, EventFields};

#[derive(Debug, PartialEq)]
enum Seen {
    Line(u64, Vec<u8>),
    TooLong(u64, u64),
}

fn scan(chunks: &mut dyn Iterator<Item = &[u8]>, max: usize) -> (Vec<Seen>, u64) {
    let mut s = LineScanner::new(0, max);
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c, |l| match l {
            ScannedLine::Line { offset, bytes } => out.push(Seen::Line(offset, bytes.to_vec())),
            ScannedLine::TooLong { offset, len } => out.push(Seen::TooLong(offset, len)),
        });
    }
    (out, s.covered())
}

fn day_file(seed: u8, log: &[u8]) {
    let max = 64 + usize::from(seed) * 16;
    let whole = scan(&mut std::iter::once(log), max);
    let mut x = u32::from(seed) | 0x100;
    let mut rest = log;
    let mut cuts = std::iter::from_fn(|| {
        if rest.is_empty() {
            return None;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x as usize % 97 + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        rest = b;
        Some(a)
    });
    assert_eq!(scan(&mut cuts, max), whole);
    let (lines, covered) = whole;
    for l in &lines {
        match l {
            Seen::Line(at, bytes) => {
                assert!(bytes.len() <= max && !bytes.contains(&b'\n'));
                assert_eq!(&log[*at as usize..*at as usize + bytes.len()], bytes.as_slice());
                assert_eq!(log[*at as usize + bytes.len()], b'\n');
            }
            Seen::TooLong(at, len) => {
                assert!(*len as usize > max);
                assert_eq!(log[(*at + *len) as usize], b'\n');
            }
        }
    }
    assert_eq!(
        covered,
        log.iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p as u64 + 1)
    );

    // Every line, with no length limit, as the index builder sees it.
    let mut offset = 0u64;
    for line in log.split(|&b| b == b'\n') {
        let at = offset;
        offset += line.len() as u64 + 1;
        if offset > covered {
            break;
        }
        match index_line(at, line) {
            IndexedLine::Blank => assert!(line.is_empty()),
            IndexedLine::Unparsable => {}
            IndexedLine::Entry(e) => {
                assert_eq!((e.offset, e.len as usize), (at, line.len()));
                assert_eq!(IndexEntry::decode(&e.encode(), 0), Ok(e));
                let text = std::str::from_utf8(line).expect("an indexed line is UTF-8");
                let fields = EventFields::parse(text).expect("an indexed line parses");
                assert!(e.describes(&fields, line.len()));
                let _ = AuditEvent::from_json(text);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        day_file(mode >> 1, rest);
    } else if let Ok((header, index)) = Index::decode(rest) {
        // The same entries and header fields (the reserved header bytes are not read).
        let bytes = index.encode(header.head_crc, header.tail_crc);
        assert_eq!(bytes[64..], rest[64..]);
        assert_eq!(Index::decode(&bytes), Ok((header, index)));
    }
});
