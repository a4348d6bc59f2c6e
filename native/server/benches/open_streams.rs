//! Open recording streams through `tapelog serve`: `cargo bench -p tapelog-server --bench open_streams`.
//!
//! What one open, idle stream costs the server, measured from outside: the bench runs itself
//! again as a child process (`TAPELOG_OPEN_STREAMS_CHILD`) that starts an in-process
//! `tapelog serve` (defaults: local disk store in a temporary directory, the default stream
//! settings) on 127.0.0.1, port 0, and prints its port. The parent is the client: one
//! `tapelog_client::Client` (kept-alive connections), at most [`IN_FLIGHT`] requests at once.
//!
//! 1. Baseline: the child's `VmRSS` (from `/proc/PID/status`) with the connections open and
//!    no stream.
//! 2. N streams created (`POST /v1/streams`): RSS per empty stream.
//! 3. Each stream given ~5 KB of records in one request (session start, resize, print events
//!    of terminal output): RSS per stream while active, then idle at several times after the
//!    last request (the server's stream config releases an idle stream's working state after
//!    `release_after_ms`, 10 s by default).
//! 4. Diagnostics from the child (glibc): heap bytes in use and free (`mallinfo2`), and the
//!    RSS after `malloc_trim(0)`, which tells live memory from memory the allocator keeps.
//! 5. Every stream takes one more records request; a sample (evenly spaced, all with
//!    `TAPELOG_BENCH_COMPLETE=all`) is completed, downloaded and decoded: each recording must
//!    hold exactly the records sent.
//!
//! `TAPELOG_BENCH_STREAMS` sets N (default 10,000); `TAPELOG_BENCH_IDLE_S` the idle read
//! times in seconds after the last request (default `5,15,30`). No timed asserts; per-stream
//! figures are against the baseline of the same run. Run as a test (`cargo test --bench
//! open_streams`, no `--bench` argument) it does a smoke run of 200 streams with short waits.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tapelog_api::Role;
use tapelog_client::{Client, ClientConfig, Credentials, Token};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{Backend, PolledRecord, ProtoReader, frame_record};
use tapelog_core::sample;
use tapelog_server::{ServeConfig, Server, TokenSpec};

const TOKEN: &str = "bench-admin-token-0123456789abcdef";
const CHILD_ENV: &str = "TAPELOG_OPEN_STREAMS_CHILD";
/// Requests in flight at once (and so connections kept alive).
const IN_FLIGHT: usize = 64;
/// Records given to each stream (framed), roughly.
const RECORD_BYTES: usize = 5 * 1024;
/// Distinct record bodies (streams take them in turn).
const BODIES: usize = 256;
/// Streams completed and read back when not all are.
const COMPLETE_SAMPLE: usize = 1000;
/// 1 GiB over 100,000 streams.
const TARGET_KIB: f64 = 1024.0 * 1024.0 / 100_000.0;

// ---------------------------------------------------------------------------------------------
// The child: the server.

/// glibc's `struct mallinfo2`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[repr(C)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn mallinfo2() -> MallInfo2;
    fn malloc_trim(pad: usize) -> i32;
}

/// `heap <in use> <free> <mmapped>` in bytes (zeros where glibc is not the allocator).
fn heap_line() -> String {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: a plain glibc call that returns a struct by value.
        let m = unsafe { mallinfo2() };
        format!("heap {} {} {}", m.uordblks, m.fordblks, m.hblkhd)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        "heap 0 0 0".to_string()
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: releases free heap pages; no pointers involved.
    unsafe {
        malloc_trim(0);
    }
}

/// Runs the server and answers the parent's commands on stdin (`heap`, `trim`, `quit`).
fn child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(dir.path());
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.completer_interval = Duration::ZERO;
    config.server_id = "bench".into();
    config.tokens = vec![TokenSpec {
        role: Role::Admin,
        name: "bench".into(),
        token: TOKEN.into(),
    }];
    let server = rt.block_on(Server::start(config)).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "port {}", server.local_addr().port()).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "heap" => {}
            "trim" => trim(),
            // At once, streams open: a heap profiler reports what is live now as leaked.
            "exit" => std::process::exit(0),
            _ => break,
        }
        writeln!(out, "{}", heap_line()).unwrap();
        out.flush().unwrap();
    }
    drop(out);
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), server.shutdown())
            .await
            .ok();
    });
}

// ---------------------------------------------------------------------------------------------
// The parent: the client.

struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// What the child said about its heap.
#[derive(Clone, Copy, Default)]
struct Heap {
    in_use: u64,
    free: u64,
    mmapped: u64,
}

impl ServerProcess {
    fn start() -> (ServerProcess, u16) {
        // A profiler to run the server under (`heaptrack -o FILE`), if any.
        let wrap = std::env::var("TAPELOG_BENCH_SERVER_WRAP").unwrap_or_default();
        let mut words: Vec<String> = wrap.split_whitespace().map(String::from).collect();
        words.push(std::env::current_exe().unwrap().display().to_string());
        let mut child = Command::new(&words[0])
            .args(&words[1..])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // Lines before it are a profiler's.
        let port = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("the server process ended before it said its port");
            }
            if let Some(p) = line.trim().strip_prefix("port ") {
                break p.parse().unwrap();
            }
        };
        (
            ServerProcess {
                child,
                stdin,
                stdout,
            },
            port,
        )
    }

    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn ask(&mut self, cmd: &str) -> Heap {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        match v[..] {
            [in_use, free, mmapped] => Heap {
                in_use,
                free,
                mmapped,
            },
            _ => panic!("child said {line:?}"),
        }
    }

    fn stop(mut self) {
        let _ = writeln!(self.stdin, "quit");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// xorshift64.
fn next(r: &mut u64) -> u64 {
    *r ^= *r << 13;
    *r ^= *r >> 7;
    *r ^= *r << 17;
    *r
}

/// One to five lines of terminal output: prompts, directory listings, log lines.
fn terminal_output(r: &mut u64) -> Vec<u8> {
    let mut out = String::new();
    let lines = 1 + next(r) % 5;
    for _ in 0..lines {
        let x = next(r);
        let line = match x % 3 {
            0 => format!(
                "\x1b[01;32mops@node-{}\x1b[00m:\x1b[01;34m/srv/app{}\x1b[00m$ ls -l\r\n",
                x % 97,
                x % 13
            ),
            1 => format!(
                "-rw-r--r-- 1 ops ops {:>9} Nov {:>2} {:02}:{:02} data-{:06x}.log\r\n",
                x % 900_000,
                1 + x % 30,
                x % 24,
                x % 60,
                x >> 40
            ),
            _ => format!(
                "{} INFO request id={:016x} path=/api/v1/items/{} status={} in {}ms\r\n",
                1_700_000_000 + x % 100_000,
                x >> 8,
                x % 5000,
                [200, 204, 304, 404, 500][(x >> 5) as usize % 5],
                x % 900
            ),
        };
        out.push_str(&line);
    }
    out.into_bytes()
}

/// A records body of ~[`RECORD_BYTES`]: session start, resize, prints (indexes from 0), and
/// its event count.
fn first_body(seed: u64) -> (Bytes, usize) {
    let mut events: Vec<AuditEvent> = sample::sample_session(0);
    events.truncate(2);
    let mut r = 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x1000_0001);
    let mut body = Vec::new();
    for e in &events {
        frame_record(e, &mut body).unwrap();
    }
    let (mut offset, mut i) = (0i64, 0i64);
    while body.len() < RECORD_BYTES {
        let data = terminal_output(&mut r);
        let e = sample::print(2 + i, i, offset, 150 + 40 * i, &data);
        frame_record(&e, &mut body).unwrap();
        offset += data.len() as i64;
        i += 1;
    }
    (body.into(), 2 + i as usize)
}

/// A later body: `n` prints from index `from`.
fn more_body(from: i64, n: usize) -> Bytes {
    let mut r = 0x2545_F491_4F6C_DD1D;
    let mut body = Vec::new();
    for k in 0..n as i64 {
        let data = terminal_output(&mut r);
        let e = sample::print(from + k, from + k, 0, 10_000 + 40 * k, &data);
        frame_record(&e, &mut body).unwrap();
    }
    body.into()
}

fn session_id(i: usize) -> String {
    uuid::Uuid::from_u128(0x5e55_1000_0000_4000_8000_0000_0000_0000 | i as u128)
        .hyphenated()
        .to_string()
}

/// Records in a recording, reading it to the end (fails on any damage).
fn count_records(bytes: &[u8]) -> usize {
    let mut r = ProtoReader::new(Backend::default());
    r.push(bytes);
    r.finish();
    let mut n = 0;
    loop {
        match r.poll_record().unwrap() {
            PolledRecord::Record { .. } => n += 1,
            PolledRecord::End => return n,
            PolledRecord::NeedInput => panic!("reader wants more input after finish"),
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Reading {
    label: String,
    rss: u64,
    heap: Heap,
}

fn line(r: &Reading, base: &Reading, n: usize) -> String {
    let per = r.rss.saturating_sub(base.rss) as f64 / n as f64;
    let heap_per = r.heap.in_use.saturating_sub(base.heap.in_use) as f64 / 1024.0 / n as f64;
    format!(
        "  {:<34} RSS {:>8.1} MiB  {:>6.2} KiB/stream ({:.2} of the 10.24 KiB target)  heap in use {:>5.2} KiB/stream, free {:>6.1} MiB, mmapped {:>5.1} MiB",
        r.label,
        mib(r.rss),
        per,
        per / TARGET_KIB,
        heap_per,
        r.heap.free as f64 / 1048576.0,
        r.heap.mmapped as f64 / 1048576.0,
    )
}

fn read(server: &mut ServerProcess, label: impl Into<String>) -> Reading {
    let heap = server.ask("heap");
    Reading {
        label: label.into(),
        rss: server.rss_kib(),
        heap,
    }
}

fn parent(bench: bool) {
    let n: usize = std::env::var("TAPELOG_BENCH_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 10_000 } else { 200 });
    let idle: Vec<f64> = std::env::var("TAPELOG_BENCH_IDLE_S")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if bench {
                vec![5.0, 15.0, 30.0]
            } else {
                vec![0.5]
            }
        });
    let complete_all = std::env::var("TAPELOG_BENCH_COMPLETE").is_ok_and(|v| v == "all");
    let started = Instant::now();
    let (mut server, port) = ServerProcess::start();
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = ClientConfig::new(&url, Credentials::token(Token::new(TOKEN).unwrap()));
    config.request_timeout = Duration::from_secs(120);
    let client = Client::new(config).unwrap();
    let bodies: Arc<Vec<(Bytes, usize)>> = Arc::new((0..BODIES as u64).map(first_body).collect());
    let avg_body = bodies.iter().map(|b| b.0.len()).sum::<usize>() / BODIES;
    let avg_events = bodies.iter().map(|b| b.1).sum::<usize>() as f64 / BODIES as f64;
    println!(
        "open streams over the API: {n} streams, ~{avg_body} B of records each ({avg_events:.1} events, one request), {IN_FLIGHT} requests in flight; server pid {}, load {}",
        server.child.id(),
        loadavg()
    );

    // Connections up (each kept alive), then the baseline.
    rt.block_on(async {
        futures::stream::iter(0..IN_FLIGHT * 4)
            .map(|i| {
                let c = client.clone();
                async move {
                    // 404: no such stream; the answer is not the point, the connection is.
                    let _ = c.stream_status(&session_id(1_000_000_000 + i)).await;
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    let base = read(&mut server, "baseline (0 streams)");
    println!(
        "  {:<34} RSS {:>8.1} MiB  heap in use {:.1} MiB",
        base.label,
        mib(base.rss),
        base.heap.in_use as f64 / 1048576.0
    );

    // Create.
    let t = Instant::now();
    let uploads: Vec<String> = rt.block_on(async {
        futures::stream::iter(0..n)
            .map(|i| {
                let c = client.clone();
                async move { c.create_stream(&session_id(i)).await.unwrap().upload_id }
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await
    });
    let created_s = t.elapsed().as_secs_f64();
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
    let r = read(&mut server, "created, empty");
    println!(
        "{}  ({:.0} creates/s)",
        line(&r, &base, n),
        n as f64 / created_s
    );

    // Records.
    let uploads = Arc::new(uploads);
    let t = Instant::now();
    rt.block_on(async {
        futures::stream::iter(0..n)
            .map(|i| {
                let (c, b, u) = (client.clone(), bodies.clone(), uploads.clone());
                async move {
                    c.write_records(&u[i], b[i % BODIES].0.clone())
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await
    });
    let last_post = Instant::now();
    let posted_s = t.elapsed().as_secs_f64();
    let r = read(&mut server, "records in (active)");
    println!(
        "{}  ({:.0} records requests/s)",
        line(&r, &base, n),
        n as f64 / posted_s
    );
    let mut last = r;
    for s in &idle {
        let at = Duration::from_secs_f64(*s);
        let wait = at.saturating_sub(last_post.elapsed());
        rt.block_on(async { tokio::time::sleep(wait).await });
        last = read(&mut server, format!("idle {s} s after the last request"));
        println!("{}", line(&last, &base, n));
    }
    let idle_reading = last;
    let trimmed = {
        let heap = server.ask("trim");
        Reading {
            label: "then malloc_trim(0) (diagnostic)".into(),
            rss: server.rss_kib(),
            heap,
        }
    };
    println!("{}", line(&trimmed, &base, n));

    if std::env::var_os("TAPELOG_BENCH_EXIT_IDLE").is_some() {
        let _ = writeln!(server.stdin, "exit");
        let _ = server.child.wait();
        return;
    }

    // The server closed the connections left idle meanwhile; a POST is not sent twice on a
    // new one, so idempotent status reads (each retried once) replace them first.
    rt.block_on(async {
        futures::stream::iter(0..(IN_FLIGHT * 4).min(n))
            .map(|i| {
                let (c, u) = (client.clone(), uploads.clone());
                async move {
                    c.stream_status(&u[i]).await.unwrap();
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await
    });

    // Every stream takes more records; a sample completes and reads back whole.
    let more = 8usize;
    let t = Instant::now();
    rt.block_on(async {
        futures::stream::iter(0..n)
            .map(|i| {
                let (c, b, u) = (client.clone(), bodies.clone(), uploads.clone());
                async move {
                    let from = b[i % BODIES].1 as i64;
                    c.write_records(&u[i], more_body(from, more)).await.unwrap();
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await
    });
    let more_s = t.elapsed().as_secs_f64();
    let sample: Vec<usize> = if complete_all || n <= COMPLETE_SAMPLE {
        (0..n).collect()
    } else {
        (0..COMPLETE_SAMPLE)
            .map(|k| k * n / COMPLETE_SAMPLE)
            .collect()
    };
    let t = Instant::now();
    let checked: usize = rt.block_on(async {
        futures::stream::iter(sample.iter().copied())
            .map(|i| {
                let (c, b, u) = (client.clone(), bodies.clone(), uploads.clone());
                async move {
                    let done = c.complete_stream(&u[i]).await.unwrap();
                    assert_eq!(done.session_id, session_id(i));
                    let dl = c.download_recording(&session_id(i)).await.unwrap();
                    let chunks: Vec<Bytes> = dl.bytes.try_collect().await.unwrap();
                    let bytes = chunks.concat();
                    let want = b[i % BODIES].1 + more;
                    assert_eq!(count_records(&bytes), want, "stream {i}");
                    1usize
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .fold(0, |a, x| async move { a + x })
            .await
    });
    println!(
        "  check: {n} of {n} streams took {more} more records ({:.0} requests/s); {checked} completed, downloaded and decoded with every record ({:.0}/s)",
        n as f64 / more_s,
        checked as f64 / t.elapsed().as_secs_f64()
    );
    let idle_per = idle_reading.rss.saturating_sub(base.rss) as f64 / n as f64;
    println!(
        "  => idle: {idle_per:.2} KiB/stream, {:.1} MiB for {n} streams; at this rate 100,000 streams hold {:.0} MiB over the baseline (goal <= 1024 MiB). load {}, {:.0} s",
        mib(idle_reading.rss.saturating_sub(base.rss)),
        idle_per * 100_000.0 / 1024.0,
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    server.stop();
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    parent(std::env::args().any(|a| a == "--bench"));
}
