//! Recovering a missing session end: a completed recording whose writer crashed has no
//! `session.end` (or `windows.desktop.session.end`); upstream's `ensureSessionEndEvent`
//! synthesises one from the session's start, its joins and its last event.

use crate::event::{
    AuditEvent, SessionEnd, SessionStart, WindowsDesktopSessionEnd, WindowsDesktopSessionStart,
    event_code, event_type,
};
use crate::proto::Timestamp;

use crate::event::check_and_set_event_fields;

/// Most participants kept for a recovered end; further distinct names are dropped (and
/// counted) so that a hostile recording cannot grow the set without bound. Upstream has no
/// limit.
pub const MAX_PARTICIPANTS: usize = 1024;

/// Builds the end event of a session from its events, fed one by one in recording order.
///
/// Memory stays bounded whatever the recording's length: it keeps the end event being built
/// from the latest `session.start` / `windows.desktop.session.start` (as upstream, a later
/// start overwrites an earlier one), the participant names (at most [`MAX_PARTICIPANTS`]) and
/// the last event's time.
#[derive(Debug, Clone, Default)]
pub struct SessionEndRecovery {
    ssh: Option<Box<SessionEnd>>,
    desktop: Option<Box<WindowsDesktopSessionEnd>>,
    /// Start user and joiners, first occurrence order, no duplicates.
    participants: Vec<String>,
    /// One name per desktop start (upstream does not deduplicate these).
    desktop_participants: Vec<String>,
    dropped_participants: u64,
    ended: bool,
    events: u64,
    last_time: Timestamp,
}

impl SessionEndRecovery {
    /// An empty recovery (no events seen).
    pub fn new() -> SessionEndRecovery {
        SessionEndRecovery::default()
    }

    /// Takes the next event of the recording. After an end event the rest is ignored.
    pub fn feed(&mut self, event: &AuditEvent) {
        if self.ended {
            return;
        }
        self.events += 1;
        self.last_time = event.time();
        match event {
            AuditEvent::SessionEnd(_) | AuditEvent::WindowsDesktopSessionEnd(_) => {
                self.ended = true;
            }
            AuditEvent::SessionStart(s) => {
                self.ssh = Some(Box::new(ssh_end_from(s)));
                self.add_participant(&s.user.user);
            }
            AuditEvent::SessionJoin(j) => self.add_participant(&j.user.user),
            AuditEvent::WindowsDesktopSessionStart(s) => {
                self.desktop = Some(Box::new(desktop_end_from(s)));
                if self.desktop_participants.len() < MAX_PARTICIPANTS {
                    self.desktop_participants.push(s.user.user.clone());
                } else {
                    self.dropped_participants += 1;
                }
            }
            _ => {}
        }
    }

    fn add_participant(&mut self, user: &str) {
        if self.participants.iter().any(|p| p == user) {
            return;
        }
        if self.participants.len() < MAX_PARTICIPANTS {
            self.participants.push(user.to_string());
        } else {
            self.dropped_participants += 1;
        }
    }

    /// Whether a `session.end` or `windows.desktop.session.end` was seen.
    pub fn has_end(&self) -> bool {
        self.ended
    }

    /// Whether a `session.start` or `windows.desktop.session.start` was seen.
    pub fn has_start(&self) -> bool {
        self.ssh.is_some() || self.desktop.is_some()
    }

    /// Events fed so far (up to and including an end event).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Participant names dropped because of [`MAX_PARTICIPANTS`].
    pub fn dropped_participants(&self) -> u64 {
        self.dropped_participants
    }

    /// The end event to emit, or `None` when none is needed or none can be built:
    ///
    /// - `None` if the recording has an end event already;
    /// - `None` if it has no events, or no `session.start` / `windows.desktop.session.start`
    ///   (upstream gives up with "could not find session start"): nothing to copy from;
    /// - otherwise a `session.end` (code `T2004I`) when an SSH start was seen (it wins over a
    ///   desktop start, as upstream), else a `windows.desktop.session.end` (code `TDP01I`).
    ///
    /// The event's start time is the start event's time; its end time and time are the last
    /// event's. Then upstream's `checkAndSetEventFields` is applied with `uid` as the id, `now`
    /// as the time if the last event had none, and the start's cluster name.
    pub fn finish(self, now: Timestamp, uid: &str) -> Option<AuditEvent> {
        if self.ended || self.events == 0 {
            return None;
        }
        let last = self.last_time;
        let mut event: AuditEvent = if let Some(mut end) = self.ssh {
            end.participants = self.participants;
            end.end_time = last;
            end.metadata.time = last;
            AuditEvent::SessionEnd(end)
        } else if let Some(mut end) = self.desktop {
            end.participants = self.desktop_participants;
            end.end_time = last;
            end.metadata.time = last;
            AuditEvent::WindowsDesktopSessionEnd(end)
        } else {
            return None;
        };
        let cluster = event.cluster_name().to_string();
        check_and_set_event_fields(&mut event, now, uid, &cluster).ok()?;
        Some(event)
    }
}

/// The `session.end` upstream builds from a `session.start` (participants and end time come
/// later).
fn ssh_end_from(s: &SessionStart) -> SessionEnd {
    let mut end = SessionEnd {
        user: s.user.clone(),
        session: s.session.clone(),
        server: s.server.clone(),
        connection: s.connection.clone(),
        kubernetes_cluster: s.kubernetes_cluster.clone(),
        kubernetes_pod: s.kubernetes_pod.clone(),
        initial_command: s.initial_command.clone(),
        session_recording: s.session_recording.clone(),
        interactive: !s.terminal_size.is_empty(),
        start_time: s.metadata.time,
        ..SessionEnd::default()
    };
    end.metadata.type_ = event_type::SESSION_END.to_string();
    end.metadata.code = event_code::SESSION_END.to_string();
    end.metadata.cluster_name = s.metadata.cluster_name.clone();
    end
}

/// The `windows.desktop.session.end` upstream builds from a `windows.desktop.session.start`.
fn desktop_end_from(s: &WindowsDesktopSessionStart) -> WindowsDesktopSessionEnd {
    let mut end = WindowsDesktopSessionEnd {
        user: s.user.clone(),
        session: s.session.clone(),
        windows_desktop_service: s.windows_desktop_service.clone(),
        domain: s.domain.clone(),
        desktop_addr: s.desktop_addr.clone(),
        desktop_labels: s.desktop_labels.clone(),
        desktop_name: format!("{} (recovered)", s.desktop_name),
        recorded: true,
        start_time: s.metadata.time,
        ..WindowsDesktopSessionEnd::default()
    };
    end.metadata.type_ = event_type::WINDOWS_DESKTOP_SESSION_END.to_string();
    end.metadata.code = event_code::DESKTOP_SESSION_END.to_string();
    end.metadata.cluster_name = s.metadata.cluster_name.clone();
    end
}
