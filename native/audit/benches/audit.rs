//! File audit log benchmarks: `cargo bench -p tapelog --bench audit`.
//!
//! Prints, no timed asserts:
//!
//! 1. **Append throughput** (events/s) of `FileLog::append` for each durability setting
//!    (`Write`: one `write(2)` per event under `flock`; `Fsync`: plus `fdatasync`), on a
//!    temporary directory, with ~400-byte session events.
//! 2. **Search over a 1,000,000-event range**: the JSON lines are written straight into day
//!    files (2 servers × 10 days × 50,000 events; the shortcut skips the per-event append
//!    path, measured in part 1, and leaves the index to the first search), then: the first
//!    search (which builds every index), page 1, page 50 (starts at event 24,500) and page
//!    1,000 (event 499,500) with the default limit of 500, following the keys; each page
//!    timed as the median of repeated calls with the same key. Target: page 50 / page 1 ≤ 2.
//! 3. **The arrival-order feed over the same range**, in reads of 1,000 events as
//!    `tapelog forward` makes them: `FileLog::read_feed_events` (the exporter's fast read)
//!    and `FileLog::read_feed` (each line's map), each as a ratio to a baseline of the same
//!    run: the same files read whole and each line checked as JSON by `serde_json`
//!    (`IgnoredAny`), the least a reader that takes only valid events must do. Medians of
//!    interleaved runs; the feed's reader CPU is what `tapelog forward` takes from a
//!    receiver on the same cores (docs/benchmarks.md, "forward").
//!
//! `TAPELOG_BENCH_EVENTS` sets the size of the range (default 1,000,000);
//! `TAPELOG_BENCH_ONLY=feed` writes the range and runs part 3 alone (for a profiler). Run as a test
//! (`cargo test -p tapelog --bench audit`, no `--bench` argument) it does a small smoke run.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use tapelog_audit::{Durability, FileLog, FileLogConfig, SearchQuery};
use tapelog_core::audit::files::log_file_name;
use tapelog_core::{AuditEvent, Timestamp};

/// 2024-01-15T00:00:00Z.
const DAY0_MS: i64 = 1_705_276_800_000;
const DAY_MS: i64 = 86_400_000;

fn sample_line(ms: i64, server: usize, i: usize) -> String {
    format!(
        concat!(
            r#"{{"ei":{i},"event":"session.start","uid":"{server:02}-{i:010}-4858-b3a3-5e9467a77616","code":"T2000I","#,
            r#""time":"{time}","cluster_name":"bench.example.com","user":"joe","login":"root","#,
            r#""sid":"9b6ec731-80f7-4751-9154-{sid:012}","namespace":"default","#,
            r#""server_id":"ade010d6-4e75-4ed8-9f92-886a4f49eb26","server_hostname":"node-{server}","#,
            r#""addr.remote":"173.160.69.53:56544","size":"80:25","session_recording":"node"}}"#
        ),
        i = i,
        server = server,
        time = Timestamp::from_unix_millis(ms).to_rfc3339(),
        sid = i / 10,
    )
}

fn append_throughput(dir: &Path, durability: Durability, budget: Duration, max: usize) -> f64 {
    let mut cfg = FileLogConfig::new(dir, "bench");
    cfg.durability = durability;
    let log = FileLog::open(cfg).unwrap();
    let template = AuditEvent::from_json(&sample_line(DAY0_MS, 0, 0)).unwrap();
    let start = Instant::now();
    let mut n = 0usize;
    while n < max && (!n.is_multiple_of(64) || start.elapsed() < budget) {
        let mut e = template.clone();
        e.set_index(n as i64);
        e.set_time(Timestamp::from_unix_millis(DAY0_MS + n as i64));
        log.append(&e).unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let total: usize = std::env::var("TAPELOG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 1_000_000 } else { 20_000 });
    let dir = tempfile::tempdir().unwrap();

    let only_feed = std::env::var("TAPELOG_BENCH_ONLY").is_ok_and(|v| v == "feed");
    let budget = if bench {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(200)
    };
    if !only_feed {
        println!("== append throughput (FileLog::append, ~400-byte events)");
        for (name, d) in [("write", Durability::Write), ("fsync", Durability::Fsync)] {
            let sub = dir.path().join(name);
            let rate = append_throughput(&sub, d, budget, 1_000_000);
            println!("{name:>6}: {rate:>10.0} events/s");
        }
    }

    let servers = 2usize;
    let days = 10usize;
    let per_file = total / (servers * days);
    let total = per_file * servers * days;
    println!("== search over {total} events ({servers} servers x {days} days x {per_file} events)");
    let data = dir.path().join("search");
    let t0 = Instant::now();
    for s in 0..servers {
        let sdir = data.join("log").join(format!("auth-{s}"));
        std::fs::create_dir_all(&sdir).unwrap();
        for d in 0..days {
            let path = sdir.join(log_file_name(19_737 + d as i64));
            let mut f =
                std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
            let step = (DAY_MS as usize / per_file).max(1) as i64;
            for i in 0..per_file {
                let ms = DAY0_MS + d as i64 * DAY_MS + i as i64 * step;
                writeln!(f, "{}", sample_line(ms, s, d * per_file + i)).unwrap();
            }
            f.flush().unwrap();
        }
    }
    println!("write lines: {:.2} s", t0.elapsed().as_secs_f64());

    let log = FileLog::open(FileLogConfig::new(&data, "auth-0")).unwrap();
    if only_feed {
        feed_reads(&log, &data, total, if bench { 5 } else { 1 });
        return;
    }
    let q = SearchQuery::new(
        Timestamp::from_unix_millis(0),
        Timestamp::from_unix_millis(DAY0_MS + 30 * DAY_MS),
    );
    let t0 = Instant::now();
    let first = log.search_events_blocking(&q).unwrap();
    let build = t0.elapsed();
    assert_eq!(first.events.len(), 500);
    println!(
        "first search (builds {} indexes): {:.3} s",
        log.stats().index_builds,
        build.as_secs_f64()
    );

    let reps = if bench { 21 } else { 3 };
    let last_page = if bench { 1000 } else { 20 }.min(total / 500);
    let mut key = String::new();
    let mut times = Vec::new();
    let mut seen = 0usize;
    for page in 1..=last_page {
        let mut q = q.clone();
        q.start_key = key.clone();
        let timed = [1, 50, last_page].contains(&page);
        let runs = if timed { reps } else { 1 };
        let mut samples = Vec::with_capacity(runs);
        let mut result = None;
        for _ in 0..runs {
            let t = Instant::now();
            let p = log.search_events_blocking(&q).unwrap();
            samples.push(t.elapsed());
            result = Some(p);
        }
        let p = result.unwrap();
        if timed {
            let first_ei = p.events[0].fields.get_index();
            times.push((page, first_ei, median(samples)));
        }
        seen += p.events.len();
        key = p.next_key;
        if key.is_empty() {
            break;
        }
    }
    assert_eq!(seen, last_page * 500);
    for (page, ei, t) in &times {
        println!(
            "page {page:>5} (first event #{:>7}, ei {ei}): {:>8.3} ms",
            (page - 1) * 500,
            t.as_secs_f64() * 1e3
        );
    }
    let p1 = times[0].2.as_secs_f64();
    for (page, _, t) in &times[1..] {
        println!("ratio page {page} / page 1: {:.2}", t.as_secs_f64() / p1);
    }
    assert_eq!(log.stats().index_builds, (servers * days) as u64);

    feed_reads(&log, &data, total, if bench { 5 } else { 1 });
}

/// Part 3: the whole log through the feed, in reads of 1,000, against a syntax check of
/// every line of the same files.
fn feed_reads(log: &FileLog, data: &Path, total: usize, runs: usize) {
    println!("== the feed over {total} events, reads of 1000 ({runs} interleaved runs, medians)");
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for server in std::fs::read_dir(data.join("log")).unwrap() {
        let server = server.unwrap().path();
        if server.is_dir() {
            for f in std::fs::read_dir(&server).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|x| x == "log") {
                    files.push(f);
                }
            }
        }
    }
    let baseline = || {
        let mut n = 0usize;
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let text = std::str::from_utf8(line).unwrap();
                serde_json::from_str::<IgnoredAny>(text).unwrap();
                n += 1;
            }
        }
        n
    };
    let fast = || {
        whole_feed(|key| {
            let p = log.read_feed_events(key, 1000).unwrap();
            (p.events.len(), p.next_key)
        })
    };
    let full = || {
        whole_feed(|key| {
            let p = log.read_feed(key, 1000).unwrap();
            (p.events.len(), p.next_key)
        })
    };
    let mut rates: [Vec<f64>; 3] = Default::default();
    for _ in 0..runs {
        let ways: [&dyn Fn() -> usize; 3] = [&baseline, &fast, &full];
        for (k, way) in ways.iter().enumerate() {
            let t = Instant::now();
            assert_eq!(way(), total, "every event read");
            rates[k].push(total as f64 / t.elapsed().as_secs_f64());
        }
    }
    let m: Vec<f64> = rates
        .iter_mut()
        .map(|r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        })
        .collect();
    println!(
        "lines read whole, JSON checked (baseline): {:>10.0} events/s",
        m[0]
    );
    println!(
        "read_feed_events (the exporter's read):   {:>10.0} events/s ({:.2} of the baseline, {:.2} us/event)",
        m[1],
        m[1] / m[0],
        1e6 / m[1]
    );
    println!(
        "read_feed (each line's map):              {:>10.0} events/s ({:.2} of the baseline)",
        m[2],
        m[2] / m[0]
    );
}

/// Follows the feed from its beginning with `read` (key → events read, next key) until a
/// read brings nothing new; the events read.
fn whole_feed(read: impl Fn(&str) -> (usize, String)) -> usize {
    let (mut key, mut n) = (String::new(), 0usize);
    loop {
        let (got, next) = read(&key);
        if got == 0 && next == key {
            return n;
        }
        n += got;
        key = next;
    }
}
