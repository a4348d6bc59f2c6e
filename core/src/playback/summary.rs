//! [`SessionSummary`]: what a player shows beside a recording (who, where, when, how long,
//! who joined, how many events of each type), built from the events one at a time.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::codec::PrintView;
use crate::event::{AuditEvent, event_type};
use crate::proto::Timestamp;

/// What the summary reads of any event.
struct Facts<'a> {
    event_type: &'a str,
    time: Timestamp,
    /// Print data's length.
    output: Option<usize>,
    session_id: &'a str,
    user: &'a str,
    login: &'a str,
    cluster: &'a str,
    /// Server name (host name, else id) and id.
    server: Option<(&'a str, &'a str)>,
}

/// A session's summary, updated event by event ([`SessionSummary::add`]).
///
/// Rules: user, login, server and cluster come from `session.start` (else from the first
/// event that has them); the start is `session.start`'s time (else the first event's), the
/// end is `session.end`'s `end_time` (else the last event's time); participants are the
/// users of `session.start` and `session.join` plus `session.end`'s list, in order of first
/// appearance, each once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionSummary {
    /// Session id (`sid`).
    pub session_id: String,
    /// Teleport user who started the session.
    pub user: String,
    /// OS login.
    pub login: String,
    /// Server host name (else its id).
    pub server: String,
    /// Server id.
    pub server_id: String,
    /// Cluster name.
    pub cluster: String,
    /// Terminal size at the start (`COLS:ROWS`), when known.
    pub terminal_size: String,
    /// Session start.
    pub start: Option<Timestamp>,
    /// Session end (so far).
    pub end: Option<Timestamp>,
    /// Whether a `session.end` event was seen.
    pub ended: bool,
    /// Participants, in order of first appearance.
    pub participants: Vec<String>,
    /// Events seen, per event type.
    pub counts: BTreeMap<String, u64>,
    /// Events seen.
    pub events: u64,
    /// Terminal output bytes (print data).
    pub output_bytes: u64,
}

impl SessionSummary {
    /// An empty summary.
    pub fn new() -> SessionSummary {
        SessionSummary::default()
    }

    fn participant(&mut self, user: &str) {
        if !user.is_empty() && !self.participants.iter().any(|p| p == user) {
            self.participants.push(user.to_string());
        }
    }

    fn fill(slot: &mut String, value: &str, force: bool) {
        if !value.is_empty() && (force || slot.is_empty()) {
            *slot = value.to_string();
        }
    }

    /// Takes one print event into account, read in place: the same as [`add`](Self::add)
    /// of the typed print (a print has no session, user or server fields).
    pub fn add_print(&mut self, p: &PrintView<'_>) {
        self.take(Facts {
            event_type: p.event_type,
            time: p.time,
            output: Some(p.data.len()),
            session_id: "",
            user: "",
            login: "",
            cluster: p.cluster,
            server: None,
        });
    }

    /// The rules every event goes through (the type-specific ones are in `add`).
    fn take(&mut self, f: Facts<'_>) {
        self.events += 1;
        // Counted without an allocation once the type is known (nearly every event).
        match self.counts.get_mut(f.event_type) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(f.event_type.to_string(), 1);
            }
        }
        if let Some(n) = f.output {
            self.output_bytes += n as u64;
        }
        let is_start = f.event_type == event_type::SESSION_START;
        if !f.time.is_zero() {
            if is_start || self.start.is_none() {
                self.start = Some(f.time);
            }
            if !self.ended {
                self.end = Some(self.end.map_or(f.time, |t| t.max(f.time)));
            }
        }
        Self::fill(&mut self.session_id, f.session_id, is_start);
        Self::fill(&mut self.user, f.user, is_start);
        Self::fill(&mut self.login, f.login, is_start);
        Self::fill(&mut self.cluster, f.cluster, is_start);
        if let Some((name, id)) = f.server {
            Self::fill(&mut self.server, name, is_start);
            Self::fill(&mut self.server_id, id, is_start);
        }
    }

    /// Takes one event into account.
    pub fn add(&mut self, e: &AuditEvent) {
        let server = e.server_metadata().map(|s| {
            let name = if s.server_hostname.is_empty() {
                &s.server_id
            } else {
                &s.server_hostname
            };
            (name.as_str(), s.server_id.as_str())
        });
        self.take(Facts {
            event_type: e.event_type(),
            time: e.time(),
            output: e.print_data().map(<[u8]>::len),
            session_id: e.session_id(),
            user: e.user(),
            login: e.login(),
            cluster: e.cluster_name(),
            server,
        });
        match e {
            AuditEvent::SessionStart(s) => {
                Self::fill(&mut self.terminal_size, &s.terminal_size, true);
                self.participant(&s.user.user);
            }
            AuditEvent::SessionJoin(j) => self.participant(&j.user.user),
            AuditEvent::SessionEnd(end) => {
                self.ended = true;
                if !end.start_time.is_zero() && self.start.is_none() {
                    self.start = Some(end.start_time);
                }
                if !end.end_time.is_zero() {
                    self.end = Some(end.end_time);
                }
                for p in &end.participants {
                    self.participant(p);
                }
            }
            _ => {}
        }
    }

    /// Duration in milliseconds from start to end, when both are known.
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.end?.unix_millis() - self.start?.unix_millis()).max(0))
    }

    /// The summary as a JSON object: `sid`, `user`, `login`, `server`, `server_id`, `cluster`,
    /// `size`, `start`/`end` (RFC 3339, or null), `ended`, `duration_ms`, `participants`,
    /// `counts` (type → number), `events`, `output_bytes`.
    pub fn to_json_value(&self) -> Value {
        let time = |t: Option<Timestamp>| t.map_or(Value::Null, |t| Value::from(t.to_rfc3339()));
        let mut m = Map::new();
        m.insert("sid".into(), self.session_id.clone().into());
        m.insert("user".into(), self.user.clone().into());
        m.insert("login".into(), self.login.clone().into());
        m.insert("server".into(), self.server.clone().into());
        m.insert("server_id".into(), self.server_id.clone().into());
        m.insert("cluster".into(), self.cluster.clone().into());
        m.insert("size".into(), self.terminal_size.clone().into());
        m.insert("start".into(), time(self.start));
        m.insert("end".into(), time(self.end));
        m.insert("ended".into(), self.ended.into());
        m.insert(
            "duration_ms".into(),
            self.duration_ms().map_or(Value::Null, Value::from),
        );
        m.insert("participants".into(), self.participants.clone().into());
        let counts: Map<String, Value> = self
            .counts
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect();
        m.insert("counts".into(), Value::Object(counts));
        m.insert("events".into(), self.events.into());
        m.insert("output_bytes".into(), self.output_bytes.into());
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{SessionJoin, UserMetadata};
    use crate::vectors::{START_MILLIS, sample_session};

    #[test]
    fn sample_session_summary() {
        let mut s = SessionSummary::new();
        for e in sample_session(5) {
            s.add(&e);
        }
        assert_eq!(s.user, "joe");
        assert_eq!(s.login, "root");
        assert_eq!(s.server, "localhost");
        assert_eq!(s.session_id, crate::vectors::SESSION_ID);
        assert_eq!(s.terminal_size, "80:25");
        assert_eq!(s.start, Some(Timestamp::from_unix_millis(START_MILLIS)));
        assert_eq!(s.duration_ms(), Some(100 + 5 * 7));
        assert!(s.ended);
        assert_eq!(s.participants, vec!["joe".to_string()]);
        assert_eq!(s.events, 8);
        assert_eq!(s.counts.get("print"), Some(&5));
        assert_eq!(
            s.output_bytes,
            crate::vectors::sample_output(5).len() as u64
        );
        let v = s.to_json_value();
        assert_eq!(v["start"], "2021-11-18T15:33:59.792Z");
        assert_eq!(v["duration_ms"], 135);
    }

    #[test]
    fn joins_add_participants_and_a_missing_end_uses_the_last_event() {
        let mut events = sample_session(3);
        events.pop();
        let join: AuditEvent = SessionJoin {
            user: UserMetadata {
                user: "alice".into(),
                ..Default::default()
            },
            ..Default::default()
        }
        .into();
        events.insert(2, join);
        let mut s = SessionSummary::new();
        for e in &events {
            s.add(e);
        }
        assert_eq!(s.participants, vec!["joe".to_string(), "alice".to_string()]);
        assert!(!s.ended);
        // The last print is at 100 + 2 * 7 ms.
        assert_eq!(s.duration_ms(), Some(114));
    }
}
