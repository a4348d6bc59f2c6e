//! The k-way merge of sorted sources (one per day file) into one ordered stream.
//!
//! The caller owns the sources: it pushes each source's next key, pops the smallest (or, for
//! a descending search, the largest) and pushes that source's following key. Keys are totally
//! ordered; equal keys come out by source number.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Order;

#[derive(Debug)]
struct Head<K> {
    key: K,
    source: usize,
    order: Order,
}

impl<K: Ord> PartialEq for Head<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K: Ord> Eq for Head<K> {}

impl<K: Ord> PartialOrd for Head<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord> Ord for Head<K> {
    /// The heap pops its greatest element: the smallest key first for ascending order.
    fn cmp(&self, other: &Self) -> Ordering {
        let by_key = match self.order {
            Order::Ascending => other.key.cmp(&self.key),
            Order::Descending => self.key.cmp(&other.key),
        };
        by_key.then_with(|| other.source.cmp(&self.source))
    }
}

/// The merge state: the current head of every source that is not exhausted.
#[derive(Debug)]
pub struct Merge<K> {
    heap: BinaryHeap<Head<K>>,
    order: Order,
}

impl<K: Ord> Merge<K> {
    /// An empty merge in `order`.
    pub fn new(order: Order) -> Merge<K> {
        Merge {
            heap: BinaryHeap::new(),
            order,
        }
    }

    /// Offers the next key of `source`.
    pub fn push(&mut self, source: usize, key: K) {
        self.heap.push(Head {
            key,
            source,
            order: self.order,
        });
    }

    /// Takes the first head in order: push the source's next key after this.
    pub fn pop(&mut self) -> Option<(usize, K)> {
        self.heap.pop().map(|h| (h.source, h.key))
    }

    /// The first head in order, without taking it.
    pub fn peek(&self) -> Option<(usize, &K)> {
        self.heap.peek().map(|h| (h.source, &h.key))
    }

    /// Whether every source is exhausted.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(order: Order, sources: &[Vec<u32>]) -> Vec<(usize, u32)> {
        let mut pos = vec![0usize; sources.len()];
        let mut m = Merge::new(order);
        for (i, s) in sources.iter().enumerate() {
            if let Some(&k) = s.first() {
                m.push(i, k);
            }
        }
        let mut out = Vec::new();
        while let Some((i, k)) = m.pop() {
            out.push((i, k));
            pos[i] += 1;
            if let Some(&n) = sources[i].get(pos[i]) {
                m.push(i, n);
            }
        }
        out
    }

    #[test]
    fn merges_in_both_orders() {
        let asc = run(
            Order::Ascending,
            &[vec![1, 4, 7], vec![2, 5], vec![], vec![3, 4]],
        );
        assert_eq!(
            asc,
            [(0, 1), (1, 2), (3, 3), (0, 4), (3, 4), (1, 5), (0, 7)]
        );
        let desc = run(Order::Descending, &[vec![7, 4, 1], vec![5, 2], vec![4, 3]]);
        assert_eq!(
            desc,
            [(0, 7), (1, 5), (0, 4), (2, 4), (2, 3), (1, 2), (0, 1)]
        );
    }

    #[test]
    fn peek_and_empty() {
        let mut m = Merge::new(Order::Ascending);
        assert!(m.is_empty());
        m.push(1, 9);
        m.push(0, 3);
        assert_eq!(m.peek(), Some((0, &3)));
        assert_eq!(m.pop(), Some((0, 3)));
        assert_eq!(m.pop(), Some((1, 9)));
        assert!(m.is_empty());
    }
}
