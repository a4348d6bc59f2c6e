//! The simple emitters: JSON lines to a writer, log lines, memory, discard, callback, and
//! fan-out to several.

use std::io::Write;
use std::sync::Mutex;

use tapelog_core::AuditEvent;

use super::{BoxEmitter, EmitError, Emitter, lock};

/// Writes each event as one line of Teleport's JSON (`AuditEvent::to_json`, as upstream's
/// `utils.FastMarshal`) and flushes after each line. Writes happen on the calling task: use it
/// with fast writers (files, standard output).
pub struct JsonLinesEmitter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLinesEmitter<W> {
    /// An emitter writing to `out`.
    pub fn new(out: W) -> JsonLinesEmitter<W> {
        JsonLinesEmitter {
            out: Mutex::new(out),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the writer (e.g. to read what a `Vec<u8>` holds so far).
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        f(&mut lock(&self.out))
    }

    fn write_event(&self, event: &AuditEvent) -> Result<(), EmitError> {
        let event_type = event.event_type();
        if event_type.is_empty() {
            return Err(EmitError::Invalid {
                event_type: String::new(),
                reason: "the event has no type".into(),
            });
        }
        let mut line = event.to_json();
        line.push('\n');
        let mut out = lock(&self.out);
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| EmitError::Io {
                event_type: event_type.to_string(),
                source,
            })
    }
}

impl<W: Write + Send + 'static> Emitter for JsonLinesEmitter<W> {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        self.write_event(&event)
    }
}

/// Keeps every event it gets, in order (tests, and callers that collect events).
#[derive(Default)]
pub struct MemoryEmitter {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryEmitter {
    /// An empty emitter.
    pub fn new() -> MemoryEmitter {
        MemoryEmitter::default()
    }

    /// A copy of the events emitted so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        lock(&self.events).clone()
    }

    /// How many events were emitted.
    pub fn len(&self) -> usize {
        lock(&self.events).len()
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        lock(&self.events).is_empty()
    }

    /// Takes the events emitted so far, leaving none.
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *lock(&self.events))
    }
}

impl Emitter for MemoryEmitter {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        lock(&self.events).push(event);
        Ok(())
    }
}

/// Drops every event (upstream's `DiscardEmitter`).
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardEmitter;

impl Emitter for DiscardEmitter {
    async fn emit(&self, _event: AuditEvent) -> Result<(), EmitError> {
        Ok(())
    }
}

/// Calls a function with each event (upstream's `CallbackEmitter`): tests use it to inject
/// failures or to watch events go by.
pub struct CallbackEmitter<F> {
    f: F,
}

impl<F> CallbackEmitter<F>
where
    F: Fn(&AuditEvent) -> Result<(), EmitError> + Send + Sync + 'static,
{
    /// An emitter that calls `f`.
    pub fn new(f: F) -> CallbackEmitter<F> {
        CallbackEmitter { f }
    }
}

impl<F> Emitter for CallbackEmitter<F>
where
    F: Fn(&AuditEvent) -> Result<(), EmitError> + Send + Sync + 'static,
{
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        (self.f)(&event)
    }
}

/// Writes one human-readable log line per event (upstream's `LoggingEmitter`, which logs
/// at info level): `level=info msg="audit event" event=… code=… uid=… sid=… user=…`, then
/// the event's JSON. Print events are skipped (they are terminal bytes, not audit facts), as
/// upstream does.
pub struct LoggingEmitter<W: Write + Send> {
    out: Mutex<W>,
}

impl LoggingEmitter<std::io::Stderr> {
    /// Logs to standard error.
    pub fn stderr() -> LoggingEmitter<std::io::Stderr> {
        LoggingEmitter::new(std::io::stderr())
    }
}

impl<W: Write + Send> LoggingEmitter<W> {
    /// Logs to `out`.
    pub fn new(out: W) -> LoggingEmitter<W> {
        LoggingEmitter {
            out: Mutex::new(out),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// The log line for `event` (without the newline).
    pub fn line(event: &AuditEvent) -> String {
        let mut line = format!(
            "level=info msg=\"audit event\" event={:?} code={:?} uid={:?}",
            event.event_type(),
            event.code(),
            event.id()
        );
        for (key, value) in [("sid", event.session_id()), ("user", event.user())] {
            if !value.is_empty() {
                line.push_str(&format!(" {key}={value:?}"));
            }
        }
        line.push_str(" fields=");
        line.push_str(&event.to_json());
        line
    }
}

impl<W: Write + Send + 'static> Emitter for LoggingEmitter<W> {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        if tapelog_core::event::is_too_verbose_to_log(event.event_type()) {
            return Ok(());
        }
        let mut line = Self::line(&event);
        line.push('\n');
        // A log that can't be written is not a reason to refuse the event.
        let _ = lock(&self.out).write_all(line.as_bytes());
        Ok(())
    }
}

/// Sends each event to every emitter, in order (upstream's `MultiEmitter`). Every emitter
/// gets the event even when an earlier one fails; the errors come back together.
#[derive(Clone, Default)]
pub struct MultiEmitter {
    emitters: Vec<BoxEmitter>,
}

impl MultiEmitter {
    /// An emitter over `emitters`.
    pub fn new(emitters: Vec<BoxEmitter>) -> MultiEmitter {
        MultiEmitter { emitters }
    }

    /// Adds one more emitter.
    pub fn push(&mut self, emitter: BoxEmitter) {
        self.emitters.push(emitter);
    }
}

impl Emitter for MultiEmitter {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        let mut errors = Vec::new();
        for e in &self.emitters {
            if let Err(err) = e.emit_boxed(event.clone()).await {
                errors.push(err);
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(EmitError::Many(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::emit::{AsyncEmitter, BoxEmitter, CheckingEmitter};
    use std::sync::Arc;
    use tapelog_core::vectors::sample_session;

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn json_lines_one_event_per_line() {
        let events = sample_session(2);
        let e = JsonLinesEmitter::new(Vec::new());
        for ev in &events {
            e.emit(ev.clone()).await.unwrap();
        }
        let text = String::from_utf8(e.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), events.len());
        for (line, ev) in lines.iter().zip(&events) {
            assert_eq!(*line, ev.to_json());
        }
        assert!(text.ends_with('\n'));
    }

    #[tokio::test]
    async fn json_lines_errors_are_typed() {
        let e = JsonLinesEmitter::new(Broken);
        let err = e.emit(sample_session(0).remove(0)).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.to_string(), "writing session.start event: disk full");

        let e = JsonLinesEmitter::new(Vec::new());
        let no_type: AuditEvent = tapelog_core::event::SessionJoin::default().into();
        let err = e.emit(no_type).await.unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert!(e.into_inner().is_empty());
    }

    #[tokio::test]
    async fn memory_keeps_events_in_order() {
        let m = Arc::new(MemoryEmitter::new());
        let events = sample_session(3);
        for ev in &events {
            m.emit(ev.clone()).await.unwrap();
        }
        assert_eq!(m.events(), events);
        assert_eq!(m.len(), events.len());
        assert_eq!(m.take(), events);
        assert!(m.is_empty());
    }

    fn at(ms: i64) -> tapelog_core::proto::Timestamp {
        tapelog_core::proto::Timestamp::from_unix_nanos(ms as i128 * 1_000_000 + 400_000)
    }

    fn typed(event_type: &str, code: &str) -> AuditEvent {
        let mut e: AuditEvent = tapelog_core::event::UserLogin::default().into();
        if let Some(m) = e.metadata_mut() {
            m.type_ = event_type.into();
            m.code = code.into();
        }
        e
    }

    #[tokio::test]
    async fn checking_fills_fields_and_refuses_bad_events() {
        let mem = Arc::new(MemoryEmitter::new());
        let check = CheckingEmitter::new(mem.clone(), "cluster.one")
            .with_clock(Arc::new(|| at(1_700_000_000_000)))
            .with_ids(Arc::new(|| "id-1".to_string()));

        check.emit(typed("user.login", "T1000I")).await.unwrap();
        let got = mem.take().remove(0);
        assert_eq!(got.id(), "id-1");
        assert_eq!(got.cluster_name(), "cluster.one");
        // 400 µs past the millisecond rounds down, as Go's Round(time.Millisecond).
        assert_eq!(got.time().unix_nanos(), 1_700_000_000_000 * 1_000_000);

        let err = check.emit(typed("", "T1000I")).await.unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.to_string().contains("missing mandatory event type"),
            "{err}"
        );
        let err = check.emit(typed("user.login", "")).await.unwrap_err();
        assert!(err.is_permanent());
        assert!(err.to_string().contains("code"), "{err}");
        // print needs no code and gets no uid.
        let mut p = tapelog_core::vectors::print(1, 0, 0, 0, b"x");
        p.set_time(tapelog_core::proto::Timestamp::ZERO);
        if let Some(m) = p.metadata_mut() {
            m.cluster_name.clear();
        }
        check.emit(p).await.unwrap();
        let got = mem.take().remove(0);
        assert_eq!(got.id(), "");
        assert_eq!(got.cluster_name(), "cluster.one");
        assert!(mem.is_empty());
    }

    #[tokio::test]
    async fn async_emitter_never_blocks_and_counts_drops() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mem = Arc::new(MemoryEmitter::new());
        struct Gated(Arc<tokio::sync::Semaphore>, Arc<MemoryEmitter>);
        impl Emitter for Gated {
            async fn emit(&self, e: AuditEvent) -> Result<(), EmitError> {
                let _permit = self
                    .0
                    .acquire()
                    .await
                    .map_err(|e| EmitError::Closed(e.to_string()))?;
                self.1.emit(e).await
            }
        }
        let metrics = crate::metrics::Metrics::shared();
        let a = AsyncEmitter::with_metrics(Gated(gate.clone(), mem.clone()), 4, metrics.clone());
        let started = std::time::Instant::now();
        for i in 0..100 {
            let mut e = typed("user.login", "T1000I");
            e.set_index(i);
            a.emit(e).await.unwrap();
        }
        // The inner emitter is stuck; emitting 100 events still returned at once.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let s = a.stats();
        // The task may hold one event, the buffer four.
        assert!(s.dropped >= 95 && s.dropped <= 96, "{s:?}");
        assert_eq!(metrics.audit_failed_emit_events.get(), s.dropped);
        assert_eq!(metrics.audit_dropped_events.get(), s.dropped);
        gate.add_permits(1000);
        let s = a.close().await;
        assert_eq!(s.emitted + s.dropped, 100, "{s:?}");
        assert_eq!(mem.len() as u64, s.emitted);
        // Kept events are the first ones, in order.
        let idx: Vec<i64> = mem.events().iter().map(AuditEvent::index).collect();
        assert_eq!(idx, (0..s.emitted as i64).collect::<Vec<_>>());
        assert!(a.emit(typed("user.login", "T1000I")).await.is_err());
    }

    #[tokio::test]
    async fn multi_reaches_every_emitter_and_gathers_errors() {
        let a = Arc::new(MemoryEmitter::new());
        let b = Arc::new(MemoryEmitter::new());
        let failing: BoxEmitter = Arc::new(CallbackEmitter::new(|e: &AuditEvent| {
            Err(EmitError::invalid(e, "no"))
        }));
        let multi = MultiEmitter::new(vec![a.clone(), failing.clone(), b.clone()]);
        let err = multi.emit(typed("user.login", "T1000I")).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!((a.len(), b.len()), (1, 1));

        let io: BoxEmitter = Arc::new(JsonLinesEmitter::new(Broken));
        let multi = MultiEmitter::new(vec![failing, io, a.clone()]);
        let err = multi.emit(typed("user.login", "T1000I")).await.unwrap_err();
        assert!(matches!(&err, EmitError::Many(v) if v.len() == 2), "{err}");
        // One transient failure makes the whole transient: a retry may help.
        assert!(err.is_transient());
        assert_eq!(a.len(), 2);
        assert!(MultiEmitter::default().emit(typed("x", "y")).await.is_ok());
    }

    #[tokio::test]
    async fn logging_discard_and_callback() {
        let log = LoggingEmitter::new(Vec::new());
        let events = sample_session(1);
        for e in &events {
            log.emit(e.clone()).await.unwrap();
        }
        let text = String::from_utf8(log.into_inner()).unwrap();
        // The sample session is start, resize, print, end: resize and print are left out.
        let logged: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("event=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(logged, ["session.start", "session.end"], "{text}");
        // Upstream's other verbose types, and events without a type, are left out too.
        let verbose = LoggingEmitter::new(Vec::new());
        for ty in ["session.disk", "app.session.request", "", "session.join"] {
            let e = AuditEvent::from_json(&format!(r#"{{"event":"{ty}","code":"X"}}"#))
                .unwrap_or_else(|_| AuditEvent::decode_oneof(&[0x0a, 0x00]).unwrap());
            verbose.emit(e).await.unwrap();
        }
        let verbose = String::from_utf8(verbose.into_inner()).unwrap();
        assert_eq!(verbose.lines().count(), 1, "{verbose}");
        assert!(verbose.contains("event=\"session.join\""), "{verbose}");
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with(
                "level=info msg=\"audit event\" event=\"session.start\" code=\"T2000I\""
            ),
            "{first}"
        );
        assert!(first.ends_with(&events[0].to_json()));

        assert!(DiscardEmitter.emit(events[0].clone()).await.is_ok());

        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let s = seen.clone();
        let cb = CallbackEmitter::new(move |e: &AuditEvent| {
            s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if e.index() == 2 {
                Err(EmitError::Closed("injected".into()))
            } else {
                Ok(())
            }
        });
        let results: Vec<bool> = {
            let mut r = Vec::new();
            for e in &events {
                r.push(cb.emit(e.clone()).await.is_ok());
            }
            r
        };
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), events.len());
        assert_eq!(results.iter().filter(|ok| !**ok).count(), 1);
    }
}
