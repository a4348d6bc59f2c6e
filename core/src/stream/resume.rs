//! Resuming an upload safely when its parts may have landed out of order.
//!
//! With more than one part uploading at a time, a writer that dies (or fails) can leave part
//! `n + 1` stored while part `n` never arrived. Upstream uploads one part at a time and never
//! meets this; we do. Readers sort parts by number and drop every event whose index is not above
//! the last one they returned, so a stored part that starts *after a hole* would hide the replay
//! that fills the hole: the replayed events come later in part order with lower indexes and are
//! dropped as duplicates. The events of the hole would be lost.
//!
//! So before resuming, the driver reads every stored part back ([`PartContent::scan`]) and
//! [`ResumePlan::new`] decides: walking the parts in number order, a part is kept when its first
//! index is at most one above the highest index kept so far (overlap is fine: readers drop the
//! duplicates); a part that starts beyond that is an *orphan* and is left out of the completed
//! recording (its events are replayed by the writer, since they are above the durable index).
//! [`ResumePlan::durable_index`] is the highest index up to which the kept parts hold every
//! event: the writer replays from there. New parts are numbered above every stored part,
//! orphans included, plus the usual skipped number, so a late flush of the old writer can't
//! overwrite new data.
//!
//! The upload completer does not use this: with nobody replaying, an orphan's events are
//! better kept (readers still read them, counted as out of order).

use crate::codec::writer::EncodedPart;
use crate::codec::{CodecError, PolledRecord, ProtoReader};

use super::{CompletedPart, Stream, StreamConfig};

/// What a stored part was found to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartContent {
    /// Events with indexes from `first` to `last`.
    Events {
        /// Lowest index in the part.
        first: i64,
        /// Highest index in the part.
        last: i64,
    },
    /// No events.
    Empty,
    /// The part does not decode: it is left out like an orphan.
    Damaged,
    /// The store can't give the part back: the plan keeps every part as listed and knows no
    /// durable index (the writer replays everything; readers drop the duplicates).
    Unread,
}

impl PartContent {
    /// What a part holds, from the writer's own count (no decoding): the same answer
    /// [`scan`](Self::scan) gives for its bytes.
    pub fn of_part(part: &EncodedPart) -> PartContent {
        if part.events == 0 {
            PartContent::Empty
        } else {
            PartContent::Events {
                first: part.first_index,
                last: part.last_index,
            }
        }
    }

    /// The small text a store keeps beside a part it can't give back (S3 multipart parts):
    /// `tapelog-span 1 FIRST LAST` or `tapelog-span 1 empty`. Only `Events` and `Empty` are
    /// written; anything else encodes as `Unread` would (None).
    pub fn to_span_text(&self) -> Option<String> {
        match self {
            PartContent::Events { first, last } => Some(format!("tapelog-span 1 {first} {last}\n")),
            PartContent::Empty => Some("tapelog-span 1 empty\n".to_string()),
            PartContent::Damaged | PartContent::Unread => None,
        }
    }

    /// Reads [`to_span_text`](Self::to_span_text)'s text back; anything else (another version,
    /// damage, more than 64 bytes) is `Unread`, so a resume trusts the part as listed.
    pub fn from_span_text(text: &[u8]) -> PartContent {
        if text.len() > 64 {
            return PartContent::Unread;
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return PartContent::Unread;
        };
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        match words.as_slice() {
            ["tapelog-span", "1", "empty"] => PartContent::Empty,
            ["tapelog-span", "1", first, last] => match (first.parse(), last.parse()) {
                (Ok(first), Ok(last)) if 0 <= first && first <= last => {
                    PartContent::Events { first, last }
                }
                _ => PartContent::Unread,
            },
            _ => PartContent::Unread,
        }
    }

    /// Reads one stored part (header, gzip member, padding).
    pub fn scan(bytes: &[u8]) -> PartContent {
        match scan_part(bytes) {
            Ok(Some((first, last))) => PartContent::Events { first, last },
            Ok(None) => PartContent::Empty,
            Err(_) => PartContent::Damaged,
        }
    }
}

/// A stored part and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpan {
    /// The part.
    pub part: CompletedPart,
    /// What it holds.
    pub content: PartContent,
}

/// What a resumed stream keeps of the stored parts and where the writer continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePlan {
    /// Parts that go into the completed recording, in number order.
    pub keep: Vec<CompletedPart>,
    /// Parts left out: they start after a hole in the event indexes.
    pub orphans: Vec<u32>,
    /// Every event up to this index is in the kept parts (-1: none). Replay from the next one.
    pub durable_index: i64,
    /// Highest part number stored (orphans included); 0 if none.
    pub highest_number: u32,
}

impl ResumePlan {
    /// Decides from the stored parts (any order). See the module documentation.
    pub fn new(mut parts: Vec<PartSpan>) -> ResumePlan {
        parts.sort_by_key(|p| p.part.number);
        parts.dedup_by_key(|p| p.part.number);
        let highest_number = parts.last().map_or(0, |p| p.part.number);
        if parts.iter().any(|p| p.content == PartContent::Unread) {
            return ResumePlan {
                keep: parts.into_iter().map(|p| p.part).collect(),
                orphans: Vec::new(),
                durable_index: -1,
                highest_number,
            };
        }
        let (mut keep, mut orphans) = (Vec::new(), Vec::new());
        // Indexes start at 0; `covered` is the highest index with no hole below it.
        let mut covered: i64 = -1;
        for p in parts {
            match p.content {
                PartContent::Empty | PartContent::Unread => keep.push(p.part),
                PartContent::Events { first, last } if first <= covered.saturating_add(1) => {
                    covered = covered.max(last);
                    keep.push(p.part);
                }
                PartContent::Events { .. } | PartContent::Damaged => orphans.push(p.part.number),
            }
        }
        ResumePlan {
            keep,
            orphans,
            durable_index: covered,
            highest_number,
        }
    }
}

/// The first and last event index of one stored part (header, gzip member, padding), or
/// `None` if it holds no events. A damaged part is an error.
fn scan_part(bytes: &[u8]) -> Result<Option<(i64, i64)>, CodecError> {
    let mut reader = ProtoReader::default();
    reader.push(bytes);
    reader.finish();
    let mut span: Option<(i64, i64)> = None;
    loop {
        match reader.poll_record()? {
            PolledRecord::Record { index, .. } => {
                span = Some(match span {
                    None => (index, index),
                    Some((first, last)) => (first, last.max(index)),
                });
            }
            PolledRecord::NeedInput | PolledRecord::End => return Ok(span),
        }
    }
}

impl Stream {
    /// Continues an upload as `plan` says: only the kept parts are completed, new parts are
    /// numbered from the highest stored number + 2, the first status names the plan's
    /// durable index, and events at or below it (a writer's replay) are dropped.
    pub fn resume_planned(
        upload_id: impl Into<String>,
        config: StreamConfig,
        plan: &ResumePlan,
        now_ms: u64,
    ) -> Stream {
        let next_number = if plan.highest_number > 0 {
            plan.highest_number.saturating_add(2)
        } else {
            1
        };
        let mut s = Stream::start(
            upload_id.into(),
            config,
            plan.keep.clone(),
            next_number,
            plan.durable_index,
            now_ms,
        );
        s.replay_floor = Some(plan.durable_index);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(number: u32, span: Option<(i64, i64)>) -> PartSpan {
        let content = match span {
            Some((first, last)) => PartContent::Events { first, last },
            None => PartContent::Empty,
        };
        part(number, content)
    }

    fn part(number: u32, content: PartContent) -> PartSpan {
        PartSpan {
            part: CompletedPart {
                number,
                etag: String::new(),
            },
            content,
        }
    }

    fn numbers(p: &[CompletedPart]) -> Vec<u32> {
        p.iter().map(|p| p.number).collect()
    }

    #[test]
    fn contiguous_parts_are_all_kept() {
        let plan = ResumePlan::new(vec![
            span(3, Some((100, 199))),
            span(1, Some((0, 99))),
            span(5, Some((200, 250))),
        ]);
        assert_eq!(numbers(&plan.keep), [1, 3, 5]);
        assert!(plan.orphans.is_empty());
        assert_eq!(plan.durable_index, 250);
        assert_eq!(plan.highest_number, 5);
    }

    #[test]
    fn a_part_after_a_hole_is_an_orphan_and_a_replay_after_it_is_kept() {
        // Part 2 (100..=199) never arrived; part 3 did. A resumed writer replayed from 100 in
        // part 5.
        let plan = ResumePlan::new(vec![
            span(1, Some((0, 99))),
            span(3, Some((200, 299))),
            span(5, Some((100, 400))),
        ]);
        assert_eq!(numbers(&plan.keep), [1, 5]);
        assert_eq!(plan.orphans, [3]);
        assert_eq!(plan.durable_index, 400);
        assert_eq!(plan.highest_number, 5);
    }

    #[test]
    fn overlapping_replays_and_empty_parts_are_kept() {
        let plan = ResumePlan::new(vec![
            span(1, Some((0, 99))),
            span(2, None),
            span(4, Some((50, 120))),
        ]);
        assert_eq!(numbers(&plan.keep), [1, 2, 4]);
        assert_eq!(plan.durable_index, 120);
    }

    #[test]
    fn damaged_parts_are_left_out_and_unread_parts_are_all_kept() {
        let plan = ResumePlan::new(vec![
            span(1, Some((0, 9))),
            part(3, PartContent::Damaged),
            span(5, Some((10, 20))),
        ]);
        assert_eq!(numbers(&plan.keep), [1, 5]);
        assert_eq!(plan.orphans, [3]);
        assert_eq!(plan.durable_index, 20);
        let plan = ResumePlan::new(vec![
            part(1, PartContent::Unread),
            part(4, PartContent::Unread),
        ]);
        assert_eq!(numbers(&plan.keep), [1, 4]);
        assert_eq!(plan.durable_index, -1);
        assert_eq!(plan.highest_number, 4);
    }

    #[test]
    fn the_writers_span_is_what_a_scan_finds_and_survives_its_text() {
        use crate::codec::writer::{PartBuilder, WriterConfig};
        let config = WriterConfig {
            min_upload_bytes: 1024,
            ..WriterConfig::default()
        };
        let empty = PartBuilder::new(config).finish(false);
        assert_eq!(PartContent::of_part(&empty), PartContent::Empty);
        assert_eq!(
            PartContent::of_part(&empty),
            PartContent::scan(&empty.to_vec())
        );
        let mut b = PartBuilder::new(config);
        for i in [7, 8, 12, 9] {
            b.add(&crate::sample::print(i, 0, 0, 0, b"x")).unwrap();
        }
        let part = b.finish(false);
        let of = PartContent::of_part(&part);
        assert_eq!(of, PartContent::Events { first: 7, last: 12 });
        assert_eq!(of, PartContent::scan(&part.to_vec()));
        for c in [of, PartContent::Empty] {
            let text = c.to_span_text().unwrap();
            assert_eq!(PartContent::from_span_text(text.as_bytes()), c);
        }
        for bad in [
            &b"tapelog-span 2 1 2"[..],
            b"tapelog-span 1 5 2",
            b"tapelog-span 1 -1 2",
            b"",
            b"\xff",
        ] {
            assert_eq!(
                PartContent::from_span_text(bad),
                PartContent::Unread,
                "{bad:?}"
            );
        }
        assert_eq!(PartContent::Unread.to_span_text(), None);
    }

    #[test]
    fn nothing_stored_means_start_from_scratch() {
        let plan = ResumePlan::new(vec![]);
        assert!(plan.keep.is_empty());
        assert_eq!(plan.durable_index, -1);
        assert_eq!(plan.highest_number, 0);
        // A first part that does not start at 0 is a hole too.
        let plan = ResumePlan::new(vec![span(2, Some((10, 20)))]);
        assert!(plan.keep.is_empty());
        assert_eq!(plan.orphans, [2]);
        assert_eq!(plan.highest_number, 2);
    }

    #[test]
    fn a_resumed_stream_numbers_above_orphans_and_reports_the_durable_index() {
        let plan = ResumePlan::new(vec![span(1, Some((0, 9))), span(7, Some((30, 40)))]);
        let mut s = Stream::resume_planned("u", StreamConfig::default(), &plan, 0);
        let first = s.take_actions();
        assert!(matches!(
            first.as_slice(),
            [super::super::Action::Status(st)] if st.last_event_index == 9
        ));
        // The writer replays from index 0: the kept part's events are dropped, the rest stored.
        let ev = crate::vectors::sample_session(13);
        for e in &ev {
            s.record(e, 1).unwrap();
        }
        assert_eq!(s.replayed(), 10);
        s.complete();
        let actions = s.take_actions();
        let numbers: Vec<u32> = actions
            .iter()
            .filter_map(|a| match a {
                super::super::Action::UploadPart { number, .. } => Some(*number),
                _ => None,
            })
            .collect();
        assert_eq!(numbers, [9]);
    }

    /// A completion that failed after the unpadded last part was stored, then a resume whose
    /// writer replays everything: nothing new is stored, so the completion lists the same
    /// parts and the short part stays last (on S3 a part after it would be refused).
    #[test]
    fn a_resume_after_a_failed_completion_stores_no_replayed_event() {
        use super::super::Action;
        let ev = crate::vectors::sample_session(40);
        let config = StreamConfig {
            writer: crate::codec::WriterConfig {
                min_upload_bytes: 1024,
                ..crate::codec::WriterConfig::default()
            },
            ..StreamConfig::default()
        };
        let mut s = Stream::new("u", config, 0);
        let mut stored = Vec::new();
        for e in &ev {
            s.record(e, 1).unwrap();
        }
        s.complete();
        let mut asked = None;
        for _ in 0..100 {
            let actions = s.take_actions();
            if actions.is_empty() {
                break;
            }
            for a in actions {
                match a {
                    Action::UploadPart { number, part } => {
                        stored.push(PartSpan {
                            part: CompletedPart {
                                number,
                                etag: format!("e{number}"),
                            },
                            content: PartContent::of_part(&part),
                        });
                        s.part_uploaded(number, format!("e{number}"), 2).unwrap();
                    }
                    Action::CompleteUpload { parts } => asked = Some(parts),
                    _ => {}
                }
            }
        }
        let first = asked.expect("completion asked");
        s.complete_failed("store unavailable");
        let plan = ResumePlan::new(stored);
        assert_eq!(plan.durable_index, ev.last().unwrap().index());
        let mut r = Stream::resume_planned("u", config, &plan, 3);
        for e in &ev {
            r.record(e, 3).unwrap();
        }
        assert_eq!(r.replayed(), ev.len() as u64);
        r.complete();
        let actions = r.take_actions();
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::UploadPart { .. })),
            "{actions:?}"
        );
        let again = actions.iter().find_map(|a| match a {
            Action::CompleteUpload { parts } => Some(parts.clone()),
            _ => None,
        });
        assert_eq!(again, Some(first));
    }

    #[test]
    fn scan_part_reads_the_index_span() {
        let ev = crate::vectors::sample_session(20);
        let mut b = crate::codec::PartBuilder::new(crate::codec::WriterConfig::default());
        for e in &ev[3..12] {
            b.add(e).unwrap();
        }
        let part = b.finish(false).to_vec();
        assert_eq!(
            PartContent::scan(&part),
            PartContent::Events {
                first: ev[3].index(),
                last: ev[11].index()
            }
        );
        let empty = crate::codec::PartBuilder::new(crate::codec::WriterConfig::default())
            .finish(true)
            .to_vec();
        assert_eq!(PartContent::scan(&empty), PartContent::Empty);
        assert_eq!(
            PartContent::scan(&part[..part.len() / 2]),
            PartContent::Damaged
        );
    }
}
