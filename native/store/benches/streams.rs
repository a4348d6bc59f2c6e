//! Stream benchmarks: `cargo bench -p tapelog --bench streams`.
//!
//! Prints, no timed asserts:
//!
//! 1. **Idle streams.** RSS per open idle stream, 10,000 streams in one process, each holding a
//!    few events of a real-looking session, measured after they went idle past
//!    `release_after_ms` (so the compressor is released); the RSS per stream while active
//!    (before release) for contrast; the average `memory_bytes()` (compressed bytes not yet
//!    uploaded) from the core machine. Measured twice, each in its own child process so that
//!    one does not leave heap behind for the other: bare core [`Stream`]s (no tokio), and full
//!    [`RecordingStream`] drivers over an in-memory store. A third child holds 1,000 core
//!    streams with a live compressor, to show what the release saves. Target: <= 64 KiB per
//!    idle stream beyond its not-yet-uploaded compressed bytes.
//! 2. **Throughput.** Print events (realistic terminal output) through `RecordingStream` to
//!    local disk (`StoreUploader::local`, 5 MiB parts, level 1, zlib-rs) and completed, against
//!    raw deflate of exactly the same record bytes cut at the same part boundaries, same level
//!    and back end, in the same run (target ratio >= 0.8); also the bare core `Stream` (no
//!    driver, no I/O), the driver over the in-memory store, and the cost of cloning the events
//!    (the driver takes owned events), so that a reader sees where the time goes.
//!
//! `TAPELOG_BENCH_STREAMS` sets the number of idle streams (default 10000), `TAPELOG_BENCH_MB`
//! the megabytes of records for the throughput part (default 100). Run as a test
//! (`cargo test -p tapelog --bench streams`, no `--bench` argument) it does a small smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tapelog_core::AuditEvent;
use tapelog_core::codec::deflate::{Backend, Inflater};
use tapelog_core::codec::writer::raw_deflate_baseline;
use tapelog_core::codec::{PolledRecord, ProtoReader};
use tapelog_core::stream::{Action, Stream, StreamConfig};
use tapelog_core::vectors;
use tapelog_store::stream::{DriverConfig, RecordingStream};
use tapelog_store::{MultipartUploader, StoreUploader};

/// Release time for the idle part (short, so the bench does not wait long).
const RELEASE_MS: u64 = 200;
/// Inactivity flush for the idle part: long, so that no part is uploaded while idle.
const NO_FLUSH_MS: u64 = 3_600_000;

/// Settings of the bench run.
#[derive(Clone, Copy)]
struct Sizes {
    streams: usize,
    busy_streams: usize,
    record_bytes: usize,
    runs: usize,
}

/// xorshift64: a fixed, cheap pseudo-random sequence.
fn next(r: &mut u64) -> u64 {
    *r ^= *r << 13;
    *r ^= *r >> 7;
    *r ^= *r << 17;
    *r
}

/// One line of terminal output: a coloured prompt, an `ls -l` row, a log line or a wrapped
/// run of text.
fn terminal_line(i: usize, r: &mut u64) -> Vec<u8> {
    let x = next(r);
    let line = match x % 4 {
        0 => format!(
            "\x1b[01;32mdev@host-{}\x1b[00m:\x1b[01;34m~/work/{}\x1b[00m$ ",
            x % 89,
            x % 11
        ),
        1 => format!(
            "drwxr-xr-x 2 dev dev {:>8} Dec {:>2} {:02}:{:02} build-{:x}\r\n",
            x % 200_000,
            1 + x % 28,
            x % 24,
            x % 60,
            x >> 44
        ),
        2 => format!(
            "{i} WARN upstream={:012x} route=/v2/orders/{} code={} took={}ms\r\n",
            x >> 16,
            x % 9000,
            [200, 201, 404, 503][(x >> 8) as usize % 4],
            x % 1200
        ),
        _ => format!(
            "{}\r\n",
            "0123456789 the quick brown fox ".repeat(1 + (x % 3) as usize)
        ),
    };
    line.into_bytes()
}

/// A terminal write of one to six lines.
fn terminal_write(i: usize, r: &mut u64) -> Vec<u8> {
    let mut data = Vec::new();
    for _ in 0..(1 + i % 6) {
        data.extend(terminal_line(i, r));
    }
    data
}

/// The start of a session as an idle stream holds it: session start, resize, three prints.
fn idle_session(seed: u64) -> Vec<AuditEvent> {
    let mut v = vectors::sample_session(0);
    v.truncate(2);
    let mut r = 0x9E37_79B9_7F4A_7C15 ^ seed;
    let mut offset = 0;
    for i in 0..3 {
        let data = terminal_write(i + 2, &mut r);
        v.push(vectors::print(
            2 + i as i64,
            i as i64,
            offset,
            120 + 40 * i as i64,
            &data,
        ));
        offset += data.len() as i64;
    }
    v
}

/// A block of print events (as a recorder produces them), re-added with rising indexes.
fn print_block(n: usize) -> Vec<AuditEvent> {
    let mut r = 0x2545_F491_4F6C_DD1Du64;
    let mut offset = 0;
    (0..n)
        .map(|i| {
            let data = terminal_write(i, &mut r);
            let e = vectors::print(i as i64, i as i64, offset, 100 + 3 * i as i64, &data);
            offset += data.len() as i64;
            e
        })
        .collect()
}

fn record_bytes(e: &AuditEvent) -> usize {
    e.oneof_len() + 4
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn idle_config() -> StreamConfig {
    StreamConfig {
        release_after_ms: RELEASE_MS,
        inactivity_flush_ms: NO_FLUSH_MS,
        ..StreamConfig::default()
    }
}

fn per_stream(after: u64, before: u64, n: usize) -> f64 {
    after.saturating_sub(before) as f64 / n as f64
}

/// Child: `n` bare core streams, a few events each, active then released.
fn child_core(n: usize) {
    let session = idle_session(1);
    let before = rss_kib();
    let mut streams: Vec<Stream> = (0..n)
        .map(|_| Stream::new(uuid::Uuid::new_v4().to_string(), idle_config(), 0))
        .collect();
    for s in &mut streams {
        for (k, e) in session.iter().enumerate() {
            s.record(e, 10 * k as u64).unwrap();
        }
        // Only statuses: nothing is due for upload.
        assert!(
            s.take_actions()
                .iter()
                .all(|a| matches!(a, Action::Status(_)))
        );
    }
    let active = rss_kib();
    let mem_active: usize = streams.iter().map(Stream::memory_bytes).sum();
    for s in &mut streams {
        s.tick(10_000);
        assert!(
            s.take_actions().is_empty(),
            "an idle stream uploaded a part"
        );
        assert_eq!(s.next_deadline(), Some(40 + NO_FLUSH_MS), "not released");
    }
    let idle = rss_kib();
    let mem_idle: usize = streams.iter().map(Stream::memory_bytes).sum();
    let avg_idle = mem_idle as f64 / n as f64 / 1024.0;
    let rss_idle = per_stream(idle, before, n);
    println!(
        "bare core Stream x{n}: active (few events, records not yet compressed) {:.1} KiB RSS/stream, memory_bytes {:.1} KiB | idle (compressor released) {:.1} KiB RSS/stream, memory_bytes (compressed, not uploaded) {:.2} KiB | beyond memory_bytes {:.1} KiB (target <= 64) | RSS {:.1} -> {:.1} -> {:.1} MiB",
        per_stream(active, before, n),
        mem_active as f64 / n as f64 / 1024.0,
        rss_idle,
        avg_idle,
        rss_idle - avg_idle,
        before as f64 / 1024.0,
        active as f64 / 1024.0,
        idle as f64 / 1024.0,
    );
}

/// Child: `n` bare core streams that printed more than one compression batch (a live
/// compressor each), then released.
fn child_core_busy(n: usize) {
    let block = print_block(200);
    let before = rss_kib();
    let mut streams: Vec<Stream> = (0..n)
        .map(|_| Stream::new(uuid::Uuid::new_v4().to_string(), idle_config(), 0))
        .collect();
    let mut bytes = 0;
    for s in &mut streams {
        bytes = 0;
        for e in &block {
            s.record(e, 0).unwrap();
            bytes += record_bytes(e);
        }
        s.take_actions();
    }
    let active = rss_kib();
    let mem_active: usize = streams.iter().map(Stream::memory_bytes).sum();
    for s in &mut streams {
        s.tick(10_000);
    }
    let idle = rss_kib();
    let mem_idle: usize = streams.iter().map(Stream::memory_bytes).sum();
    println!(
        "bare core Stream x{n}, {:.1} KiB of records each (live compressor): active {:.1} KiB RSS/stream (memory_bytes {:.1} KiB) | released {:.1} KiB RSS/stream (memory_bytes {:.1} KiB)",
        bytes as f64 / 1024.0,
        per_stream(active, before, n),
        mem_active as f64 / n as f64 / 1024.0,
        per_stream(idle, before, n),
        mem_idle as f64 / n as f64 / 1024.0,
    );
}

/// Child: `n` `RecordingStream` drivers over an in-memory store, a few events each.
fn child_driver(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let session = idle_session(1);
        let store = Arc::new(StoreUploader::memory());
        let config = DriverConfig {
            stream: idle_config(),
            ..DriverConfig::default()
        };
        let before = rss_kib();
        let mut uploads = Vec::with_capacity(n);
        for _ in 0..n {
            let sid = uuid::Uuid::new_v4().to_string();
            uploads.push(store.create_upload(&sid).await.unwrap());
        }
        let with_uploads = rss_kib();
        let mut streams = Vec::with_capacity(n);
        for u in uploads {
            streams.push(
                RecordingStream::resume(store.clone(), u, config.clone())
                    .await
                    .unwrap(),
            );
        }
        // Event k goes to every stream before event k + 1, so that the last round is short
        // and no stream is idle past the release time when the active RSS is read.
        let (last, rest) = session.split_last().unwrap();
        for e in rest {
            for s in &streams {
                s.record(e.clone()).await.unwrap();
            }
        }
        let round = Instant::now();
        for s in &streams {
            s.record(last.clone()).await.unwrap();
        }
        let active = rss_kib();
        let round_ms = round.elapsed().as_millis();
        tokio::time::sleep(Duration::from_millis(RELEASE_MS * 3)).await;
        let idle = rss_kib();
        tokio::time::sleep(Duration::from_millis(RELEASE_MS * 2)).await;
        let idle_later = rss_kib();
        let stored = store_objects(&store).await;
        assert_eq!(stored, n, "an idle stream uploaded a part");
        println!(
            "RecordingStream x{n} (tokio, 2 workers, memory store): active {:.1} KiB RSS/stream (last event round {round_ms} ms{}) | idle {:.1} KiB RSS/stream ({:.1} KiB {} ms later) | store's upload markers {:.2} KiB/stream | RSS {:.1} -> {:.1} -> {:.1} -> {:.1} MiB",
            per_stream(active, with_uploads, n),
            if round_ms as u64 >= RELEASE_MS {
                ", longer than the release time: some were already released"
            } else {
                ""
            },
            per_stream(idle, with_uploads, n),
            per_stream(idle_later, with_uploads, n),
            RELEASE_MS * 2,
            per_stream(with_uploads, before, n),
            before as f64 / 1024.0,
            with_uploads as f64 / 1024.0,
            active as f64 / 1024.0,
            idle as f64 / 1024.0,
        );
        drop(streams);
    });
}

/// Objects in the store (upload markers and parts).
async fn store_objects(store: &StoreUploader) -> usize {
    use futures::StreamExt;
    store.store().list(None).count().await
}

/// Runs this bench binary as a child in `mode` and returns what it printed.
fn run_child(mode: &str, n: usize) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("TAPELOG_BENCH_CHILD", mode)
        .env("TAPELOG_BENCH_CHILD_N", n.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        text
    } else {
        format!(
            "{mode} child failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// `(best, median)` seconds of `runs` runs, and the last result.
fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        times.push(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2], last.unwrap())
}

/// Events `block` re-indexed from 1 up to `total` bytes of records; `f` gets each one.
fn for_each_event(block: &mut [AuditEvent], total: usize, mut f: impl FnMut(&AuditEvent)) {
    let block_bytes: usize = block.iter().map(record_bytes).sum();
    let mut index = 0;
    for _ in 0..total.div_ceil(block_bytes) {
        for e in block.iter_mut() {
            index += 1;
            e.set_index(index);
            f(e);
        }
    }
}

/// The bare core machine: records every event, "uploads" each part at once (no I/O) and
/// completes. Returns the bytes of the parts.
fn core_stream(block: &mut [AuditEvent], total: usize) -> usize {
    let mut s = Stream::new(uuid::Uuid::new_v4().to_string(), StreamConfig::default(), 0);
    let mut written = 0;
    let handle = |s: &mut Stream, written: &mut usize| {
        for a in s.take_actions() {
            match a {
                Action::UploadPart { number, part } => {
                    *written += part.len() as usize;
                    s.part_uploaded(number, "", 0).unwrap();
                }
                Action::CompleteUpload { .. } => s.upload_completed(),
                _ => {}
            }
        }
    };
    for_each_event(block, total, |e| {
        s.record(e, 0).unwrap();
        handle(&mut s, &mut written);
    });
    s.complete();
    handle(&mut s, &mut written);
    handle(&mut s, &mut written);
    assert!(s.is_done() && s.failure().is_none());
    written
}

/// The driver over `store`: records each event by reference (encoded on the caller's task),
/// completes. Returns the session id.
async fn driver_stream(
    store: Arc<StoreUploader>,
    block: &mut [AuditEvent],
    total: usize,
) -> String {
    let sid = uuid::Uuid::new_v4().to_string();
    let s = RecordingStream::create(store, &sid, DriverConfig::default())
        .await
        .unwrap();
    let block_bytes: usize = block.iter().map(record_bytes).sum();
    let mut index = 0;
    for _ in 0..total.div_ceil(block_bytes) {
        for e in block.iter_mut() {
            index += 1;
            e.set_index(index);
            s.record_ref(e).await.unwrap();
        }
    }
    s.complete().await.unwrap();
    sid
}

/// The record stream of each part of a recording (gzip members inflated).
fn plain_parts(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut inf = Inflater::new(Backend::ZlibRs);
    let mut pos = 0;
    while pos + 24 <= bytes.len() {
        let size = u64::from_be_bytes(bytes[pos + 8..pos + 16].try_into().unwrap()) as usize;
        let pad = u64::from_be_bytes(bytes[pos + 16..pos + 24].try_into().unwrap()) as usize;
        // Skip the 10-byte gzip header, stop before the 8-byte trailer.
        let mut body = &bytes[pos + 24 + 10..pos + 24 + size - 8];
        let mut plain = Vec::new();
        let mut out = vec![0u8; 256 * 1024];
        inf.reset();
        loop {
            let p = inf.inflate(body, &mut out).unwrap();
            body = &body[p.consumed..];
            plain.extend_from_slice(&out[..p.written]);
            if p.done {
                break;
            }
        }
        parts.push(plain);
        pos += 24 + size + pad;
    }
    parts
}

/// Records in a recording (checks it reads back whole).
fn count_records(bytes: &[u8]) -> (usize, usize) {
    let mut r = ProtoReader::new(Backend::ZlibRs);
    r.push(bytes);
    r.finish();
    let (mut n, mut len) = (0, 0);
    loop {
        match r.poll_record().unwrap() {
            PolledRecord::Record { oneof, .. } => {
                n += 1;
                len += oneof.len() + 4;
            }
            PolledRecord::End => return (n, len),
            PolledRecord::NeedInput => panic!("reader wants more input after finish"),
        }
    }
}

fn throughput(sizes: Sizes) {
    let mut block = print_block(4096);
    let total = sizes.record_bytes;
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(StoreUploader::local(dir.path()).unwrap());
    let memory = Arc::new(StoreUploader::memory());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (disk_best, disk_median, sid) = timed(sizes.runs, || {
        let sid = rt.block_on(driver_stream(disk.clone(), &mut block, total));
        let path = dir.path().join(format!("{sid}.tar"));
        let len = std::fs::metadata(&path).unwrap().len();
        (sid, len)
    });
    let recording = std::fs::read(dir.path().join(format!("{}.tar", sid.0))).unwrap();
    let (events, raw) = count_records(&recording);
    let parts = plain_parts(&recording);
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), raw);
    let (mem_best, mem_median, _) = timed(sizes.runs, || {
        rt.block_on(driver_stream(memory.clone(), &mut block, total))
    });
    let (spawned_best, spawned_median, _) = timed(sizes.runs, || {
        let (store, mut b) = (memory.clone(), block.clone());
        rt.block_on(async move {
            tokio::spawn(async move { driver_stream(store, &mut b, total).await })
                .await
                .unwrap()
        })
    });
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (local_best, local_median, _) = timed(sizes.runs, || {
        local.block_on(driver_stream(memory.clone(), &mut block, total))
    });
    let (core_best, core_median, core_bytes) = timed(sizes.runs, || core_stream(&mut block, total));
    let (clone_best, _, _) = timed(sizes.runs, || {
        let mut n = 0;
        for_each_event(&mut block, total, |e| {
            n += std::hint::black_box(e.clone()).index() as usize & 1;
        });
        n
    });
    let (deflate_best, deflate_median, deflated) = timed(sizes.runs, || {
        raw_deflate_baseline(&parts, Backend::ZlibRs, 1)
    });
    assert!(core_bytes > deflated && deflated > 0);
    let mbps = |t: f64| raw as f64 / t / 1e6;
    println!(
        "throughput: {events} print events, {:.1} MB of records, {} parts of 5 MiB (level 1, zlib-rs), recording {:.1} MB; best (median) of {} runs",
        raw as f64 / 1e6,
        parts.len(),
        recording.len() as f64 / 1e6,
        sizes.runs,
    );
    println!(
        "  raw deflate (same records, same part cuts)   {:>6.1} MB/s ({:.1})",
        mbps(deflate_best),
        mbps(deflate_median)
    );
    println!(
        "  bare core Stream (no driver, no I/O)         {:>6.1} MB/s ({:.1}), ratio {:.2} ({:.2})",
        mbps(core_best),
        mbps(core_median),
        deflate_best / core_best,
        deflate_median / core_median
    );
    println!(
        "  RecordingStream -> memory store              {:>6.1} MB/s ({:.1}), ratio {:.2} ({:.2})",
        mbps(mem_best),
        mbps(mem_median),
        deflate_best / mem_best,
        deflate_median / mem_median
    );
    println!(
        "  RecordingStream -> memory store, caller is a task on the runtime {:>6.1} MB/s ({:.1}), ratio {:.2} ({:.2})",
        mbps(spawned_best),
        mbps(spawned_median),
        deflate_best / spawned_best,
        deflate_median / spawned_median
    );
    println!(
        "  RecordingStream -> memory store, current-thread runtime {:>6.1} MB/s ({:.1}), ratio {:.2} ({:.2})",
        mbps(local_best),
        mbps(local_median),
        deflate_best / local_best,
        deflate_median / local_median
    );
    println!(
        "  RecordingStream -> local disk, completed     {:>6.1} MB/s ({:.1}), ratio {:.2} ({:.2}) (target >= 0.8)",
        mbps(disk_best),
        mbps(disk_median),
        deflate_best / disk_best,
        deflate_median / disk_median
    );
    println!(
        "  of which cloning the events (owned by the driver) alone: {:.1} MB/s, {:.0} ns/event; driver over core: {:.0} ns/event",
        mbps(clone_best),
        clone_best * 1e9 / events as f64,
        (mem_best - core_best) * 1e9 / events as f64,
    );
}

fn main() {
    let arg = |a: &str| std::env::args().any(|x| x == a);
    if arg("--list") {
        return;
    }
    let n_env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Ok(mode) = std::env::var("TAPELOG_BENCH_CHILD") {
        let n = n_env("TAPELOG_BENCH_CHILD_N").unwrap_or(1000);
        match mode.as_str() {
            "core" => child_core(n),
            "core-busy" => child_core_busy(n),
            _ => child_driver(n),
        }
        return;
    }
    // `cargo bench` passes --bench; as a test (no --bench) do a small smoke run.
    let sizes = if arg("--bench") {
        Sizes {
            streams: n_env("TAPELOG_BENCH_STREAMS").unwrap_or(10_000),
            busy_streams: 1000,
            record_bytes: n_env("TAPELOG_BENCH_MB").unwrap_or(100) * 1_000_000,
            runs: 3,
        }
    } else {
        Sizes {
            streams: 200,
            busy_streams: 20,
            record_bytes: 12_000_000,
            runs: 1,
        }
    };
    let start = Instant::now();
    println!("{}", run_child("core", sizes.streams));
    println!("{}", run_child("driver", sizes.streams));
    println!("{}", run_child("core-busy", sizes.busy_streams));
    throughput(sizes);
    println!("(bench took {:.1} s)", start.elapsed().as_secs_f64());
}
