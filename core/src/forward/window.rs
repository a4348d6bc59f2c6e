//! The in-flight window: which batches are out, and how far the stored position may go.
//!
//! Every batch handed to an output gets a sequence number from [`CommitTracker::issue`]
//! together with the position the source reaches once that batch (and every batch before
//! it) is accepted. Batches may be accepted in any order; [`CommitTracker::accept`] returns a
//! new committed position only when the accepted batches form a contiguous prefix, and that
//! position is the one of the last batch of the prefix. So the stored position never passes
//! a batch that was not accepted: after a crash the exporter resends at most the batches
//! that were in flight, and skips none.

use std::collections::BTreeMap;

/// Tracks batches in flight and the committed position (`P`: whatever the caller stores).
#[derive(Debug, Clone)]
pub struct CommitTracker<P> {
    /// The sequence number the next batch gets.
    next: u64,
    /// The first sequence number not yet committed.
    first_open: u64,
    /// Issued, not committed: position after the batch and whether it was accepted.
    open: BTreeMap<u64, (P, bool)>,
}

impl<P> Default for CommitTracker<P> {
    fn default() -> Self {
        CommitTracker::new()
    }
}

impl<P> CommitTracker<P> {
    /// An empty window.
    pub fn new() -> CommitTracker<P> {
        CommitTracker {
            next: 0,
            first_open: 0,
            open: BTreeMap::new(),
        }
    }

    /// Registers a batch; `after` is the source position once it is accepted. Returns its
    /// sequence number.
    pub fn issue(&mut self, after: P) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.open.insert(seq, (after, false));
        seq
    }

    /// Marks batch `seq` accepted. Returns the new committed position when the contiguous
    /// prefix of accepted batches grew (the position of its last batch), else `None`.
    /// Unknown or already committed sequence numbers are ignored.
    pub fn accept(&mut self, seq: u64) -> Option<P> {
        match self.open.get_mut(&seq) {
            Some(entry) => entry.1 = true,
            None => return None,
        }
        let mut committed = None;
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() != self.first_open || !entry.get().1 {
                break;
            }
            let (position, _) = entry.remove();
            self.first_open += 1;
            committed = Some(position);
        }
        committed
    }

    /// Batches issued and not yet committed (accepted ones behind an open one included).
    pub fn in_flight(&self) -> usize {
        self.open.len()
    }

    /// Whether nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_contiguous_prefixes() {
        let mut t = CommitTracker::new();
        let a = t.issue("a");
        let b = t.issue("b");
        let c = t.issue("c");
        assert_eq!(t.in_flight(), 3);
        assert_eq!(t.accept(b), None, "a is still out");
        assert_eq!(t.accept(c), None);
        assert_eq!(t.accept(a), Some("c"), "a, b, c now contiguous");
        assert!(t.is_idle());
        assert_eq!(t.accept(a), None, "already committed");
        let d = t.issue("d");
        assert_eq!(t.accept(d), Some("d"));
    }

    #[test]
    fn random_orders_never_commit_past_an_open_batch() {
        // A small deterministic generator: every permutation order of acceptance.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let mut t = CommitTracker::new();
            let n = 1 + (seed % 12) as usize;
            let seqs: Vec<u64> = (0..n).map(|i| t.issue(i)).collect();
            let mut order = seqs.clone();
            for i in (1..order.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                order.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            let mut accepted = vec![false; n];
            let mut committed: Option<usize> = None;
            for s in order {
                accepted[s as usize] = true;
                if let Some(p) = t.accept(s) {
                    assert!(committed.is_none_or(|c| p > c));
                    committed = Some(p);
                }
                let prefix = accepted.iter().take_while(|a| **a).count();
                assert_eq!(committed.map_or(0, |c| c + 1), prefix);
            }
            assert_eq!(committed, Some(n - 1));
        }
    }
}
