//! Event type filters: `--types` (an allow-list; empty = every type), `--skip-event-types`
//! and `--skip-session-types` (deny-lists).

use std::collections::BTreeSet;

/// Which event types go out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    allow: BTreeSet<String>,
    skip: BTreeSet<String>,
}

impl TypeFilter {
    /// Types in `allow` (all when empty) and not in `skip`. Blank entries are ignored.
    pub fn new<A, S>(allow: A, skip: S) -> TypeFilter
    where
        A: IntoIterator,
        A::Item: AsRef<str>,
        S: IntoIterator,
        S::Item: AsRef<str>,
    {
        let set = |it: Vec<String>| {
            it.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<BTreeSet<_>>()
        };
        TypeFilter {
            allow: set(allow.into_iter().map(|s| s.as_ref().to_string()).collect()),
            skip: set(skip.into_iter().map(|s| s.as_ref().to_string()).collect()),
        }
    }

    /// Only a deny-list (the session filter).
    pub fn skipping<S>(skip: S) -> TypeFilter
    where
        S: IntoIterator,
        S::Item: AsRef<str>,
    {
        TypeFilter::new(Vec::<String>::new(), skip)
    }

    /// Whether an event of `event_type` is sent.
    pub fn allows(&self, event_type: &str) -> bool {
        (self.allow.is_empty() || self.allow.contains(event_type))
            && !self.skip.contains(event_type)
    }

    /// The allow-list (for a server-side search filter), empty for every type.
    pub fn allowed_types(&self) -> Vec<String> {
        self.allow.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_skip() {
        let all = TypeFilter::default();
        assert!(all.allows("print"));
        let f = TypeFilter::new(["user.login", "session.start", " "], ["session.start"]);
        assert!(f.allows("user.login"));
        assert!(!f.allows("session.start"), "skip wins");
        assert!(!f.allows("print"));
        assert_eq!(f.allowed_types(), ["session.start", "user.login"]);
        let s = TypeFilter::skipping(["print"]);
        assert!(!s.allows("print"));
        assert!(s.allows("session.end"));
    }
}
