//! PostgreSQL audit log benchmarks (issue 17): `cargo bench -p tapelog-audit --bench pg`.
//!
//! Prints, no timed asserts (docs/benchmarks.md, "PostgreSQL audit log"):
//!
//! 1. **Batched ingest**: `TAPELOG_BENCH_EVENTS` events (default 200,000; a user.login /
//!    session.start mix, ~400 bytes of JSON each) stored through [`PgLog::insert`] in batches
//!    of 1000 (what one `POST /v1/events` makes), against a bare binary `COPY events … FROM
//!    STDIN` of the same rows into the same (truncated) table, in the same run, interleaved,
//!    medians of `TAPELOG_BENCH_RUNS` (default 5). Ratio insert ÷ COPY; goal ≥ 0.5. Then
//!    batches of one (`TAPELOG_BENCH_SINGLE` events, default 2000) as context, and what
//!    preparing the rows (the events' JSON, ids) costs on its own, and the insert statement
//!    alone (from arrays built beforehand) with and without its `ON CONFLICT DO NOTHING`.
//! 2. **Search pages at 1,000,000 rows** (`TAPELOG_BENCH_ROWS`): rows loaded by COPY, then
//!    p50/p99 of page 1 (limit 500) and of page 1,000 (its key found by following the keys)
//!    through [`AuditLog::search_events`], ascending and descending, ~200 samples each.
//!    Ratio page 1,000 ÷ page 1; goal ≤ 2.
//!
//! The bench starts its own PostgreSQL (`initdb` and `postgres` from
//! `TAPELOG_BENCH_PG_BIN`, default `/usr/lib/postgresql/15/bin`, run as the `postgres` user
//! when the bench runs as root; a temporary directory, a free loopback port; stopped at the
//! end) unless `TAPELOG_BENCH_PG=postgres://…` names a server (reached without TLS; its
//! `tapelog_bench` database is used, and its `events` table TRUNCATED).
//!
//! Run as a test (`cargo test -p tapelog-audit --bench pg`, no `--bench` argument) it does a
//! small smoke run, and skips when there is no PostgreSQL to start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::SinkExt;
use tapelog_audit::{AuditLog, Order, PgLog, PgLogConfig, SearchQuery};
use tapelog_core::audit::lines::prepare_line_with_max;
use tapelog_core::audit::pg::{event_uuid, session_uuid, unix_micros};
use tapelog_core::{AuditEvent, Timestamp};
use tokio::time::Instant;

/// 2024-01-15T00:00:00Z.
const T0_MS: i64 = 1_705_276_800_000;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const COPY_SQL: &str = "COPY events (event_time, event_id, event_type, session_id, event_data) \
    FROM STDIN (FORMAT binary)";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// A reproducible 64-bit mix (splitmix64), for uids that look random.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn uuid_text(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// Event `i` of the mix: even ones `user.login` (SSO, with a browser's user agent), odd ones
/// `session.start` (ten events per session id); one every `step_ms` from 2024-01-15.
fn sample_event(i: u64, step_ms: i64) -> AuditEvent {
    let uid = uuid_text(mix(i), mix(i ^ 0x5555));
    let time = Timestamp::from_unix_millis(T0_MS + i as i64 * step_ms).to_rfc3339();
    let user = format!("user{:03}@example.com", i % 197);
    let json = if i.is_multiple_of(2) {
        format!(
            concat!(
                r#"{{"ei":0,"event":"user.login","uid":"{uid}","code":"T1001I","time":"{time}","#,
                r#""cluster_name":"teleport.example.com","user":"{user}","method":"oidc","#,
                r#""success":true,"addr.remote":"203.0.113.{ip}:{port}","#,
                r#""user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36","#,
                r#""required_private_key_policy":"none"}}"#
            ),
            uid = uid,
            time = time,
            user = user,
            ip = i % 250,
            port = 30000 + i % 30000,
        )
    } else {
        let sid = uuid_text(mix(i / 20), mix(i / 20 + 7));
        format!(
            concat!(
                r#"{{"ei":0,"event":"session.start","uid":"{uid}","code":"T2000I","time":"{time}","#,
                r#""cluster_name":"teleport.example.com","user":"{user}","login":"root","#,
                r#""sid":"{sid}","namespace":"default","#,
                r#""server_id":"ade010d6-4e75-4ed8-9f92-886a4f49eb26","server_hostname":"node-{node}","#,
                r#""server_addr":"10.0.{node}.7:3022","addr.remote":"203.0.113.{ip}:{port}","#,
                r#""size":"80:25","session_recording":"node","private_key_policy":"none"}}"#
            ),
            uid = uid,
            time = time,
            user = user,
            sid = sid,
            node = i % 40,
            ip = i % 250,
            port = 30000 + i % 30000,
        )
    };
    AuditEvent::from_json(&json).unwrap()
}

const INSERT_PLAIN: &str = tapelog_core::audit::pg::sql::INSERT_BATCH_NEW;
const INSERT_CHECKED: &str = tapelog_core::audit::pg::sql::INSERT_BATCH;

/// One batch as the insert's five arrays.
struct Arrays {
    times: Vec<time::OffsetDateTime>,
    ids: Vec<uuid::Uuid>,
    kinds: Vec<String>,
    sessions: Vec<uuid::Uuid>,
    data: Vec<String>,
}

impl Arrays {
    fn of(rows: &[Row]) -> Arrays {
        Arrays {
            times: rows
                .iter()
                .map(|r| {
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.micros) * 1000)
                        .unwrap()
                })
                .collect(),
            ids: rows.iter().map(|r| uuid::Uuid::from_bytes(r.id)).collect(),
            kinds: rows.iter().map(|r| r.kind.clone()).collect(),
            sessions: rows
                .iter()
                .map(|r| uuid::Uuid::from_bytes(r.session))
                .collect(),
            data: rows.iter().map(|r| r.json.clone()).collect(),
        }
    }
}

/// A row as COPY and the insert store it.
struct Row {
    micros: i64,
    id: [u8; 16],
    kind: String,
    session: [u8; 16],
    json: String,
}

fn row_of(e: &AuditEvent) -> Row {
    let line = prepare_line_with_max(e, tapelog_core::audit::MAX_SCAN_TOKEN_SIZE).unwrap();
    Row {
        micros: unix_micros(e.time().unix_nanos()),
        id: event_uuid(e.id()),
        kind: e.event_type().to_string(),
        session: session_uuid(e.session_id()),
        json: line.json,
    }
}

/// Appends `row` to a binary COPY stream.
fn encode_row(buf: &mut Vec<u8>, row: &Row) {
    buf.extend_from_slice(&5i16.to_be_bytes());
    buf.extend_from_slice(&8i32.to_be_bytes());
    buf.extend_from_slice(&(row.micros - PG_EPOCH_MICROS).to_be_bytes());
    buf.extend_from_slice(&16i32.to_be_bytes());
    buf.extend_from_slice(&row.id);
    buf.extend_from_slice(&(row.kind.len() as i32).to_be_bytes());
    buf.extend_from_slice(row.kind.as_bytes());
    buf.extend_from_slice(&16i32.to_be_bytes());
    buf.extend_from_slice(&row.session);
    // `json`'s binary form is its text.
    buf.extend_from_slice(&(row.json.len() as i32).to_be_bytes());
    buf.extend_from_slice(row.json.as_bytes());
}

/// COPYs `rows` (encoded while sending, 1 MiB messages); returns the rows copied.
async fn copy_rows(c: &tokio_postgres::Client, rows: impl Iterator<Item = Row>) -> u64 {
    let sink = c.copy_in::<_, Cursor<Vec<u8>>>(COPY_SQL).await.unwrap();
    futures::pin_mut!(sink);
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    for row in rows {
        encode_row(&mut buf, &row);
        if buf.len() >= 1 << 20 {
            let full = std::mem::replace(&mut buf, Vec::with_capacity(1 << 20));
            sink.send(Cursor::new(full)).await.unwrap();
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    sink.send(Cursor::new(buf)).await.unwrap();
    sink.finish().await.unwrap()
}

/// Same, from rows prepared earlier.
async fn copy_prepared(c: &tokio_postgres::Client, rows: &[Row]) -> u64 {
    let rows = rows.iter().map(|r| Row {
        micros: r.micros,
        id: r.id,
        kind: r.kind.clone(),
        session: r.session,
        json: r.json.clone(),
    });
    copy_rows(c, rows).await
}

/// A PostgreSQL started for the bench, stopped (SIGINT: fast shutdown) when dropped.
struct Cluster {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The uid and gid of `name` from /etc/passwd.
fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn as_postgres(cmd: &mut Command, ids: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Starts a cluster: initdb into a temporary directory, `postgres` on a free loopback port,
/// waits until it answers. None when the binaries are missing.
async fn start_cluster() -> Option<(Cluster, String)> {
    let bin = PathBuf::from(
        std::env::var("TAPELOG_BENCH_PG_BIN")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    );
    if !bin.join("initdb").exists() {
        return None;
    }
    // Root when /proc/self (owned by the process's user) is root's.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let ids = if root {
        Some(passwd_ids("postgres").expect("no postgres user to run initdb as"))
    } else {
        None
    };
    let dir = tempfile::Builder::new()
        .prefix("tapelog-pgbench")
        .tempdir()
        .unwrap();
    let path = dir.path().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    let data = path.join("data");
    let status = as_postgres(&mut Command::new(bin.join("initdb")), ids)
        .current_dir(&path)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ])
        .arg("--no-sync")
        .arg("-D")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(status.success(), "initdb failed: {status}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(path.join("postgres.log")).unwrap();
    let child = as_postgres(&mut Command::new(bin.join("postgres")), ids)
        .current_dir(&path)
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-k",
        ])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let cluster = Cluster { child, _dir: dir };
    let uri = format!("postgres://postgres@127.0.0.1:{port}/tapelog_bench?sslmode=disable");
    let admin = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let start = Instant::now();
    loop {
        if let Ok((c, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
            let task = tokio::spawn(conn);
            let ok = c.simple_query("SELECT 1").await.is_ok();
            drop(c);
            let _ = task.await;
            if ok {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "postgres did not start: {}",
            std::fs::read_to_string(log_path(cluster._dir.path())).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some((cluster, uri))
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("postgres.log")
}

async fn raw_client(uri: &str) -> tokio_postgres::Client {
    let uri = uri.split('#').next().unwrap_or(uri);
    let (c, conn) = tokio_postgres::connect(uri, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn ingest(log: &PgLog, raw: &tokio_postgres::Client, bench: bool) {
    let n = env_usize("TAPELOG_BENCH_EVENTS", if bench { 200_000 } else { 3_000 });
    let single = env_usize("TAPELOG_BENCH_SINGLE", if bench { 2_000 } else { 100 });
    let runs = env_usize("TAPELOG_BENCH_RUNS", 5).max(1);
    println!("== ingest: {n} events, batches of 1000, {runs} runs interleaved, medians");
    let events: Vec<AuditEvent> = (0..n as u64).map(|i| sample_event(i, 3)).collect();
    let t = Instant::now();
    let rows: Vec<Row> = events.iter().map(row_of).collect();
    let prep = t.elapsed();
    let bytes: usize = rows.iter().map(|r| r.json.len()).sum();
    println!(
        "event JSON: {:.0} bytes on average; preparing the rows (JSON, ids) alone: {:.0} events/s",
        bytes as f64 / n as f64,
        n as f64 / prep.as_secs_f64()
    );
    // The statement alone, from arrays built before the clock starts: with and without the
    // conflict check (PgLog::insert's two statements).
    let arrays: Vec<Arrays> = rows.chunks(1000).map(Arrays::of).collect();
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut ratios = Vec::new();
    for run in 0..runs {
        let mut secs = [0f64; 4];
        for (k, s) in secs.iter_mut().enumerate() {
            raw.batch_execute("TRUNCATE events").await.unwrap();
            let t = Instant::now();
            match k {
                0 => assert_eq!(copy_prepared(raw, &rows).await, n as u64),
                1 => {
                    for batch in events.chunks(1000) {
                        log.insert(batch).await.unwrap();
                    }
                }
                _ => {
                    let sql = if k == 2 { INSERT_CHECKED } else { INSERT_PLAIN };
                    let stmt = raw.prepare(sql).await.unwrap();
                    for a in &arrays {
                        raw.execute(&stmt, &[&a.times, &a.ids, &a.kinds, &a.sessions, &a.data])
                            .await
                            .unwrap();
                    }
                }
            }
            *s = t.elapsed().as_secs_f64();
            let count: i64 = raw
                .query_one("SELECT count(*) FROM events", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(count, n as i64);
            rates[k].push(n as f64 / *s);
        }
        ratios.push(secs[0] / secs[1]);
        println!(
            "run {}: COPY {:.2} s, PgLog::insert {:.2} s (ratio {:.2}); the statement alone: with ON CONFLICT {:.2} s, without {:.2} s",
            run + 1,
            secs[0],
            secs[1],
            secs[0] / secs[1],
            secs[2],
            secs[3]
        );
    }
    let [copy, insert, checked, plain] = rates.map(median);
    println!("baseline: binary COPY            {copy:>9.0} events/s");
    println!("PgLog::insert, batches of 1000   {insert:>9.0} events/s");
    println!("  statement alone, ON CONFLICT   {checked:>9.0} events/s");
    println!("  statement alone, no ON CONFLICT{plain:>9.0} events/s");
    println!(
        "ratio insert / COPY: {:.2} (median of the runs' ratios; of the medians {:.2}; goal >= 0.5)",
        median(ratios),
        insert / copy
    );

    // Batches that are there already: the retry path (its second statement; nothing
    // stored twice).
    let t = Instant::now();
    for batch in events.chunks(1000).take(20) {
        log.insert(batch).await.unwrap();
    }
    let again = events.len().min(20_000);
    let count: i64 = raw
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, n as i64, "a batch sent again stored rows twice");
    println!(
        "same batches again (all skipped): {:.0} events/s",
        again as f64 / t.elapsed().as_secs_f64()
    );

    let mut single_rates = Vec::new();
    let mut lat = Vec::new();
    for _ in 0..runs {
        raw.batch_execute("TRUNCATE events").await.unwrap();
        let t = Instant::now();
        for e in &events[..single.min(n)] {
            let s = Instant::now();
            log.insert(std::slice::from_ref(e)).await.unwrap();
            lat.push(s.elapsed());
        }
        single_rates.push(single.min(n) as f64 / t.elapsed().as_secs_f64());
    }
    lat.sort();
    println!(
        "PgLog::insert, batches of 1 ({} events): {:.0} events/s; per call p50 {:.3} ms, p99 {:.3} ms",
        single.min(n),
        median(single_rates),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
}

/// `samples` timings of the page `key` names; returns p50, p99.
async fn time_page(log: &PgLog, q: &SearchQuery, samples: usize) -> (Duration, Duration) {
    let mut v = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let p = log.search_events(q.clone()).await.unwrap();
        v.push(t.elapsed());
        assert_eq!(p.events.len(), q.limit);
    }
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

async fn search(log: &PgLog, raw: &tokio_postgres::Client, bench: bool) {
    let total = env_usize("TAPELOG_BENCH_ROWS", if bench { 1_000_000 } else { 20_000 });
    let samples = env_usize("TAPELOG_BENCH_SAMPLES", if bench { 200 } else { 10 });
    let far = if bench { 1000 } else { 20 }.min(total / 500);
    // Ten days of events.
    let step_ms = (864_000_000 / total.max(1) as i64).max(1);
    println!("== search: {total} rows over 10 days, limit 500, {samples} samples a page");
    raw.batch_execute("TRUNCATE events").await.unwrap();
    let t = Instant::now();
    let copied = copy_rows(
        raw,
        (0..total as u64).map(|i| row_of(&sample_event(i, step_ms))),
    )
    .await;
    assert_eq!(copied, total as u64);
    let load = t.elapsed();
    let t = Instant::now();
    raw.batch_execute("VACUUM ANALYZE events").await.unwrap();
    println!(
        "load (events built, JSON, COPY): {:.1} s; VACUUM ANALYZE: {:.1} s",
        load.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let size: String = raw
        .query_one(
            "SELECT pg_size_pretty(pg_total_relation_size('events'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!("table with indexes: {size}");
    for order in [Order::Ascending, Order::Descending] {
        let mut q = SearchQuery::new(
            Timestamp::from_unix_millis(T0_MS - 1000),
            Timestamp::from_unix_millis(T0_MS + 11 * 86_400_000),
        );
        q.limit = 500;
        q.order = order;
        let first = time_page(log, &q, samples).await;
        let t = Instant::now();
        for _ in 1..far {
            let p = log.search_events(q.clone()).await.unwrap();
            assert!(!p.next_key.is_empty());
            q.start_key = p.next_key;
        }
        let walk = t.elapsed();
        let last = time_page(log, &q, samples).await;
        let name = if order == Order::Ascending {
            "ascending"
        } else {
            "descending"
        };
        println!(
            "{name:>10}: page 1 p50 {:>7.2} ms p99 {:>7.2} ms | page {far} p50 {:>7.2} ms p99 {:>7.2} ms | ratio p50 {:.2}, p99 {:.2} (goal <= 2) | walk to page {far}: {:.1} s",
            ms(first.0),
            ms(first.1),
            ms(last.0),
            ms(last.1),
            last.0.as_secs_f64() / first.0.as_secs_f64(),
            last.1.as_secs_f64() / first.1.as_secs_f64(),
            walk.as_secs_f64()
        );
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (cluster, uri) = match std::env::var("TAPELOG_BENCH_PG") {
            Ok(uri) => (None, uri),
            Err(_) => match start_cluster().await {
                Some((c, uri)) => (Some(c), uri),
                None => {
                    println!("no PostgreSQL binaries (TAPELOG_BENCH_PG_BIN): skipped");
                    return;
                }
            },
        };
        let log = PgLog::open(&uri, PgLogConfig::default()).await.unwrap();
        let raw = raw_client(&uri).await;
        let version: String = raw.query_one("SELECT version()", &[]).await.unwrap().get(0);
        println!("server: {version}");
        if std::env::var("TAPELOG_BENCH_ONLY").as_deref() != Ok("search") {
            ingest(&log, &raw, bench).await;
        }
        if std::env::var("TAPELOG_BENCH_ONLY").as_deref() != Ok("ingest") {
            search(&log, &raw, bench).await;
        }
        log.shut();
        drop(raw);
        drop(cluster);
    });
}
