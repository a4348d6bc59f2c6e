//! [`PgLog`]: the audit log in PostgreSQL or CockroachDB, in Teleport's `pgevents` schema, so
//! that Teleport and tapelog pointed at one database read each other's events.
//!
//! The rules (URI, session UUIDs, event ids, page keys, statements) are the core's
//! (`tapelog_core::audit::pg`); this module runs them: a `deadpool-postgres` pool of
//! `tokio-postgres` connections (TLS by rustls, `tls.rs`), the migration at open, batched
//! inserts (one statement per batch), searches, the retention cleanup, a lease for jobs that
//! one replica at a time must run ([`PgLog::try_lease`]) and a health check.
//!
//! Differences from upstream, each on purpose (docs/audit-log.md):
//! - `event_id` is derived from the event's `uid`, so an insert retried after a lost answer
//!   stores nothing twice (upstream's random id stores it twice);
//! - a search reads in keyset steps of 500 rows (one statement each) instead of a cursor in a
//!   read-only transaction: the same rows, order, cap and keys, no transaction held open;
//! - CockroachDB is recognised by `version()` (upstream reads the `crdb_version` parameter,
//!   which the driver does not expose); the outcome is the same.

mod tls;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tapelog_core::audit::lines::prepare_line_with_max;
use tapelog_core::audit::page::{Admit, PageBuilder};
use tapelog_core::audit::pg::{
    FeedPosition, PageKey, PgUrl, event_uuid, format_uuid, session_uuid, sql, unix_micros,
};
use tapelog_core::audit::{EVENTS_MAX_ITERATION_LIMIT, SESSION_RECORDING_EVENTS, effective_limit};
use tapelog_core::{AuditEvent, EventFields, Timestamp};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::FeedPage;
use crate::emit::{EmitError, Emitter};
use crate::{
    AuditError, AuditLog, Condition, Order, SearchPage, SearchQuery, SessionQuery, StoredEvent,
};

/// Rows read per search step (upstream's `FETCH 500`).
const FETCH: i64 = 500;

/// How long a failing call is retried before it gives up (upstream: ten attempts, linear
/// backoff of 100 ms steps up to 750 ms).
const RETRY_BUDGET: Duration = Duration::from_secs(3);

/// How far behind the present the feed reads by default: a row is visible at its commit but
/// ordered by `creation_time`, its transaction's start; an insert that takes longer than this
/// to commit could be passed over.
pub const DEFAULT_FEED_LAG: Duration = Duration::from_secs(5);

/// Settings of a [`PgLog`] besides its URI.
#[derive(Debug, Clone)]
pub struct PgLogConfig {
    /// Events whose JSON is longer are trimmed, then refused (as the file log).
    pub max_line_size: usize,
    /// The pool's size when the URI has no `pool_max_conns`.
    pub pool_size: usize,
    /// How long the arrival-order feed stays behind the present ([`PgLog::feed`]).
    pub feed_lag: Duration,
    /// How long a new connection may take.
    pub connect_timeout: Duration,
}

impl Default for PgLogConfig {
    fn default() -> Self {
        PgLogConfig {
            max_line_size: tapelog_core::audit::MAX_SCAN_TOKEN_SIZE,
            pool_size: 16,
            feed_lag: DEFAULT_FEED_LAG,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The audit log in a PostgreSQL or CockroachDB database (cheap to clone: one pool).
#[derive(Clone)]
pub struct PgLog {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    url: PgUrl,
    cockroach: bool,
    config: PgLogConfig,
    cleanup: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PgLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLog")
            .field("uri", &self.inner.url.shown)
            .field("cockroach", &self.inner.cockroach)
            .finish()
    }
}

/// A database failure as an [`AuditError`]: connection-level trouble (refused, closed, too
/// many connections, shutting down, serialization conflicts) is
/// [`AuditError::Unavailable`]; anything else the server said is [`AuditError::Database`].
fn db_error(shown: &str, what: &str, e: &tokio_postgres::Error) -> AuditError {
    let transient = match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
        }
    };
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    };
    if transient {
        AuditError::Unavailable(format!("{shown}: {what}: {detail}"))
    } else {
        AuditError::Database(format!("{shown}: {what}: {detail}"))
    }
}

fn pool_error(shown: &str, what: &str, e: PoolError) -> AuditError {
    match e {
        PoolError::Backend(e) => db_error(shown, what, &e),
        other => AuditError::Unavailable(format!("{shown}: {what}: {other}")),
    }
}

/// Runs `op` until it succeeds, fails permanently, or [`RETRY_BUDGET`] is spent (linear
/// backoff, 100 ms steps up to 750 ms).
async fn retry<T, F, Fut>(mut op: F) -> Result<T, AuditError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AuditError>>,
{
    let start = tokio::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e @ AuditError::Unavailable(_)) => {
                attempt += 1;
                let wait = Duration::from_millis((100 * u64::from(attempt)).min(750));
                if start.elapsed() + wait > RETRY_BUDGET {
                    return Err(e);
                }
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn micros_to_datetime(micros: i64) -> Result<OffsetDateTime, AuditError> {
    to_datetime(Timestamp::from_unix_nanos(i128::from(micros) * 1000))
}

fn to_datetime(t: Timestamp) -> Result<OffsetDateTime, AuditError> {
    OffsetDateTime::from_unix_timestamp_nanos(t.unix_nanos())
        .map_err(|e| AuditError::Config(format!("time {t:?} out of range: {e}")))
}

/// One row to insert.
struct Row {
    time: OffsetDateTime,
    id: uuid::Uuid,
    kind: String,
    session: uuid::Uuid,
    data: String,
}

impl PgLog {
    /// Connects to `uri` (`postgres://` or `postgresql://`, libpq's options, upstream's
    /// `#fragment` options), creates the database when it is missing and the connection may
    /// (as upstream, from the `postgres` database), runs the schema migration (or accepts the
    /// schema Teleport made), sets CockroachDB's row TTL or starts PostgreSQL's periodic
    /// cleanup. Fails when the database can't be reached within a few seconds.
    pub async fn open(uri: &str, config: PgLogConfig) -> Result<PgLog, AuditError> {
        let url = PgUrl::parse(uri).map_err(|e| AuditError::Config(e.to_string()))?;
        let mut pg = tokio_postgres::Config::from_str(&url.connect)
            .map_err(|e| AuditError::Config(format!("{}: {e}", url.shown)))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.connect_timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("tapelog");
        }
        let tls = tls::connector(&url)?;
        ensure_database(&url, &pg, tls.clone()).await?;
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = Some(config.connect_timeout);
        let pool = Pool::builder(manager)
            .max_size(url.pool_max_conns.unwrap_or(config.pool_size))
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| AuditError::Config(format!("{}: connection pool: {e}", url.shown)))?;
        let shown = url.shown.clone();
        let cockroach = retry(|| async {
            let c = pool
                .get()
                .await
                .map_err(|e| pool_error(&shown, "connecting", e))?;
            let v: String = c
                .query_one("SELECT version()", &[])
                .await
                .map_err(|e| db_error(&shown, "reading the version", &e))?
                .try_get(0)
                .map_err(|e| db_error(&shown, "reading the version", &e))?;
            Ok(v.contains("CockroachDB"))
        })
        .await?;
        let log = PgLog {
            inner: Arc::new(Inner {
                pool,
                url,
                cockroach,
                config,
                cleanup: Mutex::new(None),
            }),
        };
        retry(|| log.migrate()).await?;
        log.start_retention().await?;
        Ok(log)
    }

    /// Whether the server is CockroachDB.
    pub fn is_cockroach(&self) -> bool {
        self.inner.cockroach
    }

    /// The URI as shown in messages (no password).
    pub fn shown_uri(&self) -> &str {
        &self.inner.url.shown
    }

    async fn client(&self, what: &str) -> Result<deadpool_postgres::Object, AuditError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(&self.inner.url.shown, what, e))
    }

    fn err(&self, what: &str) -> impl Fn(tokio_postgres::Error) -> AuditError + '_ {
        let shown = self.inner.url.shown.clone();
        let what = what.to_string();
        move |e| db_error(&shown, &what, &e)
    }

    /// Upstream's migration: the version table on its own (its failure ignored), then in one
    /// serializable transaction the stored version, the missing schemas, the new version.
    async fn migrate(&self) -> Result<(), AuditError> {
        let mut c = self.client("migrating the schema").await?;
        let _ = c.batch_execute(sql::VERSION_TABLE).await;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::Serializable)
            .start()
            .await
            .map_err(self.err("migrating the schema"))?;
        let version: i32 = tx
            .query_one(sql::CURRENT_VERSION, &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(self.err("reading audit_version"))?;
        if version > sql::SCHEMA_VERSION {
            return Err(AuditError::Database(format!(
                "{}: unsupported schema version {version} (this tapelog knows up to {})",
                self.inner.url.shown,
                sql::SCHEMA_VERSION
            )));
        }
        if version == 0 {
            for stmt in sql::schema_v1(self.inner.cockroach) {
                tx.batch_execute(stmt)
                    .await
                    .map_err(self.err("creating the events table"))?;
            }
            tx.batch_execute(sql::RECORD_VERSION)
                .await
                .map_err(self.err("recording the schema version"))?;
        }
        tx.commit().await.map_err(self.err("migrating the schema"))
    }

    /// CockroachDB: the row TTL (or its removal) at every start. PostgreSQL: the periodic
    /// delete of rows older than the retention, first after one interval.
    async fn start_retention(&self) -> Result<(), AuditError> {
        let url = &self.inner.url;
        if self.inner.cockroach {
            let stmt = sql::cockroach_ttl(url.retention_period, url.disable_cleanup);
            let c = self.client("setting the row TTL").await?;
            tokio::time::timeout(Duration::from_secs(30), c.batch_execute(&stmt))
                .await
                .map_err(|_| {
                    AuditError::Unavailable(format!("{}: setting the row TTL timed out", url.shown))
                })?
                .map_err(self.err("setting the row TTL"))?;
            return Ok(());
        }
        if url.disable_cleanup {
            return Ok(());
        }
        let log = self.clone();
        let interval = url.cleanup_interval;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let _ = log.delete_expired().await;
            }
        });
        if let Ok(mut slot) = self.inner.cleanup.lock() {
            *slot = Some(task);
        }
        Ok(())
    }

    /// Deletes the rows whose `creation_time` is older than the retention (PostgreSQL's
    /// periodic cleanup; also callable at any time). Returns how many went.
    pub async fn delete_expired(&self) -> Result<u64, AuditError> {
        let micros = i64::try_from(self.inner.url.retention_period.as_micros()).unwrap_or(i64::MAX);
        retry(|| async {
            let c = self.client("deleting expired events").await?;
            c.execute(sql::DELETE_EXPIRED, &[&micros])
                .await
                .map_err(self.err("deleting expired events"))
        })
        .await
    }

    /// Stores `events` with one statement (an event already there, same time and uid, is
    /// skipped: a batch that meets one takes a second statement). Every event is checked first: one that can't be stored refuses the batch
    /// and nothing is written. Database trouble is retried for a few seconds, then
    /// [`AuditError::Unavailable`]; since a retried insert stores nothing twice, the caller
    /// may send the whole batch again.
    pub async fn insert(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            let line = prepare_line_with_max(e, self.inner.config.max_line_size)?;
            let uid = e.id();
            let id = if uid.is_empty() {
                // No uid (the checking emitter always sets one): an id of its own.
                uuid::Uuid::new_v4()
            } else {
                uuid::Uuid::from_bytes(event_uuid(uid))
            };
            rows.push(Row {
                time: to_datetime(e.time())?,
                id,
                kind: e.event_type().to_string(),
                session: uuid::Uuid::from_bytes(session_uuid(e.session_id())),
                data: line.json,
            });
        }
        if rows.is_empty() {
            return Ok(());
        }
        let times: Vec<OffsetDateTime> = rows.iter().map(|r| r.time).collect();
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.id).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let sessions: Vec<uuid::Uuid> = rows.iter().map(|r| r.session).collect();
        let data: Vec<&str> = rows.iter().map(|r| r.data.as_str()).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&times, &ids, &kinds, &sessions, &data];
        retry(|| async {
            let c = self.client("storing events").await?;
            // First without the conflict check (a third cheaper, docs/benchmarks.md); when a
            // row is there already (a retried batch) the whole statement fails and stores
            // nothing, and the batch goes again with `ON CONFLICT DO NOTHING`.
            let stmt = c
                .prepare_cached(sql::INSERT_BATCH_NEW)
                .await
                .map_err(self.err("storing events"))?;
            match c.execute(&stmt, &params).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
                Err(e) => return Err(self.err("storing events")(e)),
            }
            let stmt = c
                .prepare_cached(sql::INSERT_BATCH)
                .await
                .map_err(self.err("storing events"))?;
            c.execute(&stmt, &params)
                .await
                .map_err(self.err("storing events"))?;
            Ok(())
        })
        .await
    }

    /// Whether the database answers (`SELECT 1` within two seconds).
    pub async fn check(&self) -> Result<(), AuditError> {
        let shown = &self.inner.url.shown;
        let ping = async {
            let c = self.client("health check").await?;
            c.simple_query("SELECT 1")
                .await
                .map_err(self.err("health check"))?;
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(2), ping)
            .await
            .map_err(|_| AuditError::Unavailable(format!("{shown}: no answer within 2 s")))?
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`: true when `holder` holds it
    /// now (it was free, expired, or already its own). Leases live in `tapelog_leases`, a
    /// table of tapelog's beside Teleport's (created on first use; Teleport never reads it).
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, AuditError> {
        const TABLE: &str = "CREATE TABLE IF NOT EXISTS tapelog_leases (\
            name text PRIMARY KEY, holder text NOT NULL, expires timestamptz NOT NULL)";
        const TAKE: &str = "INSERT INTO tapelog_leases (name, holder, expires) \
            VALUES ($1, $2, now() + ($3::bigint * interval '1 microsecond')) \
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires \
            WHERE tapelog_leases.holder = excluded.holder OR tapelog_leases.expires < now() \
            RETURNING holder";
        let micros = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let c = self.client("taking a lease").await?;
        if let Err(e) = c.query(TAKE, &[&name, &holder, &micros]).await {
            if e.code() != Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
                return Err(self.err("taking a lease")(e));
            }
            // Several replicas may create it at once: a lost race is fine.
            let _ = c.batch_execute(TABLE).await;
        }
        let rows = c
            .query(TAKE, &[&name, &holder, &micros])
            .await
            .map_err(self.err("taking a lease"))?;
        Ok(!rows.is_empty())
    }

    /// Gives the lease `name` up if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), AuditError> {
        let c = self.client("releasing a lease").await?;
        c.execute(
            "DELETE FROM tapelog_leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )
        .await
        .map_err(self.err("releasing a lease"))?;
        Ok(())
    }

    /// Stops the cleanup task and closes the pool's connections.
    pub fn shut(&self) {
        if let Ok(mut slot) = self.inner.cleanup.lock()
            && let Some(t) = slot.take()
        {
            t.abort();
        }
        self.inner.pool.close();
    }

    /// The arrival-order feed (what `GET /v1/events/feed` and `tapelog forward` read): rows
    /// in the order they were inserted (`creation_time`, then `event_time`, `event_id`),
    /// after the position `key` ("" for the beginning, else a `p1:` key of an earlier page),
    /// at most `limit` (0 → 500); rows inserted less than [`PgLogConfig::feed_lag`] ago wait
    /// for a later read. So an event with an old time that arrives late is read after the
    /// ones before it, as the file log's feed does. The next key is the last row's, or `key`
    /// when nothing was new.
    pub async fn feed(&self, key: &str, limit: usize) -> Result<FeedPage, AuditError> {
        let limit = i64::try_from(effective_limit(limit)?).unwrap_or(i64::MAX);
        let start = FeedPosition::decode(key)?;
        let lag = i64::try_from(self.inner.config.feed_lag.as_micros()).unwrap_or(i64::MAX);
        let c = retry(|| self.client("reading the feed")).await?;
        let rows = match start {
            None => c.query(sql::FEED_FIRST, &[&lag, &limit]).await,
            Some(p) => {
                let created = micros_to_datetime(p.created_micros)?;
                let time = micros_to_datetime(p.time_micros)?;
                let id = uuid::Uuid::from_bytes(p.event_id);
                c.query(sql::FEED_AFTER, &[&lag, &created, &time, &id, &limit])
                    .await
            }
        }
        .map_err(self.err("reading the feed"))?;
        let mut events = Vec::with_capacity(rows.len());
        let mut last = start;
        for row in rows {
            let created: OffsetDateTime = row.try_get(0).map_err(self.err("reading a row"))?;
            let t: OffsetDateTime = row.try_get(1).map_err(self.err("reading a row"))?;
            let id: uuid::Uuid = row.try_get(2).map_err(self.err("reading a row"))?;
            let json: String = row.try_get(3).map_err(self.err("reading a row"))?;
            events.push(self.stored(t, id, json)?);
            last = Some(FeedPosition {
                created_micros: unix_micros(created.unix_timestamp_nanos()),
                time_micros: unix_micros(t.unix_timestamp_nanos()),
                event_id: *id.as_bytes(),
            });
        }
        let next_key = match last {
            Some(p) => p.encode(),
            None => String::new(),
        };
        Ok(FeedPage { events, next_key })
    }

    /// A row as a found event.
    fn stored(
        &self,
        t: OffsetDateTime,
        id: uuid::Uuid,
        json: String,
    ) -> Result<StoredEvent, AuditError> {
        let fields = EventFields::parse(&json).map_err(|e| {
            AuditError::Database(format!(
                "{}: row ({t}, {id}): event_data is not an event: {e}",
                self.inner.url.shown
            ))
        })?;
        Ok(StoredEvent {
            fields,
            json,
            file: format!("events row {}", format_uuid(id.as_bytes())),
            offset: 0,
        })
    }

    /// One page: rows of `[from, to]` in order, in steps of [`FETCH`] rows, filtered by
    /// `condition`, cut at `limit` and 1 MiB; the next key names the last returned row when
    /// the page ended full (upstream's rule: a page full at the very end still gets one).
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        from: Timestamp,
        to: Timestamp,
        types: &[String],
        session: Option<uuid::Uuid>,
        condition: Option<&Condition>,
        limit: usize,
        order: Order,
        start_key: &str,
    ) -> Result<SearchPage, AuditError> {
        let limit = effective_limit(limit)?;
        debug_assert!(limit <= EVENTS_MAX_ITERATION_LIMIT);
        let mut after = if start_key.is_empty() {
            None
        } else {
            let k = PageKey::decode(start_key)?;
            let t = micros_to_datetime(k.micros)?;
            Some((t, uuid::Uuid::from_bytes(k.event_id)))
        };
        let descending = order == Order::Descending;
        let shape = sql::SearchShape {
            types: !types.is_empty(),
            session: session.is_some(),
            after: false,
            descending,
        };
        let (from, to) = (to_datetime(from)?, to_datetime(to)?);
        let mut page = PageBuilder::new(limit);
        let mut events = Vec::new();
        let mut last_returned = None;
        let mut size_limited = false;
        let c = retry(|| self.client("searching events")).await?;
        'steps: loop {
            let q = sql::search(sql::SearchShape {
                after: after.is_some(),
                ..shape
            });
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&from, &to];
            if shape.types {
                params.push(&types);
            }
            if let Some(s) = &session {
                params.push(s);
            }
            if let Some((t, id)) = &after {
                params.push(t);
                params.push(id);
            }
            params.push(&FETCH);
            let stmt = c
                .prepare_cached(&q)
                .await
                .map_err(self.err("searching events"))?;
            let rows = c
                .query(&stmt, &params)
                .await
                .map_err(self.err("searching events"))?;
            let n = rows.len();
            for row in rows {
                let t: OffsetDateTime = row.try_get(0).map_err(self.err("reading a row"))?;
                let id: uuid::Uuid = row.try_get(1).map_err(self.err("reading a row"))?;
                let json: String = row.try_get(2).map_err(self.err("reading a row"))?;
                after = Some((t, id));
                let event = self.stored(t, id, json)?;
                if condition.is_some_and(|c| !c.matches(&event.fields)) {
                    continue;
                }
                match page.offer(event.json.len()) {
                    Admit::Full => {
                        size_limited = true;
                        break 'steps;
                    }
                    admit => {
                        let micros = unix_micros(t.unix_timestamp_nanos());
                        last_returned = Some(PageKey {
                            micros,
                            event_id: *id.as_bytes(),
                        });
                        events.push(event);
                        if admit == Admit::TakeAlone {
                            size_limited = true;
                            break 'steps;
                        }
                        if page.is_full() {
                            break 'steps;
                        }
                    }
                }
            }
            if (n as i64) < FETCH {
                break;
            }
        }
        let next_key = match last_returned {
            Some(k) if events.len() >= limit || size_limited => k.encode(),
            _ => String::new(),
        };
        Ok(SearchPage { events, next_key })
    }
}

/// Creates the database (upstream's `TryEnsureDatabase`) when connecting says it does not
/// exist; any failure to create it is left to the connection that follows to report.
async fn ensure_database(
    url: &PgUrl,
    pg: &tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> Result<(), AuditError> {
    let Err(e) = pg.connect(tls.clone()).await.map(|(client, conn)| {
        drop(client);
        drop(conn);
    }) else {
        return Ok(());
    };
    if e.code() != Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
        || url.database.is_empty()
    {
        return Ok(());
    }
    let mut admin = tokio_postgres::Config::from_str(&url.maintenance_connect())
        .map_err(|e| AuditError::Config(format!("{}: {e}", url.shown)))?;
    admin.connect_timeout(
        pg.get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(5)),
    );
    if let Ok((client, conn)) = admin.connect(tls).await {
        let task = tokio::spawn(conn);
        let name = url.database.replace('"', "\"\"");
        let _ = client
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING UTF8 LC_COLLATE 'C' LC_CTYPE 'C'"
            ))
            .await;
        drop(client);
        let _ = task.await;
    }
    Ok(())
}

impl Emitter for PgLog {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        self.insert(std::slice::from_ref(&event))
            .await
            .map_err(|e| emit_error(&event, e))
    }

    /// One statement for the whole batch ([`PgLog::insert`]).
    async fn emit_batch(&self, events: Vec<AuditEvent>) -> Result<(), EmitError> {
        match self.insert(&events).await {
            Ok(()) => Ok(()),
            Err(e) => Err(match events.first() {
                Some(first) => emit_error(first, e),
                None => EmitError::Closed(e.to_string()),
            }),
        }
    }
}

/// An [`AuditError`] of an insert as an [`EmitError`].
fn emit_error(event: &AuditEvent, e: AuditError) -> EmitError {
    match e {
        AuditError::Event(_) => EmitError::invalid(event, e.to_string()),
        AuditError::Unavailable(m) => EmitError::Unavailable(m),
        other => EmitError::Closed(other.to_string()),
    }
}

impl AuditLog for PgLog {
    async fn search_events(&self, q: SearchQuery) -> Result<SearchPage, AuditError> {
        self.search(
            q.from,
            q.to,
            &q.event_types,
            None,
            None,
            q.limit,
            q.order,
            &q.start_key,
        )
        .await
    }

    async fn search_session_events(&self, q: SessionQuery) -> Result<SearchPage, AuditError> {
        let types: Vec<String> = SESSION_RECORDING_EVENTS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let session =
            (!q.session_id.is_empty()).then(|| uuid::Uuid::from_bytes(session_uuid(&q.session_id)));
        self.search(
            q.from,
            q.to,
            &types,
            session,
            q.condition.as_ref(),
            q.limit,
            q.order,
            &q.start_key,
        )
        .await
    }
}
