//! A real PostgreSQL 15 (Debian's `postgresql-15`) for the tests: [`shared`] is one cluster per
//! test binary, in which each test makes its own database ([`PgServer::create_database`]);
//! [`PgServer::start_private`] is a cluster of its own that a test may kill with SIGKILL and
//! start again (crash recovery).
//!
//! The server runs as a child of the test binary (`postgres` itself, not `pg_ctl`), started
//! from a thread that lives as long as the process, with `PR_SET_PDEATHSIG`; its backends exit
//! when it dies. An `atexit` hook kills what is left, removes its shared memory segment and the
//! directories. As root (CI), `initdb` and `postgres` refuse to run, so they run as the
//! `postgres` user, in a directory it owns under one every user can traverse. `initdb` runs once
//! per test binary; each cluster starts from a copy of that template.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where Debian installs the server binaries.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

const SETUP: &str = "run `bash scripts/setup.sh` (it installs Debian's postgresql-15)";

/// How long `initdb`, a start (with crash recovery) or a stop may take. Generous for a loaded
/// machine; a server that is ready sooner is used at once.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running PostgreSQL cluster on 127.0.0.1 (trust authentication, superuser `postgres`).
pub struct PgServer {
    port: u16,
    /// The cluster's directory: `data/`, the Unix socket and `postgres.log`.
    root: PathBuf,
    data_dir: PathBuf,
    /// The postmaster, while it runs.
    child: Mutex<Option<Child>>,
    /// Whether this value owns the cluster (dropping it stops the server, removes the directory).
    private: bool,
    /// Server settings besides the usual ones (`-c name=value` pairs).
    extra: Vec<String>,
}

/// A fresh number for names unique in this process.
fn next_number() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The cluster of this test binary (started on first use). Tests share it through their own
/// databases ([`PgServer::create_database`]).
pub fn shared() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start(false))
}

impl PgServer {
    /// A cluster of its own, e.g. to kill it. Dropping it stops it and removes its directory.
    pub fn start_private() -> PgServer {
        PgServer::start_with(true, |_| Vec::new())
    }

    /// A private cluster that speaks TLS only (`hostssl` in `pg_hba.conf`) with this
    /// certificate chain and key (PEM).
    pub fn start_private_tls(cert_pem: &str, key_pem: &str) -> PgServer {
        PgServer::start_with(true, |data| {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", cert_pem), ("server.key", key_pem)] {
                let path = data.join(name);
                std::fs::write(&path, pem).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                if let Some((uid, gid)) = owner() {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
                }
            }
            let hba = data.join("pg_hba.conf");
            std::fs::write(
                &hba,
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            vec!["ssl=on".into()]
        })
    }

    fn start(private: bool) -> PgServer {
        PgServer::start_with(private, |_| Vec::new())
    }

    /// A cluster from the template; `prepare` may change its data directory before the first
    /// start and returns extra settings.
    fn start_with(private: bool, prepare: impl FnOnce(&Path) -> Vec<String>) -> PgServer {
        let template = template();
        let root = new_dir("cluster");
        let data_dir = root.join("data");
        let out = Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(&data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "copying the cluster template {}: {}",
            template.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let extra = prepare(&data_dir);
        let server = PgServer {
            port: free_port(),
            root,
            data_dir,
            child: Mutex::new(None),
            private,
            extra,
        };
        server.launch();
        server
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (the maintenance database).
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `db` on this server.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    /// A new empty database with a name unique in this server; returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!("t_{}_{}", std::process::id(), next_number());
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_of(&name)
    }

    /// Runs `sql` in database `db` with `psql` (no async runtime needed) and returns what it
    /// prints: one line per row, columns separated by `|`. Panics on any SQL error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(Path::new(BIN_DIR).join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}; {SETUP}"));
        assert!(
            out.status.success(),
            "psql on port {} ({db}): {sql}\n{}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// SIGKILL to the postmaster, as in a crash. Its backends (each in a session of its own,
    /// so not reachable through the postmaster's process group) notice its death and exit; this
    /// returns once they are gone and the port is closed, so a client's next call fails.
    pub fn kill9(&self) {
        let mut guard = self.child.lock().unwrap();
        let mut child = guard.take().expect("kill9: the server is not running");
        let pid = child.id() as libc::pid_t;
        forget_postmaster(pid);
        if let Err(backends) = crash(pid, DEADLINE) {
            panic!(
                "the backends {backends:?} of the server on port {} did not exit within {} s \
                 after its postmaster was killed",
                self.port,
                DEADLINE.as_secs()
            );
        }
        child.wait().unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        assert!(
            super::wait_until(DEADLINE, || TcpStream::connect_timeout(
                &addr,
                Duration::from_millis(200)
            )
            .is_err()),
            "port {} still accepts connections after kill9",
            self.port
        );
    }

    /// Starts the server again on the same port and data directory (after [`kill9`](Self::kill9)
    /// it runs crash recovery) and returns once it accepts connections.
    pub fn restart(&self) {
        assert!(
            self.child.lock().unwrap().is_none(),
            "restart: the server on port {} is still running",
            self.port
        );
        self.launch();
    }

    /// Starts the postmaster and waits until it accepts connections.
    fn launch(&self) {
        let mut cmd = Command::new(Path::new(BIN_DIR).join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-k")
            .arg(&self.root)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // Durability stays real; the rest only makes a small test server.
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "shared_buffers=32MB", "-c", "max_connections=200"])
            .args(self.extra.iter().flat_map(|e| ["-c", e.as_str()]))
            .current_dir(&self.root)
            .process_group(0);
        as_owner(&mut cmd);
        let log = self.root.join("postgres.log");
        let child = spawn(cmd, &log);
        let pid = child.id();
        remember_postmaster(pid as libc::pid_t, &self.data_dir);
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready(pid);
    }

    /// Polls `pg_isready` (which fails while crash recovery runs, unlike a TCP connect) until
    /// the server accepts connections; panics with the log if it exits or the deadline passes.
    fn wait_ready(&self, pid: u32) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ready = Command::new(Path::new(BIN_DIR).join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
                .args(["-t", "2", "-p"])
                .arg(self.port.to_string())
                .stdin(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run pg_isready: {e}; {SETUP}"));
            if ready.success() {
                return;
            }
            if exited(pid) {
                panic!(
                    "postgres on port {} exited before it accepted connections; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "postgres on port {} did not accept connections within {} s; its log:\n{}",
                    self.port,
                    DEADLINE.as_secs(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.private {
            return;
        }
        if let Some(mut child) = self.child.lock().map(|mut g| g.take()).ok().flatten() {
            let pid = child.id() as libc::pid_t;
            forget_postmaster(pid);
            stop(pid, &self.data_dir);
            let _ = child.wait();
        } else {
            remove_orphaned_shared_memory(&self.data_dir);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Connects with tokio-postgres and drives the connection on a task of the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        // The connection's end (or its error, e.g. after kill9) shows in the client's calls.
        let _ = connection.await;
    });
    client
}

/// The cluster every server of this binary copies: `initdb` once.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let initdb = Path::new(BIN_DIR).join("initdb");
        assert!(
            Path::new(BIN_DIR).join("postgres").is_file() && initdb.is_file(),
            "PostgreSQL 15 is not installed ({BIN_DIR}/postgres is missing): {SETUP}"
        );
        let root = new_dir("template");
        let data = root.join("data");
        let mut cmd = Command::new(&initdb);
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-instructions"])
            .current_dir(&root)
            .stdin(Stdio::null());
        as_owner(&mut cmd);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {SETUP}", initdb.display()));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        data
    })
}

/// The uid and gid the server runs as when the tests run as root (`postgres`, as Debian's
/// package creates it); `None` when not root (the current user runs it).
fn owner() -> Option<(libc::uid_t, libc::gid_t)> {
    static OWNER: OnceLock<Option<(libc::uid_t, libc::gid_t)>> = OnceLock::new();
    *OWNER.get_or_init(|| {
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } != 0 {
            return None;
        }
        // SAFETY: getpwnam with a NUL-terminated name; the fields are copied out at once,
        // before any other call could reuse its static buffer (only this OnceLock calls it).
        let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
        assert!(
            !pw.is_null(),
            "running as root, but there is no `postgres` user to run PostgreSQL as: {SETUP}"
        );
        // SAFETY: pw is non-null and points to getpwnam's result.
        Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
    })
}

/// Runs `cmd` as [`owner`] when there is one.
fn as_owner(cmd: &mut Command) {
    if let Some((uid, gid)) = owner() {
        cmd.uid(uid).gid(gid);
    }
}

/// A new directory owned by the server's user, `<base>/tapelog-pg-<pid>-<n>-<what>`, removed
/// at exit. `base` is the temporary directory when every user can traverse it and its parents
/// (the server runs as another user under root), else `/tmp`.
fn new_dir(what: &str) -> PathBuf {
    let mut base = std::env::temp_dir();
    if owner().is_some() && !traversable(&base) {
        base = PathBuf::from("/tmp");
        assert!(
            traversable(&base),
            "no directory the postgres user can reach for the test cluster (/tmp is not \
             traversable by all)"
        );
    }
    let dir = base.join(format!(
        "tapelog-pg-{}-{}-{what}",
        std::process::id(),
        next_number()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    if let Some((uid, gid)) = owner() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    CLEANUP.lock().unwrap().1.push(dir.clone());
    dir
}

/// Whether `dir` and each of its parents has the execute bit for others.
fn traversable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Postmasters (with their data directories) to stop and directories to remove at exit.
type Cleanup = (Vec<(libc::pid_t, PathBuf)>, Vec<PathBuf>);
static CLEANUP: Mutex<Cleanup> = Mutex::new((Vec::new(), Vec::new()));

extern "C" fn cleanup_at_exit() {
    if let Ok(c) = CLEANUP.lock() {
        for (pid, data_dir) in &c.0 {
            stop(*pid, data_dir);
        }
        for dir in &c.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn remember_postmaster(pid: libc::pid_t, data_dir: &Path) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
    CLEANUP.lock().unwrap().0.push((pid, data_dir.to_owned()));
}

fn forget_postmaster(pid: libc::pid_t) {
    CLEANUP.lock().unwrap().0.retain(|(p, _)| *p != pid);
}

/// SIGKILL to the postmaster `pid`, then waits up to `limit` until its backends have noticed
/// and exited; those still alive then get SIGKILL too and are returned as the error. Does not
/// reap the postmaster.
fn crash(pid: libc::pid_t, limit: Duration) -> Result<(), Vec<libc::pid_t>> {
    // Stopped, the postmaster cannot start a backend between the listing and the kill.
    // SAFETY: kill(2) on a postmaster we started; no memory is touched.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let backends = children_of(pid);
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    if super::wait_until(limit, || !backends.iter().any(|b| alive(*b))) {
        return Ok(());
    }
    let left: Vec<_> = backends.into_iter().filter(|b| alive(*b)).collect();
    for b in &left {
        // SAFETY: kill(2) on a backend of the killed server; no memory is touched.
        unsafe {
            libc::kill(*b, libc::SIGKILL);
        }
    }
    Err(left)
}

/// Stops the server of `data_dir` whose postmaster is `pid` for good (SIGKILL: its directory
/// is removed next) and removes its shared memory. Does not reap the postmaster.
fn stop(pid: libc::pid_t, data_dir: &Path) {
    let _ = crash(pid, Duration::from_secs(10));
    remove_orphaned_shared_memory(data_dir);
}

/// A killed postmaster leaves its System V shared memory segment behind (the next start of
/// the cluster removes it); a cluster that is not started again removes it here. Its id is on
/// line 7 of `postmaster.pid` (`KEY ID`).
fn remove_orphaned_shared_memory(data_dir: &Path) {
    let Ok(pidfile) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let id = pidfile
        .lines()
        .nth(6)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|id| id.parse::<libc::c_int>().ok());
    if let Some(id) = id {
        // SAFETY: IPC_RMID takes no buffer; the segment belonged to this cluster's dead server.
        unsafe {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// The processes whose parent is `pid`.
fn children_of(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // After the command name in parentheses: state, ppid, …
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Whether `pid` is a live process (not a zombie, not gone).
fn alive(pid: libc::pid_t) -> bool {
    !exited(pid as u32)
}

/// Whether process `pid` (our child, not reaped while it lives) has exited.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Starts `cmd` (output to `log`) from one thread that lives as long as the process, so that
/// the child's parent-death signal fires when the test binary dies, not when the test's
/// thread ends.
fn spawn(mut cmd: Command, log: &Path) -> Child {
    type Request = (Command, Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    // SAFETY: the hook only calls async-signal-safe functions (prctl, getppid, _exit). It runs
    // after the child's setuid (which would clear the parent-death signal).
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
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::spawn(move || {
            // Lives until the process ends: the loop ends only when the sender is dropped,
            // and the sender is in a static.
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (tx, rx) = channel();
    spawner.lock().unwrap().send((cmd, tx)).unwrap();
    match rx.recv().unwrap() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("PostgreSQL 15 is not installed: {SETUP}")
        }
        Err(e) => panic!("cannot start postgres: {e}"),
    }
}
