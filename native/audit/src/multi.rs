//! [`MultiLog`]: several audit logs as one (upstream's `MultiLog` behind `audit_events_uri`),
//! each chosen by a URI ([`AuditUri`]): `file://DIR`, `postgres://…`/`postgresql://…`,
//! `stdout://`, `discard://`.
//!
//! Upstream's rules: every event goes to every log, in order, even after one failed, and the
//! failures are reported together; a search goes to the logs in order and the first answer
//! that is not "not supported" is the answer (in practice the first URI, unless it only
//! writes). Where upstream answers an empty page when every log is write-only, this one
//! says so with [`AuditError::NotSupported`].

use std::path::PathBuf;
use std::sync::Arc;

use tapelog_core::AuditEvent;

use crate::emit::{EmitError, Emitter};
use crate::metrics::Metrics;
use crate::{
    AuditError, AuditLog, AuditLogger, DiscardAuditLog, Durability, FeedPage, FileLog,
    FileLogConfig, PgLog, PgLogConfig, PreparedEvents, SearchPage, SearchQuery, SessionQuery,
    WriterLog,
};

/// Where one audit log is, as a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditUri {
    /// `file://DIR`: tapelog's file log with data directory `DIR` (day files under
    /// `DIR/log/<server id>/`, as `--data-dir`).
    File(PathBuf),
    /// `postgres://…` or `postgresql://…`: the database log (the URI as given).
    Postgres(String),
    /// `stdout://`: Teleport's JSON, one line per event, on standard output; can't search.
    Stdout,
    /// `discard://`: keeps nothing, finds nothing.
    Discard,
}

impl AuditUri {
    /// Reads one URI; the error names it and the schemes known.
    pub fn parse(uri: &str) -> Result<AuditUri, AuditError> {
        let uri = uri.trim();
        if let Some(dir) = uri.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(AuditError::Config(format!(
                    "audit URI {uri:?}: file:// needs a directory (file:///var/lib/tapelog)"
                )));
            }
            return Ok(AuditUri::File(PathBuf::from(dir)));
        }
        if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
            return Ok(AuditUri::Postgres(uri.to_string()));
        }
        match uri {
            "stdout://" | "stdout:" => Ok(AuditUri::Stdout),
            "discard://" | "discard:" => Ok(AuditUri::Discard),
            _ => Err(AuditError::Config(format!(
                "audit URI {uri:?}: unknown scheme (use file://DIR, postgres://…, postgresql://…, stdout:// or discard://)"
            ))),
        }
    }
}

/// How the logs of a [`MultiLog`] are opened.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The file log's data directory when no URI is given (`file://<data_dir>`).
    pub data_dir: PathBuf,
    /// This server's id (the file log's directory).
    pub server_id: String,
    /// The file logs' durability.
    pub durability: Durability,
    /// Where the logs count.
    pub metrics: Arc<Metrics>,
}

/// One audit log of a [`MultiLog`].
#[derive(Clone)]
pub enum AuditBackend {
    /// `file://`.
    File(FileLog),
    /// `postgres://`.
    Postgres(PgLog),
    /// `stdout://`.
    Stdout(Arc<WriterLog<std::io::Stdout>>),
    /// `discard://`.
    Discard(Arc<DiscardAuditLog>),
}

impl AuditBackend {
    /// What the log is, for messages: its URI (no password).
    pub fn describe(&self) -> String {
        match self {
            AuditBackend::File(f) => format!("file://{}", f.config().data_dir.display()),
            AuditBackend::Postgres(p) => p.shown_uri().to_string(),
            AuditBackend::Stdout(_) => "stdout://".into(),
            AuditBackend::Discard(_) => "discard://".into(),
        }
    }

    async fn emit_batch(&self, events: Vec<AuditEvent>) -> Result<(), EmitError> {
        match self {
            AuditBackend::File(f) => f.emit_batch(events).await,
            AuditBackend::Postgres(p) => p.emit_batch(events).await,
            AuditBackend::Stdout(w) => w.emit_batch(events).await,
            AuditBackend::Discard(d) => d.emit_batch(events).await,
        }
    }

    async fn search_events(&self, q: SearchQuery) -> Result<SearchPage, AuditError> {
        match self {
            AuditBackend::File(f) => f.search_events(q).await,
            AuditBackend::Postgres(p) => p.search_events(q).await,
            AuditBackend::Stdout(w) => w.search_events(q).await,
            AuditBackend::Discard(d) => d.search_events(q).await,
        }
    }

    async fn search_session_events(&self, q: SessionQuery) -> Result<SearchPage, AuditError> {
        match self {
            AuditBackend::File(f) => f.search_session_events(q).await,
            AuditBackend::Postgres(p) => p.search_session_events(q).await,
            AuditBackend::Stdout(w) => w.search_session_events(q).await,
            AuditBackend::Discard(d) => d.search_session_events(q).await,
        }
    }

    async fn close(&self) -> Result<(), AuditError> {
        match self {
            AuditBackend::File(f) => f.close().await,
            AuditBackend::Postgres(p) => {
                p.shut();
                Ok(())
            }
            AuditBackend::Stdout(w) => w.close().await,
            AuditBackend::Discard(d) => d.close().await,
        }
    }
}

/// Several audit logs as one (cheap to clone).
#[derive(Clone)]
pub struct MultiLog {
    logs: Arc<Vec<AuditBackend>>,
}

impl MultiLog {
    /// The logs of `uris`, opened in order; none → `file://<data_dir>`. A database that
    /// can't be reached fails the open.
    pub async fn open(uris: &[String], options: &OpenOptions) -> Result<MultiLog, AuditError> {
        let mut parsed = uris
            .iter()
            .map(|u| AuditUri::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            parsed.push(AuditUri::File(options.data_dir.clone()));
        }
        let mut logs = Vec::with_capacity(parsed.len());
        for uri in parsed {
            logs.push(match uri {
                AuditUri::File(dir) => {
                    let mut c = FileLogConfig::new(dir, &options.server_id);
                    c.durability = options.durability;
                    c.metrics = options.metrics.clone();
                    AuditBackend::File(FileLog::open(c)?)
                }
                AuditUri::Postgres(u) => {
                    AuditBackend::Postgres(PgLog::open(&u, PgLogConfig::default()).await?)
                }
                AuditUri::Stdout => {
                    AuditBackend::Stdout(Arc::new(WriterLog::new(std::io::stdout())))
                }
                AuditUri::Discard => AuditBackend::Discard(Arc::new(DiscardAuditLog::new())),
            });
        }
        Ok(MultiLog::new(logs))
    }

    /// The given logs, in order.
    pub fn new(logs: Vec<AuditBackend>) -> MultiLog {
        MultiLog {
            logs: Arc::new(logs),
        }
    }

    /// The logs, in order.
    pub fn logs(&self) -> &[AuditBackend] {
        &self.logs
    }

    /// The first file log (the arrival-order feed and session indexes read it).
    pub fn file_log(&self) -> Option<&FileLog> {
        self.logs.iter().find_map(|l| match l {
            AuditBackend::File(f) => Some(f),
            _ => None,
        })
    }

    /// The first database log (leases live there).
    pub fn postgres(&self) -> Option<&PgLog> {
        self.logs.iter().find_map(|l| match l {
            AuditBackend::Postgres(p) => Some(p),
            _ => None,
        })
    }

    /// The arrival-order feed of the first log that has one (a file log or a database);
    /// `None` when none has (`stdout://`, `discard://` only).
    pub async fn feed(&self, key: String, limit: usize) -> Option<Result<FeedPage, AuditError>> {
        for l in self.logs.iter() {
            match l {
                AuditBackend::File(f) => return Some(f.feed(key, limit).await),
                AuditBackend::Postgres(p) => return Some(p.feed(&key, limit).await),
                _ => {}
            }
        }
        None
    }

    /// Whether every database log answers: the first failure, naming its log.
    pub async fn check(&self) -> Result<(), AuditError> {
        for l in self.logs.iter() {
            if let AuditBackend::Postgres(p) = l {
                p.check().await?;
            }
        }
        Ok(())
    }
}

impl MultiLog {
    /// [`Emitter::emit_batch`] of events whose lines are prepared already: file logs write
    /// those lines ([`FileLog::append_prepared`]), the others take the events. Same rules:
    /// every log gets the batch even after one failed.
    pub async fn emit_prepared(&self, batch: PreparedEvents) -> Result<(), EmitError> {
        let batch = Arc::new(batch);
        let mut errors = Vec::new();
        for log in self.logs.iter() {
            let r = match log {
                AuditBackend::File(f) => f.emit_prepared(batch.clone()).await,
                other => other.emit_batch(batch.events().to_vec()).await,
            };
            if let Err(e) = r {
                errors.push(e);
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(EmitError::Many(errors)),
        }
    }
}

impl Emitter for MultiLog {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        self.emit_batch(vec![event]).await
    }

    /// Every log gets the batch, even after one failed; one failure is returned as it is,
    /// several together ([`EmitError::Many`]).
    async fn emit_batch(&self, events: Vec<AuditEvent>) -> Result<(), EmitError> {
        let mut errors = Vec::new();
        let last = self.logs.len().saturating_sub(1);
        let mut events = Some(events);
        for (i, log) in self.logs.iter().enumerate() {
            let batch = if i == last {
                events.take().unwrap_or_default()
            } else {
                events.clone().unwrap_or_default()
            };
            if let Err(e) = log.emit_batch(batch).await {
                errors.push(e);
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(EmitError::Many(errors)),
        }
    }
}

impl AuditLog for MultiLog {
    async fn search_events(&self, query: SearchQuery) -> Result<SearchPage, AuditError> {
        let mut last = None;
        for log in self.logs.iter() {
            match log.search_events(query.clone()).await {
                Err(e @ AuditError::NotSupported(_)) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(AuditError::NotSupported("searching events: no audit log")))
    }

    async fn search_session_events(&self, query: SessionQuery) -> Result<SearchPage, AuditError> {
        let mut last = None;
        for log in self.logs.iter() {
            match log.search_session_events(query.clone()).await {
                Err(e @ AuditError::NotSupported(_)) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(AuditError::NotSupported("searching sessions: no audit log")))
    }
}

impl AuditLogger for MultiLog {
    /// Closes every log; the first failure is returned after all were closed.
    async fn close(&self) -> Result<(), AuditError> {
        let mut first = None;
        for log in self.logs.iter() {
            if let Err(e) = log.close().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            AuditUri::parse("file:///var/lib/tapelog").unwrap(),
            AuditUri::File("/var/lib/tapelog".into())
        );
        assert_eq!(
            AuditUri::parse("postgresql://u@h/db#disable_cleanup=true").unwrap(),
            AuditUri::Postgres("postgresql://u@h/db#disable_cleanup=true".into())
        );
        assert_eq!(AuditUri::parse("stdout://").unwrap(), AuditUri::Stdout);
        assert_eq!(AuditUri::parse("discard://").unwrap(), AuditUri::Discard);
        let e = AuditUri::parse("dynamodb://table").unwrap_err().to_string();
        assert!(
            e.contains("dynamodb://table") && e.contains("unknown scheme"),
            "{e}"
        );
        assert!(AuditUri::parse("file://").is_err());
    }
}
