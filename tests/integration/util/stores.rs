//! Real object-store servers for the conformance tests: s3s-fs (S3), moto (a second S3, with
//! multipart listing) and azurite (Azure Blob Storage), each started once per test binary on a free loopback port and killed when the
//! binary exits (an `atexit` hook, and `PR_SET_PDEATHSIG` if the binary dies by a signal).
//! A missing server binary fails the test with a message saying how to install it.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tapelog_store::url::{AZURE_EMULATOR_ACCOUNT, StorageOptions};

/// S3 credentials the test server accepts.
pub const S3_ACCESS_KEY: &str = "tapelog-test";
/// S3 secret the test server accepts.
pub const S3_SECRET_KEY: &str = "tapelog-test-secret";

const SETUP: &str = "run `bash scripts/setup.sh` (it installs s3s-fs, moto and azurite)";

/// A running s3s-fs.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Its root directory: a bucket is a directory in it.
    pub root: PathBuf,
}

/// A running azurite (blob service only).
pub struct AzureServer {
    /// `http://127.0.0.1:<port>/devstoreaccount1`.
    pub endpoint: String,
    port: u16,
}

/// Children to kill and directories to remove at exit.
static CLEANUP: Mutex<(Vec<u32>, Vec<PathBuf>)> = Mutex::new((Vec::new(), Vec::new()));

extern "C" fn cleanup_at_exit() {
    if let Ok(c) = CLEANUP.lock() {
        for pid in &c.0 {
            // SAFETY: kill(2) on a child we started; no memory is touched.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        for dir in &c.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn register_cleanup(pid: Option<u32>, dir: Option<PathBuf>) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
    let mut c = CLEANUP.lock().unwrap();
    c.0.extend(pid);
    c.1.extend(dir);
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cmd` from a thread that lives as long as the process, so that the child's
/// parent-death signal fires when the test binary dies, not when one test's thread ends.
fn spawn(mut cmd: Command, what: &str, log: &Path) -> u32 {
    let log_file = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    // SAFETY: the hook only calls async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let what = what.to_string();
    std::thread::spawn(move || {
        let r = cmd.spawn().map(|c| c.id());
        let _ = tx.send(r);
        loop {
            std::thread::park();
        }
    });
    match rx.recv().unwrap() {
        Ok(pid) => pid,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{what} is not installed: {SETUP}")
        }
        Err(e) => panic!("cannot start {what}: {e}"),
    }
}

/// How long a server may take to listen. Generous because a loaded machine (two test runs at
/// once, fuzzers beside them) made Node-based Azurite take over 10 s; a server that is ready
/// sooner is used at once, and one that exits is reported at once.
const START_DEADLINE: Duration = Duration::from_secs(90);

/// Whether process `pid` (our child, never reaped while it lives) has exited.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: "Z" is a zombie (exited).
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Waits until something listens on `port`, failing as soon as the server `pid` exits.
fn wait_for_port(port: u16, pid: u32, what: &str, log: &Path) {
    let deadline = Instant::now() + START_DEADLINE;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut gone = false;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if exited(pid) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    if gone {
        panic!("{what} exited before it listened on 127.0.0.1:{port}; its output:\n{log}");
    }
    panic!(
        "{what} did not listen on 127.0.0.1:{port} within {} s; its output:\n{log}",
        START_DEADLINE.as_secs()
    );
}

/// The s3s-fs of this test binary (started on first use).
pub fn s3() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("tapelog-s3s-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("data")).unwrap();
        register_cleanup(None, Some(root.clone()));
        let port = free_port();
        let mut cmd = Command::new("s3s-fs");
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root.join("data"));
        let log = root.join("s3s-fs.log");
        let pid = spawn(cmd, "s3s-fs", &log);
        register_cleanup(Some(pid), None);
        wait_for_port(port, pid, "s3s-fs", &log);
        S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            root: root.join("data"),
        }
    })
}

impl S3Server {
    /// A new empty bucket (a directory under the root, as s3s-fs keeps them).
    pub fn bucket(&self) -> String {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        std::fs::create_dir(self.root.join(&name)).unwrap();
        name
    }

    /// Options that reach this server.
    pub fn options(&self) -> StorageOptions {
        StorageOptions {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(S3_ACCESS_KEY.into()),
            secret_access_key: Some(S3_SECRET_KEY.into()),
            ..StorageOptions::default()
        }
    }
}

/// The smallest part but the last that the test moto accepts.
pub const MOTO_MIN_PART: usize = 1024;

/// A running moto server (S3 only is used).
pub struct MotoServer {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// The moto of this test binary (started on first use): `target/moto/bin/moto_server`, in
/// memory. moto accepts any credentials and keeps every bucket until it exits. S3's 5 MiB
/// minimum for every part but the last is lowered to [`MOTO_MIN_PART`] (moto's
/// `S3_UPLOAD_PART_MIN_SIZE`) so that the conformance suite's small parts (1 KiB to 2 MiB,
/// padded to their own minimum) can be completed; parts are kept in memory.
pub fn moto() -> &'static MotoServer {
    static SERVER: OnceLock<MotoServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/moto/bin/moto_server");
        assert!(
            bin.is_file(),
            "moto is not installed ({} is missing): {SETUP}",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!("tapelog-moto-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        register_cleanup(None, Some(dir.clone()));
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("S3_UPLOAD_PART_MIN_SIZE", MOTO_MIN_PART.to_string())
            .env("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", (64 << 20).to_string())
            .current_dir(&dir);
        let log = dir.join("moto.log");
        let pid = spawn(cmd, "moto_server", &log);
        register_cleanup(Some(pid), None);
        wait_for_port(port, pid, "moto", &log);
        MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    })
}

impl MotoServer {
    /// A new empty bucket, created with a plain `PUT /<bucket>` (moto needs no signature).
    pub fn bucket(&self) -> String {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let port = self.endpoint.rsplit(':').next().unwrap();
        let mut conn = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        use std::io::{Read, Write};
        write!(
            conn,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "creating bucket {name}: {answer}"
        );
        name
    }

    /// Options that reach this server.
    pub fn options(&self) -> StorageOptions {
        StorageOptions {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(S3_ACCESS_KEY.into()),
            secret_access_key: Some(S3_SECRET_KEY.into()),
            ..StorageOptions::default()
        }
    }
}

fn azurite_main() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/azurite/node_modules/azurite/dist/src/blob/main.js")
}

/// The azurite of this test binary (started on first use).
pub fn azure() -> &'static AzureServer {
    static SERVER: OnceLock<AzureServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let main = azurite_main();
        assert!(
            main.is_file(),
            "azurite is not installed ({} is missing): {SETUP}",
            main.display()
        );
        let dir = std::env::temp_dir().join(format!("tapelog-azurite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        register_cleanup(None, Some(dir.clone()));
        let port = free_port();
        let mut cmd = Command::new("node");
        cmd.arg(&main)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--disableTelemetry", "--loose"])
            .args(["--skipApiVersionCheck", "--silent"])
            .current_dir(&dir);
        let log = dir.join("azurite.log");
        let pid = spawn(cmd, "node (for azurite)", &log);
        register_cleanup(Some(pid), None);
        wait_for_port(port, pid, "azurite", &log);
        AzureServer {
            endpoint: format!("http://127.0.0.1:{port}/{AZURE_EMULATOR_ACCOUNT}"),
            port,
        }
    })
}

impl AzureServer {
    /// A new empty container, created with a SharedKey-signed `PUT ?restype=container`
    /// (object_store cannot create containers). The signature is computed by a stdlib-only
    /// Python script.
    pub fn container(&self) -> String {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let out = Command::new("python3")
            .arg("-c")
            .arg(CREATE_CONTAINER)
            .arg(self.port.to_string())
            .arg(AZURE_EMULATOR_ACCOUNT)
            .arg(tapelog_store::url::AZURE_EMULATOR_KEY)
            .arg(&name)
            .output()
            .expect("python3 is needed to create azurite containers");
        assert!(
            out.status.success(),
            "creating container {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        name
    }

    /// Options that reach this server.
    pub fn options(&self) -> StorageOptions {
        StorageOptions {
            endpoint: Some(self.endpoint.clone()),
            azure_use_emulator: true,
            ..StorageOptions::default()
        }
    }
}

/// argv: port account key container. Exits non-zero unless the server answers 201.
const CREATE_CONTAINER: &str = r#"
import base64, hashlib, hmac, http.client, sys
from email.utils import formatdate
port, account, key, name = sys.argv[1:5]
date = formatdate(usegmt=True)
version = "2021-08-06"
to_sign = ("PUT" + "\n" * 12 + "x-ms-date:" + date + "\nx-ms-version:" + version + "\n"
           + "/" + account + "/" + account + "/" + name + "\nrestype:container")
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest())
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
conn.request("PUT", "/" + account + "/" + name + "?restype=container", headers={
    "x-ms-date": date, "x-ms-version": version, "Content-Length": "0",
    "Authorization": "SharedKey " + account + ":" + sig.decode()})
r = conn.getresponse()
body = r.read()
if r.status != 201:
    print(r.status, body.decode(errors="replace"))
    sys.exit(1)
"#;
