//! Page assembly: the limit and the 1 MiB cap on the event data one page returns.
//!
//! As upstream, a page stops at `limit` events, or before the event that would bring the
//! total size of the returned JSON to 1 MiB or more. Unlike upstream (which indexes an empty
//! list there), an event that alone is 1 MiB or more is returned alone in its own page, so that
//! a search always moves forward.

use super::MAX_EVENT_BYTES_IN_RESPONSE;

/// What to do with the next event offered to a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Add it.
    Take,
    /// Add it; it is over the cap by itself, so the page holds only it and is now full.
    TakeAlone,
    /// Don't add it: the page is full (it starts the next page).
    Full,
}

/// Counts a page's events and bytes.
#[derive(Debug, Clone)]
pub struct PageBuilder {
    limit: usize,
    max_bytes: usize,
    count: usize,
    bytes: usize,
    closed: bool,
}

impl PageBuilder {
    /// A page of at most `limit` events and less than 1 MiB.
    pub fn new(limit: usize) -> PageBuilder {
        PageBuilder::with_max_bytes(limit, MAX_EVENT_BYTES_IN_RESPONSE)
    }

    /// A page of at most `limit` events and less than `max_bytes` bytes.
    pub fn with_max_bytes(limit: usize, max_bytes: usize) -> PageBuilder {
        PageBuilder {
            limit,
            max_bytes,
            count: 0,
            bytes: 0,
            closed: false,
        }
    }

    /// Offers an event of `size` bytes of JSON.
    pub fn offer(&mut self, size: usize) -> Admit {
        if self.is_full() {
            return Admit::Full;
        }
        if self.bytes.saturating_add(size) >= self.max_bytes {
            self.closed = true;
            if self.count == 0 {
                self.count = 1;
                self.bytes = size;
                return Admit::TakeAlone;
            }
            return Admit::Full;
        }
        self.count += 1;
        self.bytes += size;
        Admit::Take
    }

    /// Whether no more events fit.
    pub fn is_full(&self) -> bool {
        self.closed || self.count >= self.limit
    }

    /// Events taken.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes taken.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Upstream's rule for an event whose JSON alone is `max_bytes` or more in a search result:
/// the event is trimmed (`TrimToMaxSize` at `max_bytes`) and returned if its JSON then fits;
/// otherwise it is refused, as the caller would rather see an error than a page that skips it.
/// Returns the trimmed JSON.
pub fn trim_for_response(json: &str, max_bytes: usize) -> Result<String, crate::EventError> {
    let event = crate::AuditEvent::from_json(json)?;
    let trimmed = event.trim_to_max_size(max_bytes).to_json();
    if trimmed.len() >= max_bytes {
        return Err(crate::EventError::TooLarge {
            event_type: event.event_type().to_string(),
            size: trimmed.len(),
            max: max_bytes,
        });
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit() {
        let mut p = PageBuilder::new(2);
        assert_eq!(p.offer(10), Admit::Take);
        assert!(!p.is_full());
        assert_eq!(p.offer(10), Admit::Take);
        assert!(p.is_full());
        assert_eq!(p.offer(10), Admit::Full);
        assert_eq!((p.count(), p.bytes()), (2, 20));
    }

    #[test]
    fn cap_stops_before_reaching_it() {
        let mut p = PageBuilder::with_max_bytes(100, 100);
        assert_eq!(p.offer(60), Admit::Take);
        assert_eq!(p.offer(39), Admit::Take);
        // 99 + 1 = 100 is not under the cap.
        assert_eq!(p.offer(1), Admit::Full);
        assert!(p.is_full());
        assert_eq!(p.offer(0), Admit::Full);
        assert_eq!((p.count(), p.bytes()), (2, 99));
    }

    #[test]
    fn an_event_over_the_cap_is_alone() {
        let mut p = PageBuilder::new(500);
        assert_eq!(p.offer(MAX_EVENT_BYTES_IN_RESPONSE), Admit::TakeAlone);
        assert!(p.is_full());
        assert_eq!(p.offer(1), Admit::Full);
        let mut p = PageBuilder::new(500);
        assert_eq!(p.offer(5), Admit::Take);
        assert_eq!(p.offer(MAX_EVENT_BYTES_IN_RESPONSE), Admit::Full);
        assert_eq!(p.count(), 1);
    }

    #[test]
    fn an_event_over_the_cap_is_trimmed_to_fit_or_refused() {
        use crate::event::{CommandMetadata, Exec, Metadata};
        let exec: crate::AuditEvent = Exec {
            metadata: Metadata {
                type_: "exec".into(),
                code: "T3002I".into(),
                ..Default::default()
            },
            command: CommandMetadata {
                command: "x".repeat(300_000),
                ..Default::default()
            },
            ..Default::default()
        }
        .into();
        let json = exec.to_json();
        let trimmed = super::trim_for_response(&json, 100_000).unwrap();
        assert!(trimmed.len() < 100_000, "{}", trimmed.len());
        let back = crate::AuditEvent::from_json(&trimmed).unwrap();
        assert_eq!(back.event_type(), "exec");
        // Metadata alone larger than the cap can't be trimmed: refused.
        let big_type: crate::AuditEvent = Exec {
            metadata: Metadata {
                type_: "exec".into(),
                cluster_name: "c".repeat(5_000),
                ..Default::default()
            },
            ..Default::default()
        }
        .into();
        assert!(matches!(
            super::trim_for_response(&big_type.to_json(), 1_000),
            Err(crate::EventError::TooLarge { .. })
        ));
    }
}
