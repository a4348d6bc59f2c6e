//! The session events a recording host writes, with upstream's fields (`lib/srv/sess.go`):
//! `session.start` (T2000I), `resize` (T2002I), `session.leave` (T2003I), `session.data`
//! (T2006I) and `session.end` (T2004I). Times, indexes, ids and the session id are filled in
//! later by the session writer's preparer.

use tapelog_core::AuditEvent;
use tapelog_core::event::{
    Metadata, Resize, ServerMetadata, SessionData, SessionEnd, SessionLeave, SessionMetadata,
    SessionStart, UserMetadata, event_code, event_type,
};
use tapelog_core::export::TerminalSize;
use tapelog_core::proto::Timestamp;

/// Upstream's `session_recording` value for sessions recorded on the host ("node" mode).
pub const SESSION_RECORDING_MODE: &str = "node";

/// Who records, and where: what the session events say about the user and the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The Teleport user (`user`).
    pub user: String,
    /// The OS login the session runs as (`login`).
    pub login: String,
    /// The cluster (`cluster_name`; the preparer requires one).
    pub cluster_name: String,
    /// The recording host's id (`server_id`).
    pub server_id: String,
    /// The recording host's name (`server_hostname`).
    pub server_hostname: String,
}

/// Builds the events of one session.
#[derive(Debug, Clone)]
pub struct SessionEvents {
    identity: Identity,
    session_id: String,
    command: Vec<String>,
}

impl SessionEvents {
    /// Events of `session_id`, running `command` (program and arguments) for `identity`.
    pub fn new(identity: Identity, session_id: &str, command: Vec<String>) -> SessionEvents {
        SessionEvents {
            identity,
            session_id: session_id.to_string(),
            command,
        }
    }

    fn metadata(ty: &str, code: &str) -> Metadata {
        Metadata {
            type_: ty.to_string(),
            code: code.to_string(),
            ..Default::default()
        }
    }

    fn user(&self) -> UserMetadata {
        UserMetadata {
            user: self.identity.user.clone(),
            login: self.identity.login.clone(),
            ..Default::default()
        }
    }

    fn session(&self) -> SessionMetadata {
        SessionMetadata {
            session_id: self.session_id.clone(),
            ..Default::default()
        }
    }

    fn server(&self) -> ServerMetadata {
        ServerMetadata {
            server_id: self.identity.server_id.clone(),
            server_hostname: self.identity.server_hostname.clone(),
            ..Default::default()
        }
    }

    /// `session.start`: the terminal size as `COLS:ROWS`, the command, the recording mode.
    pub fn start(&self, size: TerminalSize) -> AuditEvent {
        SessionStart {
            metadata: Self::metadata(event_type::SESSION_START, event_code::SESSION_START),
            user: self.user(),
            session: self.session(),
            server: self.server(),
            terminal_size: size.to_string(),
            initial_command: self.command.clone(),
            session_recording: SESSION_RECORDING_MODE.to_string(),
            ..Default::default()
        }
        .into()
    }

    /// `resize`: the new size as `COLS:ROWS`.
    pub fn resize(&self, size: TerminalSize) -> AuditEvent {
        Resize {
            metadata: Self::metadata(event_type::RESIZE, event_code::TERMINAL_RESIZE),
            user: self.user(),
            session: self.session(),
            server: self.server(),
            terminal_size: size.to_string(),
            ..Default::default()
        }
        .into()
    }

    /// `session.leave`: the user left (the command ended).
    pub fn leave(&self) -> AuditEvent {
        SessionLeave {
            metadata: Self::metadata(event_type::SESSION_LEAVE, event_code::SESSION_LEAVE),
            user: self.user(),
            session: self.session(),
            server: self.server(),
            ..Default::default()
        }
        .into()
    }

    /// `session.data`: `tx` bytes sent to the user's terminal (the session's output), `rx`
    /// bytes received from it (the input).
    pub fn data(&self, tx: u64, rx: u64) -> AuditEvent {
        SessionData {
            metadata: Self::metadata(event_type::SESSION_DATA, event_code::SESSION_DATA),
            user: self.user(),
            session: self.session(),
            server: self.server(),
            bytes_transmitted: tx,
            bytes_received: rx,
            ..Default::default()
        }
        .into()
    }

    /// `session.end`: interactive, the user as the one participant, the start and end times,
    /// the command and the recording mode; `end` is also the event's time.
    pub fn end(&self, start: Timestamp, end: Timestamp) -> AuditEvent {
        let mut metadata = Self::metadata(event_type::SESSION_END, event_code::SESSION_END);
        metadata.time = end.round_to_millis();
        SessionEnd {
            metadata,
            user: self.user(),
            session: self.session(),
            server: self.server(),
            enhanced_recording: false,
            interactive: true,
            participants: vec![self.identity.user.clone()],
            start_time: start,
            end_time: end,
            initial_command: self.command.clone(),
            session_recording: SESSION_RECORDING_MODE.to_string(),
            ..Default::default()
        }
        .into()
    }
}

/// The user running this process: `$USER`, else `$LOGNAME`, else the password database's name
/// for the real uid, else the uid as a number.
pub fn current_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    let uid = rustix::process::getuid().as_raw();
    if let Some(name) = crate::sys::user_name(uid) {
        return name;
    }
    uid.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> SessionEvents {
        SessionEvents::new(
            Identity {
                user: "joe".into(),
                login: "root".into(),
                cluster_name: "c".into(),
                server_id: "host-1".into(),
                server_hostname: "host".into(),
            },
            "9b6ec731-80f7-4751-9154-4214ecdc812a",
            vec!["bash".into(), "-l".into()],
        )
    }

    #[test]
    fn start_and_end_carry_upstream_fields() {
        let e = events();
        let size = TerminalSize { cols: 80, rows: 25 };
        let json = e.start(size).to_json();
        for part in [
            "\"event\":\"session.start\"",
            "\"code\":\"T2000I\"",
            "\"user\":\"joe\"",
            "\"login\":\"root\"",
            "\"sid\":\"9b6ec731-80f7-4751-9154-4214ecdc812a\"",
            "\"server_id\":\"host-1\"",
            "\"server_hostname\":\"host\"",
            "\"size\":\"80:25\"",
            "\"initial_command\":[\"bash\",\"-l\"]",
            "\"session_recording\":\"node\"",
        ] {
            assert!(json.contains(part), "{part} not in {json}");
        }
        let t0 = Timestamp::from_unix_millis(1_700_000_000_000);
        let t1 = Timestamp::from_unix_millis(1_700_000_005_250);
        let json = e.end(t0, t1).to_json();
        for part in [
            "\"event\":\"session.end\"",
            "\"code\":\"T2004I\"",
            "\"interactive\":true",
            "\"participants\":[\"joe\"]",
            "\"session_start\":\"2023-11-14T22:13:20Z\"",
            "\"session_stop\":\"2023-11-14T22:13:25.25Z\"",
        ] {
            assert!(json.contains(part), "{part} not in {json}");
        }
        let json = e.data(10, 3).to_json();
        assert!(json.contains("\"code\":\"T2006I\"") && json.contains("\"tx\":10,\"rx\":3"));
        assert!(e.leave().to_json().contains("\"code\":\"T2003I\""));
        let json = e
            .resize(TerminalSize {
                cols: 100,
                rows: 40,
            })
            .to_json();
        assert!(json.contains("\"code\":\"T2002I\"") && json.contains("\"size\":\"100:40\""));
    }
}
