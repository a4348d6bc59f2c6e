//! The stream machine driven by hand: a simulated store, simulated time and failures.

use std::collections::BTreeMap;

use super::*;
use crate::codec::read_all;
use crate::vectors;

/// A store that keeps parts by number and can be told to hold uploads back or fail them.
#[derive(Default)]
struct Store {
    parts: BTreeMap<u32, Vec<u8>>,
    completed: Option<Vec<u8>>,
    statuses: Vec<StreamStatus>,
    /// Uploads handed out but not yet reported (when the test finishes them itself).
    held: Vec<u32>,
    hold: bool,
    closed: bool,
}

impl Store {
    fn drive(&mut self, s: &mut Stream, now: u64) {
        loop {
            let actions = s.take_actions();
            if actions.is_empty() {
                break;
            }
            for a in actions {
                match a {
                    Action::UploadPart { number, part } => {
                        self.parts.insert(number, part.to_vec());
                        if self.hold {
                            self.held.push(number);
                        } else {
                            s.part_uploaded(number, format!("etag-{number}"), now)
                                .unwrap();
                        }
                    }
                    Action::CompleteUpload { parts } => {
                        let mut all = Vec::new();
                        for p in &parts {
                            all.extend_from_slice(&self.parts[&p.number]);
                        }
                        self.completed = Some(all);
                        s.upload_completed();
                    }
                    Action::Status(st) => self.statuses.push(st),
                    Action::Closed => self.closed = true,
                    Action::Completed => {}
                }
            }
        }
    }

    fn completed_parts(&self) -> Vec<CompletedPart> {
        self.parts
            .keys()
            .map(|&number| CompletedPart {
                number,
                etag: format!("etag-{number}"),
            })
            .collect()
    }
}

fn small(min: usize, concurrent: usize) -> StreamConfig {
    StreamConfig {
        writer: WriterConfig {
            min_upload_bytes: min,
            ..WriterConfig::default()
        },
        max_concurrent_uploads: concurrent,
        ..StreamConfig::default()
    }
}

fn events(n: usize) -> Vec<AuditEvent> {
    vectors::noisy_session(n)
}

fn assert_reads_back(bytes: &[u8], expect: &[AuditEvent]) {
    let got = read_all(bytes);
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.stats.skipped, 0);
    assert_eq!(got.stats.out_of_order, 0);
    assert_eq!(got.stats.total as usize, expect.len());
    assert_eq!(got.events, expect);
}

#[test]
fn single_part() {
    let evs = events(20);
    let mut store = Store::default();
    let mut s = Stream::new("u1", StreamConfig::default(), 0);
    for e in &evs {
        s.record(e, 1).unwrap();
    }
    s.complete();
    store.drive(&mut s, 2);
    assert!(s.is_done() && s.failure().is_none());
    assert_eq!(store.parts.len(), 1);
    let bytes = store.completed.unwrap();
    // The last part is not padded.
    let h = crate::codec::PartHeader::parse_v1_prefix(bytes[..24].try_into().unwrap()).unwrap();
    assert_eq!(h.padding_size, 0);
    assert_reads_back(&bytes, &evs);
    assert_eq!(store.statuses.first().unwrap().last_event_index, -1);
    assert_eq!(
        store.statuses.last().unwrap().last_event_index,
        evs.last().unwrap().index()
    );
}

#[test]
fn inactivity_flush_pads_and_keeps_one_gzip_member_per_part() {
    let evs = events(40);
    let mut store = Store::default();
    let config = small(64 * 1024, 1);
    let mut s = Stream::new("u1", config, 0);
    for e in &evs[..20] {
        s.record(e, 1_000).unwrap();
    }
    // The compressor is released first, then the part is flushed.
    assert_eq!(s.next_deadline(), Some(1_000 + config.release_after_ms));
    s.tick(1_000 + config.release_after_ms);
    assert!(!s.current.has_compressor());
    assert_eq!(s.next_deadline(), Some(1_000 + config.inactivity_flush_ms));
    s.tick(1_000 + config.inactivity_flush_ms);
    store.drive(&mut s, 1_000 + config.inactivity_flush_ms);
    assert_eq!(store.parts.len(), 1);
    assert_eq!(store.parts[&1].len(), 64 * 1024, "padded to the minimum");
    assert_eq!(s.next_deadline(), None);
    for e in &evs[20..] {
        s.record(e, 400_000).unwrap();
    }
    s.complete();
    store.drive(&mut s, 400_001);
    let bytes = store.completed.unwrap();
    assert_reads_back(&bytes, &evs);
    // Each part is exactly one gzip member: a reader that stops after the first member
    // (upstream's) sees every record. Our reader counts members it had to skip as dangling.
    assert_eq!(read_all(&bytes).stats.dangling_bytes, 0);
}

#[test]
fn a_released_part_is_still_one_gzip_member() {
    let evs = events(30);
    let mut store = Store::default();
    let config = small(64 * 1024, 1);
    let mut s = Stream::new("u1", config, 0);
    for (i, e) in evs.iter().enumerate() {
        // Idle between every few events: the compressor is dropped and recreated.
        let t = i as u64 * 20_000;
        s.record(e, t).unwrap();
        s.tick(t + config.release_after_ms);
    }
    s.complete();
    store.drive(&mut s, 10_000_000);
    assert_eq!(store.parts.len(), 1);
    let bytes = store.completed.unwrap();
    assert_reads_back(&bytes, &evs);
    // One gzip header in the part: flate2's single-member decoder reads everything.
    let size = u64::from_be_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&bytes[24..24 + size]),
        &mut plain,
    )
    .unwrap();
    let records: usize = evs.iter().map(|e| e.oneof_len() + 4).sum();
    assert_eq!(plain.len(), records);
}

#[test]
fn many_parts_two_concurrent_uploads_finishing_out_of_order() {
    let evs = events(1024);
    let mut store = Store {
        hold: true,
        ..Store::default()
    };
    let mut s = Stream::new("u1", small(1024, 2), 0);
    let mut max_in_flight = 0;
    for e in &evs {
        if !s.wants_events() {
            // Back-pressure: finish the held uploads, newest first.
            store.drive(&mut s, 5);
            max_in_flight = max_in_flight.max(store.held.len());
            while let Some(n) = store.held.pop() {
                s.part_uploaded(n, "e", 5).unwrap();
                store.drive(&mut s, 5);
            }
        }
        s.record(e, 5).unwrap();
        store.drive(&mut s, 5);
    }
    store.hold = false;
    while let Some(n) = store.held.pop() {
        s.part_uploaded(n, "e", 6).unwrap();
    }
    s.complete();
    store.drive(&mut s, 7);
    while let Some(n) = store.held.pop() {
        s.part_uploaded(n, "e", 7).unwrap();
        store.drive(&mut s, 7);
    }
    assert!(store.parts.len() > 10, "{} parts", store.parts.len());
    assert!(max_in_flight <= 2);
    assert_reads_back(store.completed.as_ref().unwrap(), &evs);
    // Durable indexes only go up and never pass what is actually stored in order.
    let idx: Vec<i64> = store.statuses.iter().map(|s| s.last_event_index).collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
}

#[test]
fn durable_index_waits_for_earlier_parts() {
    let evs = events(400);
    let mut store = Store {
        hold: true,
        ..Store::default()
    };
    let mut s = Stream::new("u1", small(1024, 4), 0);
    for e in &evs {
        s.record(e, 1).unwrap();
        store.drive(&mut s, 1);
        if store.held.len() == 3 {
            break;
        }
    }
    let held = store.held.clone();
    // Parts 2 and 3 finish; part 1 is still uploading: nothing is durable yet.
    s.part_uploaded(held[2], "e", 2).unwrap();
    s.part_uploaded(held[1], "e", 2).unwrap();
    assert_eq!(s.status(2).last_event_index, -1);
    s.part_uploaded(held[0], "e", 3).unwrap();
    let third_part_last = read_all(&store.parts[&held[2]])
        .events
        .last()
        .unwrap()
        .index();
    assert_eq!(s.status(3).last_event_index, third_part_last);
}

#[test]
fn close_then_resume_skips_two_part_numbers_and_dedups_replays() {
    let evs = events(300);
    let mut store = Store::default();
    let config = small(2048, 2);
    let mut s = Stream::new("u1", config, 0);
    for e in &evs[..150] {
        s.record(e, 1).unwrap();
        store.drive(&mut s, 1);
    }
    s.close();
    store.drive(&mut s, 2);
    assert!(store.closed && store.completed.is_none());
    assert!(s.record(&evs[150], 3).is_err());
    s.close(); // twice is fine
    let last = *store.parts.keys().last().unwrap();
    let durable = s.status(3).last_event_index;
    assert_eq!(durable, evs[149].index());

    // A new process resumes from what the store lists, replaying from a bit before the
    // durable index (a lost checkpoint): the reader drops the duplicates.
    let mut r = Stream::resume("u1", config, store.completed_parts(), 10);
    let from = evs.iter().position(|e| e.index() == durable - 20).unwrap();
    for e in &evs[from..] {
        r.record(e, 11).unwrap();
        store.drive(&mut r, 11);
    }
    r.complete();
    store.drive(&mut r, 12);
    let new_numbers: Vec<u32> = store.parts.keys().copied().filter(|&n| n > last).collect();
    assert!(new_numbers[0] >= last + 2, "{last} then {new_numbers:?}");
    let got = read_all(store.completed.as_ref().unwrap());
    assert!(got.error.is_none());
    assert_eq!(got.events, evs);
    assert_eq!(got.stats.skipped, 21);
}

#[test]
fn a_failed_upload_fails_the_stream_and_the_upload_stays_resumable() {
    let evs = events(400);
    let mut store = Store {
        hold: true,
        ..Store::default()
    };
    let config = small(1024, 2);
    let mut s = Stream::new("u1", config, 0);
    let mut i = 0;
    while store.held.len() < 2 {
        s.record(&evs[i], 1).unwrap();
        store.drive(&mut s, 1);
        i += 1;
    }
    let (first, failing) = (store.held[0], store.held[1]);
    s.part_uploaded(first, "e", 1).unwrap();
    store.parts.remove(&failing);
    s.part_failed(failing, "connection reset");
    let err = s.record(&evs[i], 2).unwrap_err();
    assert!(matches!(err, StreamError::UploadFailed { number, .. } if number == failing));
    assert!(err.to_string().contains("connection reset"));
    assert!(s.is_done());
    // Resume after part 1 and replay everything: the recording is whole.
    store.hold = false;
    let mut r = Stream::resume("u1", config, store.completed_parts(), 3);
    for e in &evs {
        r.record(e, 3).unwrap();
        store.drive(&mut r, 3);
    }
    r.complete();
    store.drive(&mut r, 4);
    let got = read_all(store.completed.as_ref().unwrap());
    assert!(got.error.is_none());
    assert_eq!(got.events, evs);
}

#[test]
fn a_failed_complete_can_be_retried_by_resuming() {
    let evs = events(50);
    let mut store = Store::default();
    let mut s = Stream::new("u1", small(1024, 2), 0);
    for e in &evs {
        s.record(e, 1).unwrap();
        store.drive(&mut s, 1);
    }
    s.complete();
    let mut asked = false;
    for a in s.take_actions() {
        match a {
            Action::UploadPart { number, part } => {
                store.parts.insert(number, part.to_vec());
                s.part_uploaded(number, "e", 2).unwrap();
            }
            Action::CompleteUpload { .. } => asked = true,
            _ => {}
        }
    }
    for a in s.take_actions() {
        if let Action::CompleteUpload { .. } = a {
            asked = true;
        }
    }
    assert!(asked);
    s.complete_failed("store unavailable");
    assert!(matches!(s.failure(), Some(StreamError::CompleteFailed(_))));
    let mut r = Stream::resume("u1", small(1024, 2), store.completed_parts(), 3);
    r.complete();
    store.drive(&mut r, 3);
    assert_reads_back(store.completed.as_ref().unwrap(), &evs);
}

#[test]
fn empty_stream_completes_with_no_parts_and_twice_is_safe() {
    let mut s = Stream::new("u1", StreamConfig::default(), 0);
    s.complete();
    s.complete();
    s.close();
    let actions = s.take_actions();
    assert!(actions.contains(&Action::CompleteUpload { parts: vec![] }));
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::CompleteUpload { .. }))
            .count(),
        1
    );
    s.upload_completed();
    s.upload_completed();
    assert_eq!(s.take_actions(), vec![Action::Completed]);
    assert!(matches!(
        s.record(&vectors::sample_session(0)[0], 2),
        Err(StreamError::Ended("completed"))
    ));
}

#[test]
fn part_numbers_never_pass_the_limit() {
    let evs = events(3000);
    let mut store = Store::default();
    let config = small(256, 4);
    // An upload that has already used 9,990 numbers.
    let previous = vec![CompletedPart {
        number: 9_990,
        etag: "old".into(),
    }];
    let mut s = Stream::resume("u1", config, previous, 0);
    store.parts.insert(9_990, Vec::new());
    for (i, e) in evs.iter().enumerate() {
        s.record(e, i as u64).unwrap();
        store.drive(&mut s, i as u64);
        // Inactivity flushes no longer spend numbers this close to the end.
        s.tick(i as u64 + config.inactivity_flush_ms);
    }
    s.complete();
    store.drive(&mut s, 10_000);
    assert_eq!(*store.parts.keys().max().unwrap(), MAX_PARTS);
    assert_reads_back(store.completed.as_ref().unwrap(), &evs);
}

#[test]
fn part_size_grows_as_numbers_are_used() {
    let config = small(1024, 1);
    let s = Stream::resume(
        "u",
        config,
        vec![CompletedPart {
            number: 4_500,
            etag: String::new(),
        }],
        0,
    );
    assert_eq!(s.target_bytes(), 4 * 1024);
    let fresh = Stream::new("u", config, 0);
    assert_eq!(fresh.target_bytes(), 1024);
}

#[test]
fn an_idle_stream_holds_only_its_compressed_bytes() {
    let config = StreamConfig::default();
    let mut s = Stream::new("u1", config, 0);
    for e in events(400) {
        s.record(&e, 1).unwrap();
    }
    let busy = s.memory_bytes();
    s.tick(1 + config.release_after_ms);
    let idle = s.memory_bytes();
    assert!(
        busy > 256 * 1024,
        "a compressor is counted while active: {busy}"
    );
    // What is left is the compressed part itself (allowed: not uploaded yet) plus a little.
    let compressed = s.current.buffered_bytes();
    assert!(
        idle <= compressed + 1024,
        "idle stream holds {idle} bytes for {compressed} compressed"
    );
}

#[test]
fn unknown_part_results_are_refused() {
    let mut s = Stream::new("u1", StreamConfig::default(), 0);
    assert_eq!(s.part_uploaded(7, "e", 0), Err(StreamError::UnknownPart(7)));
}
