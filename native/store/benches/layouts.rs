//! Completion benchmark (issue 18): `cargo bench -p tapelog-store --features s3,azure --bench layouts`.
//!
//! Completes one recording of `TAPELOG_BENCH_PARTS` parts (default 200) and
//! `TAPELOG_BENCH_MIB` MiB (default 1024) on moto and on Azurite, in tapelog's old layout
//! (parts as objects, joined by reading them back and writing the recording) and in Teleport's
//! layout for the store (S3: `CompleteMultipartUpload`; Azure: Put Block From URL, which
//! Azurite lacks, so tapelog's fallback stages the parts itself there), in the same run.
//! Prints, per store and layout, the wall time of `complete_upload` and the bytes that passed
//! through tapelog while it ran, counted by a TCP proxy between tapelog and the server, and
//! the ratios new ÷ old. No timed asserts.
//!
//! The servers are started here: `target/moto/bin/moto_server` and Azurite from
//! `target/azurite` (both installed by `scripts/setup.sh`), on loopback ports, with their data
//! in a temporary directory; they are killed at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use tapelog_core::codec::EncodedPart;
use tapelog_store::layout::azure::SharedKey;
use tapelog_store::url::{
    AZURE_EMULATOR_ACCOUNT, AZURE_EMULATOR_KEY, StorageOptions, open_storage,
};
use tapelog_store::{MultipartUploader, StoreUploader, StreamPart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on port {port} within 60 s");
}

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, port: u16, what: &str) -> Server {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e} (run `bash scripts/setup.sh`)"));
    let s = Server(child);
    wait_for(port, what);
    s
}

/// Bytes through the proxy in each direction.
#[derive(Default)]
struct Counts {
    up: AtomicU64,
    down: AtomicU64,
}

impl Counts {
    fn reset(&self) {
        self.up.store(0, Ordering::SeqCst);
        self.down.store(0, Ordering::SeqCst);
    }
    fn total(&self) -> u64 {
        self.up.load(Ordering::SeqCst) + self.down.load(Ordering::SeqCst)
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    n: Arc<Counts>,
    up: bool,
) {
    let mut buf = vec![0u8; 256 * 1024];
    while let Ok(k) = from.read(&mut buf).await {
        if k == 0 {
            break;
        }
        if up {
            n.up.fetch_add(k as u64, Ordering::Relaxed);
        } else {
            n.down.fetch_add(k as u64, Ordering::Relaxed);
        }
        if to.write_all(&buf[..k]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A counting TCP proxy to `127.0.0.1:target`; returns its port.
async fn proxy(target: u16, counts: Arc<Counts>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(
                    pump(cr, sw, counts.clone(), true),
                    pump(sr, cw, counts, false)
                );
            });
        }
    });
    port
}

/// Creates an Azurite container with a SharedKey-signed `PUT ?restype=container`.
async fn create_container(port: u16, name: &str) {
    let key = SharedKey::new(AZURE_EMULATOR_ACCOUNT, AZURE_EMULATOR_KEY).unwrap();
    let url = reqwest::Url::parse(&format!(
        "http://127.0.0.1:{port}/{AZURE_EMULATOR_ACCOUNT}/{name}?restype=container"
    ))
    .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    let date = httpdate();
    headers.insert("x-ms-date", date.parse().unwrap());
    headers.insert("x-ms-version", "2021-08-06".parse().unwrap());
    let auth = key.authorization(&reqwest::Method::PUT, &url, &headers, 0);
    let r = reqwest::Client::new()
        .put(url)
        .headers(headers)
        .header("authorization", auth)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "creating container {name}: {r:?}");
}

/// The time now as an HTTP date.
fn httpdate() -> String {
    let out = Command::new("date")
        .args(["-u", "+%a, %d %b %Y %H:%M:%S GMT"])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Creates a moto bucket (a plain `PUT /<bucket>`).
async fn create_bucket(port: u16, name: &str) {
    let r = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/{name}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "creating bucket {name}: {r:?}");
}

/// One part's bytes (not a real recording: completion does not look inside parts).
fn part_bytes(size: usize) -> EncodedPart {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    EncodedPart {
        data,
        padding: 0,
        events: 1,
        first_index: 0,
        last_index: 0,
    }
}

struct Figure {
    store: &'static str,
    layout: &'static str,
    upload_s: f64,
    complete_s: f64,
    bytes: u64,
}

/// Uploads `parts` copies of `part` through `s` (4 at a time), then completes, counting.
async fn run(
    store: &'static str,
    s: StoreUploader,
    part: &Arc<EncodedPart>,
    parts: u32,
    counts: &Counts,
) -> Figure {
    let layout = s.layout_name();
    let sid = uuid::Uuid::new_v4().to_string();
    let upload = s.create_upload(&sid).await.unwrap();
    let t = Instant::now();
    let mut done: Vec<StreamPart> = Vec::new();
    let mut numbers = 1..=parts;
    loop {
        let batch: Vec<u32> = numbers.by_ref().take(4).collect();
        if batch.is_empty() {
            break;
        }
        let futs = batch.iter().map(|&n| {
            let (s, u, p) = (s.clone(), upload.clone(), part.clone());
            async move { s.upload_part(&u, n, &p).await.unwrap() }
        });
        done.extend(futures::future::join_all(futs).await);
    }
    let upload_s = t.elapsed().as_secs_f64();
    counts.reset();
    let t = Instant::now();
    s.complete_upload(&upload, &done).await.unwrap();
    let complete_s = t.elapsed().as_secs_f64();
    let bytes = counts.total();
    let meta = s.store().head(&s.recording_path(&sid)).await.unwrap();
    assert_eq!(meta.size, part.len() * parts as u64, "{store} {layout}");
    eprintln!("  {store} {layout}: upload {upload_s:.1} s, complete {complete_s:.2} s");
    Figure {
        store,
        layout,
        upload_s,
        complete_s,
        bytes,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total_mib = env_u64("TAPELOG_BENCH_MIB", 1024);
    let parts = env_u64("TAPELOG_BENCH_PARTS", 200) as u32;
    let part = Arc::new(part_bytes((total_mib * MIB / parts as u64) as usize));
    let dir = tempfile::tempdir().unwrap();
    println!(
        "completing a {parts}-part recording of {:.0} MiB ({:.2} MiB parts)",
        (part.len() * parts as u64) as f64 / MIB as f64,
        part.len() as f64 / MIB as f64
    );

    // moto: S3's own 5 MiB minimum part size unless the parts are smaller.
    let moto_port = free_port();
    let min = if part.len() < 5 * MIB { 1024 } else { 5 * MIB };
    let _moto = spawn(
        Command::new(root().join("target/moto/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .env("S3_UPLOAD_PART_MIN_SIZE", min.to_string())
            .current_dir(dir.path()),
        moto_port,
        "moto_server",
    );
    let az_port = free_port();
    let az_dir = dir.path().join("azurite");
    std::fs::create_dir_all(&az_dir).unwrap();
    let _azurite = spawn(
        Command::new("node")
            .arg(root().join("target/azurite/node_modules/azurite/dist/src/blob/main.js"))
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &az_port.to_string(),
            ])
            .args([
                "--disableTelemetry",
                "--loose",
                "--skipApiVersionCheck",
                "--silent",
            ])
            .arg("--location")
            .arg(&az_dir),
        az_port,
        "azurite",
    );

    let counts = Arc::new(Counts::default());
    let moto_proxy = proxy(moto_port, counts.clone()).await;
    let az_proxy = proxy(az_port, counts.clone()).await;
    let s3_opts = StorageOptions {
        endpoint: Some(format!("http://127.0.0.1:{moto_proxy}")),
        access_key_id: Some("bench".into()),
        secret_access_key: Some("bench".into()),
        ..StorageOptions::default()
    };
    let az_opts = StorageOptions {
        endpoint: Some(format!("http://127.0.0.1:{az_proxy}")),
        azure_use_emulator: true,
        ..StorageOptions::default()
    };

    let mut figures = Vec::new();
    create_bucket(moto_port, "bench").await;
    let old = open_storage("s3://bench/old?layout=objects", &s3_opts).unwrap();
    figures.push(run("moto", old, &part, parts, &counts).await);
    let new = open_storage("s3://bench/new", &s3_opts).unwrap();
    figures.push(run("moto", new, &part, parts, &counts).await);

    for c in ["old", "session", "inprogress"] {
        create_container(az_port, c).await;
    }
    let old = open_storage("az://old/recs", &az_opts).unwrap();
    figures.push(run("azurite", old, &part, parts, &counts).await);
    let url = format!(
        "azblob-http://127.0.0.1:{az_proxy}/{AZURE_EMULATOR_ACCOUNT}#session_container=session&inprogress_container=inprogress"
    );
    let new = open_storage(&url, &StorageOptions::default()).unwrap();
    let stats_of = new.clone();
    figures.push(run("azurite", new, &part, parts, &counts).await);
    let stats = stats_of.azure_layout().map(|a| a.stats());

    println!(
        "{:<8} {:<13} {:>9} {:>11} {:>16}",
        "store", "layout", "upload s", "complete s", "MiB via tapelog"
    );
    for f in &figures {
        println!(
            "{:<8} {:<13} {:>9.1} {:>11.2} {:>16.1}",
            f.store,
            f.layout,
            f.upload_s,
            f.complete_s,
            f.bytes as f64 / MIB as f64
        );
    }
    for pair in figures.chunks(2) {
        let (old, new) = (&pair[0], &pair[1]);
        println!(
            "{}: {} ÷ {}: completion time {:.3}, bytes through tapelog {:.4}",
            old.store,
            new.layout,
            old.layout,
            new.complete_s / old.complete_s,
            new.bytes as f64 / old.bytes.max(1) as f64
        );
    }
    if let Some(s) = stats {
        println!(
            "azurite: Put Block From URL {} parts, fallback (Azurite answers 501) {} parts",
            s.from_url, s.fallback
        );
    }
}
