//! Request bodies and the search for a rejected event.
//!
//! Fluentd's `in_http` takes a JSON array as one record per element, so a batch is posted as
//! `[e1,e2,…]` built from the events' JSON texts as they are (no re-encoding).
//! [`split_by_bytes`] cuts a batch so no body passes a byte limit (in_http answers 413 above
//! 32 MB). When a receiver rejects a batch for good, [`Bisector`] halves it until the event
//! at fault is alone, so one bad event is dead-lettered and its neighbours still arrive.

use std::ops::Range;

/// The body of a batch: the JSON array of the events' texts.
pub fn body(events: &[String]) -> String {
    let len = events.iter().map(|e| e.len() + 1).sum::<usize>() + 2;
    let mut out = String::with_capacity(len);
    out.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push(']');
    out
}

/// Consecutive ranges of `events` whose bodies stay within `max_bytes`; an event that alone
/// is larger gets a range of its own (the receiver decides about it).
pub fn split_by_bytes(events: &[String], max_bytes: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 2; // `[` and `]`
    for (i, e) in events.iter().enumerate() {
        let add = e.len() + usize::from(i > start);
        if i > start && size + add > max_bytes {
            out.push(start..i);
            start = i;
            size = 2 + e.len();
        } else {
            size += add;
        }
    }
    if start < events.len() {
        out.push(start..events.len());
    }
    out
}

/// What to do with a range after sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every event of the range was accepted.
    Accepted,
    /// The range was rejected for good.
    Rejected,
}

/// Finds the events a receiver rejects in a batch, keeping order: send
/// [`next`](Self::next), report with [`report`](Self::report), until `next` is `None`.
/// Accepted ranges are done; a rejected range of several events is split in halves (left
/// first); a rejected single event is returned by `report` to be dead-lettered.
#[derive(Debug, Clone)]
pub struct Bisector {
    /// Ranges still to send, the next one last.
    todo: Vec<Range<usize>>,
}

impl Bisector {
    /// A search over a batch of `len` events, starting with the whole batch.
    pub fn new(len: usize) -> Bisector {
        Bisector {
            todo: if len == 0 {
                Vec::new()
            } else {
                std::iter::once(0..len).collect()
            },
        }
    }

    /// The range to send next.
    pub fn next(&self) -> Option<Range<usize>> {
        self.todo.last().cloned()
    }

    /// Reports the outcome for the range [`next`](Self::next) gave. Returns the index of an
    /// event to dead-letter when a single event was rejected.
    pub fn report(&mut self, verdict: Verdict) -> Option<usize> {
        let range = self.todo.pop()?;
        match verdict {
            Verdict::Accepted => None,
            Verdict::Rejected if range.len() == 1 => Some(range.start),
            Verdict::Rejected => {
                let mid = range.start + range.len() / 2;
                self.todo.push(mid..range.end);
                self.todo.push(range.start..mid);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{{\"i\":{i}}}")).collect()
    }

    #[test]
    fn bodies_are_json_arrays() {
        assert_eq!(body(&[]), "[]");
        let b = body(&ev(3));
        assert_eq!(b, r#"[{"i":0},{"i":1},{"i":2}]"#);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
    }

    #[test]
    fn splits_respect_the_limit() {
        let events = ev(25); // 7 bytes each (8 from i = 10)
        for max in [1, 9, 10, 20, 40, 1000] {
            let ranges = split_by_bytes(&events, max);
            let mut next = 0;
            for r in &ranges {
                assert_eq!(r.start, next);
                next = r.end;
                let len = body(&events[r.clone()]).len();
                assert!(len <= max || r.len() == 1, "max {max}: {len}");
            }
            assert_eq!(next, 25);
        }
        assert_eq!(split_by_bytes(&events, 1000), vec![0..25]);
        assert!(split_by_bytes(&[], 10).is_empty());
    }

    #[test]
    fn bisection_isolates_every_bad_event_in_order() {
        for n in 1..40 {
            for bad in [vec![0], vec![n - 1], vec![n / 2], vec![0, n - 1], vec![]] {
                let mut b = Bisector::new(n);
                let mut accepted = Vec::new();
                let mut dead = Vec::new();
                let mut sends = 0;
                while let Some(r) = b.next() {
                    sends += 1;
                    let verdict = if r.clone().any(|i| bad.contains(&i)) {
                        Verdict::Rejected
                    } else {
                        accepted.extend(r.clone());
                        Verdict::Accepted
                    };
                    if let Some(d) = b.report(verdict) {
                        dead.push(d);
                        accepted.push(d); // to check order
                    }
                }
                let mut want_dead = bad.clone();
                want_dead.dedup();
                assert_eq!(dead, want_dead, "n {n}");
                assert_eq!(accepted, (0..n).collect::<Vec<_>>(), "order kept");
                assert!(sends <= 1 + 2 * 2 * (usize::BITS - n.leading_zeros()) as usize);
            }
        }
        assert_eq!(Bisector::new(0).next(), None);
    }
}
