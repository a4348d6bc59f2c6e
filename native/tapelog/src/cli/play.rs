//! `tapelog play`: a recording played in the terminal with its timing (scaled by `--speed`,
//! idle gaps cut to `--max-idle`). On a terminal, keys pause and seek; memory is bounded by
//! the terminal's state, not the recording: events are streamed, and a seek feeds the output
//! up to the target into a `vt100` screen (re-reading the file from the start to go back),
//! then draws that screen. The timing rules are `tapelog_core::export` (`Framer`, `IdleCap`,
//! `PlayClock`), shared with the browser player.

use std::io::Write;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tapelog_audit::clock::SharedClock;
use tokio::time::Instant;

use tapelog_core::export::{FrameKind, Framer, IdleCap, PlayClock, TerminalSize};
use tapelog_store::check_id;
use tapelog_store::file::{Events, open_path_jobs};
use tapelog_term::pty::keys::{Key, KeyDecoder};
use tapelog_term::pty::{RawMode, is_terminal, read_fd, wait_readable};

use super::CliError;
use super::emit::DataDirArgs;

/// Arguments of `tapelog play`.
#[derive(clap::Args)]
pub struct PlayArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// With `--server`: play session SID from that server (downloaded to a temporary file
    /// first, so that seeking back can re-read it).
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// With `--teleport`: play session SID of that Teleport cluster (its events from
    /// `StreamSessionEvents`, written into a temporary recording first).
    #[command(flatten)]
    pub teleport: super::remote::TeleportArgs,
    /// Playback speed: 2 plays twice as fast, 0.5 at half speed.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub speed: f64,
    /// Cut every pause between two outputs longer than this many seconds to it.
    #[arg(long, value_name = "SECONDS")]
    pub max_idle: Option<f64>,
    /// Write the schedule to FILE: one line per output, `DELAY BYTES`, the seconds to wait
    /// before it (after --speed and --max-idle) and its size (`scriptreplay`'s timing format).
    #[arg(long, value_name = "FILE")]
    pub timing: Option<PathBuf>,
    /// Threads that inflate and decode a ProtoStream file's parts ahead of the player
    /// (default 1: one part after the other). Standard input and legacy recordings are read
    /// on one thread.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// A recording file (`-` for standard input), or a session id: its recording
    /// `DIR/log/records/SID.tar`, on the server given by `--server`, or on the cluster given
    /// by `--teleport`.
    pub recording: String,
}

/// Keys checked and signals noticed at least this often while waiting.
const TICK: Duration = Duration::from_millis(100);

/// One thing to play, at its time on the idle-capped timeline.
enum Step {
    Output(Vec<u8>),
    Resize(TerminalSize),
}

/// The recording being read: events turned into steps.
struct Source {
    path: PathBuf,
    events: Events,
    jobs: usize,
    framer: Framer,
    cap: IdleCap,
    max_idle_ms: Option<i64>,
    /// The size of the screen model was set from `session.start`.
    sized: bool,
}

impl Source {
    fn open(path: &Path, max_idle_ms: Option<i64>, jobs: usize) -> Result<Source, CliError> {
        Ok(Source {
            path: path.to_path_buf(),
            events: open_path_jobs(path, jobs)?,
            jobs,
            framer: Framer::new(),
            cap: IdleCap::new(max_idle_ms),
            max_idle_ms,
            sized: false,
        })
    }

    fn reopen(&self) -> Result<Source, CliError> {
        Source::open(&self.path, self.max_idle_ms, self.jobs)
    }

    /// The next step and its time, feeding the first size into `screen`.
    fn next(
        &mut self,
        screen: Option<&mut vt100::Parser>,
    ) -> Result<Option<(i64, Step)>, CliError> {
        let mut screen = screen;
        for item in self.events.by_ref() {
            let event = item?;
            let frame = self.framer.frame(&event);
            if !self.sized
                && let (Some(size), Some(s)) = (self.framer.initial_size(), screen.as_deref_mut())
            {
                resize(s, size);
                self.sized = true;
            }
            if let Some(f) = frame {
                let at = self.cap.map(f.time_ms);
                let step = match f.kind {
                    FrameKind::Output(d) => Step::Output(d.to_vec()),
                    FrameKind::Resize(s) => Step::Resize(s),
                };
                return Ok(Some((at, step)));
            }
        }
        Ok(None)
    }
}

fn resize(screen: &mut vt100::Parser, size: TerminalSize) {
    if let (Some(r), Some(c)) = (NonZeroU16::new(size.rows), NonZeroU16::new(size.cols)) {
        screen.set_size(r, c);
    }
}

fn new_screen() -> vt100::Parser {
    let d = TerminalSize::DEFAULT;
    let one = NonZeroU16::MIN;
    vt100::Parser::new(
        NonZeroU16::new(d.rows).unwrap_or(one),
        NonZeroU16::new(d.cols).unwrap_or(one),
        0,
    )
}

/// Where the recording of `arg` is: an existing file, else the stored recording of a session id.
fn resolve(arg: &str, data_dir: &Path) -> Result<PathBuf, CliError> {
    let p = PathBuf::from(arg);
    if arg == "-" || p.exists() || check_id("session id", arg).is_err() {
        return Ok(p);
    }
    let stored = data_dir
        .join("log")
        .join("records")
        .join(format!("{arg}.tar"));
    if !stored.exists() {
        return Err(CliError::Usage(format!(
            "no recording of session {arg} in {}: is it still being recorded, or in another data directory (--data-dir)? `tapelog uploads list` shows unfinished ones",
            stored.parent().unwrap_or(data_dir).display()
        )));
    }
    Ok(stored)
}

/// The player: what it reads, where it writes, its clock and (on a terminal) its screen model.
struct Player<W: Write> {
    source: Source,
    out: W,
    out_name: &'static str,
    clock: PlayClock,
    /// Where the player's time comes from (monotonic), and its origin.
    time: SharedClock,
    epoch: Instant,
    screen: Option<vt100::Parser>,
    timing: Option<(std::io::BufWriter<std::fs::File>, PathBuf)>,
    last_at: i64,
    keys: Option<mpsc::Receiver<Key>>,
}

impl<W: Write> Player<W> {
    fn now(&self) -> Duration {
        self.time.now_mono() - self.epoch
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        let name = self.out_name;
        let wr = |source| CliError::Write {
            path: name.into(),
            source,
        };
        self.out.write_all(bytes).map_err(wr)?;
        self.out.flush().map_err(wr)
    }

    fn play_step(&mut self, at: i64, step: Step) -> Result<(), CliError> {
        match step {
            Step::Output(data) => {
                if let Some((t, path)) = &mut self.timing {
                    let delay = (at - self.last_at).max(0) as f64 / self.clock.speed() / 1000.0;
                    writeln!(t, "{delay:.6} {}", data.len()).map_err(|source| CliError::Write {
                        path: path.display().to_string(),
                        source,
                    })?;
                }
                self.last_at = at;
                if let Some(s) = &mut self.screen {
                    s.process(&data);
                }
                self.write(&data)
            }
            Step::Resize(size) => {
                if let Some(s) = &mut self.screen {
                    resize(s, size);
                }
                Ok(())
            }
        }
    }

    /// Waits until `at` is due; `Ok(false)` when the user quit. Keys move the clock (and may
    /// replace `pending` after a seek).
    fn wait_until(&mut self, pending: &mut Option<(i64, Step)>) -> Result<bool, CliError> {
        loop {
            if tapelog_term::pty::quit_requested() {
                return Ok(false);
            }
            let Some((at, _)) = pending else {
                return Ok(true);
            };
            let wait = match self.clock.wait_for(*at, self.now()) {
                Some(Duration::ZERO) => return Ok(true),
                Some(d) => d.min(TICK),
                None => TICK,
            };
            let key = match &self.keys {
                Some(rx) => match rx.recv_timeout(wait) {
                    Ok(k) => Some(k),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        self.keys = None;
                        None
                    }
                },
                None => {
                    std::thread::sleep(wait);
                    None
                }
            };
            match key {
                None => {}
                Some(Key::Quit) => return Ok(false),
                Some(Key::Space) => {
                    let now = self.now();
                    self.clock.toggle_pause(now);
                }
                Some(Key::Right) => self.seek(1, pending)?,
                Some(Key::Left) => self.seek(-1, pending)?,
            }
        }
    }

    /// Moves playback by `steps` seek steps: the output up to the target goes into the screen
    /// model only (from the start of the file when going back), then the screen is drawn.
    fn seek(&mut self, steps: i64, pending: &mut Option<(i64, Step)>) -> Result<(), CliError> {
        let now = self.now();
        let target = self.clock.seek_target(steps, now);
        if self.screen.is_none() {
            return Ok(());
        }
        if steps < 0 {
            if self.source.path.as_os_str() == "-" {
                // Standard input can't be read again.
                return Ok(());
            }
            self.source = self.source.reopen()?;
            self.screen = Some(new_screen());
            *pending = self.source.next(self.screen.as_mut())?;
        }
        while let Some((at, _)) = pending {
            if *at > target {
                break;
            }
            if let Some((at, step)) = pending.take() {
                self.last_at = at;
                match (step, self.screen.as_mut()) {
                    (Step::Output(d), Some(s)) => s.process(&d),
                    (Step::Resize(size), Some(s)) => resize(s, size),
                    _ => {}
                }
            }
            *pending = self.source.next(self.screen.as_mut())?;
        }
        self.clock.jump(target, now);
        let drawn = match &self.screen {
            Some(s) => {
                let mut d = b"\x1b[H\x1b[2J".to_vec();
                d.extend_from_slice(s.screen().state_formatted().as_bytes());
                d
            }
            None => Vec::new(),
        };
        self.write(&drawn)
    }

    /// Plays to the end or until the user quits.
    fn run(&mut self) -> Result<(), CliError> {
        let mut pending = self.source.next(self.screen.as_mut())?;
        while pending.is_some() {
            if !self.wait_until(&mut pending)? {
                break;
            }
            if let Some((at, step)) = pending.take() {
                self.play_step(at, step)?;
            }
            pending = self.source.next(self.screen.as_mut())?;
        }
        if let Some((t, path)) = &mut self.timing {
            t.flush().map_err(|source| CliError::Write {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Terminal modes the recording may have left on (alternate screen, hidden cursor,
    /// application keys, bracketed paste, colours) are turned off.
    fn reset_terminal(&mut self) {
        let Some(s) = &self.screen else { return };
        let s = s.screen();
        let mut reset = Vec::new();
        if s.alternate_screen() {
            reset.extend_from_slice(b"\x1b[?1049l");
        }
        if s.application_cursor() {
            reset.extend_from_slice(b"\x1b[?1l");
        }
        if s.application_keypad() {
            reset.extend_from_slice(b"\x1b>");
        }
        if s.bracketed_paste() {
            reset.extend_from_slice(b"\x1b[?2004l");
        }
        reset.extend_from_slice(b"\x1b[0m\x1b[?25h");
        let _ = self.write(&reset);
    }
}

/// Reads keys from standard input (in raw mode) until `stop` is set or the receiver is gone.
fn key_reader(tx: mpsc::Sender<Key>, stop: Arc<AtomicBool>) {
    let stdin = std::io::stdin();
    let fd = std::os::fd::AsFd::as_fd(&stdin);
    let mut decoder = KeyDecoder::new();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Acquire) {
        match wait_readable(fd, TICK.as_millis() as i32) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => return,
        }
        let n = match read_fd(fd, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for k in decoder.decode(&buf[..n]) {
            if tx.send(k).is_err() {
                return;
            }
        }
    }
}

/// Runs `tapelog play`.
pub fn run(a: PlayArgs) -> Result<(), CliError> {
    if !(a.speed.is_finite() && a.speed > 0.0) {
        return Err(CliError::Usage(format!(
            "--speed {} must be a number above 0",
            a.speed
        )));
    }
    let max_idle_ms = match a.max_idle {
        None => None,
        Some(s) if s.is_finite() && s >= 0.0 => Some((s * 1000.0).round() as i64),
        Some(s) => {
            return Err(CliError::Usage(format!(
                "--max-idle {s} must be a number of seconds, 0 or more"
            )));
        }
    };
    let cluster = a.teleport.open(Some(&a.data.data_dir), &a.remote)?;
    let downloaded = match (cluster, a.remote.client(Some(&a.data.data_dir))?) {
        (Some(cluster), _) => {
            check_id("session id", &a.recording)?;
            Some(cluster.download_recording(&a.recording)?)
        }
        (None, None) => None,
        (None, Some(client)) => {
            check_id("session id", &a.recording)?;
            let rt = super::remote::runtime()?;
            Some(rt.block_on(super::remote::download_recording(&client, &a.recording))?)
        }
    };
    let path = match &downloaded {
        Some(d) => d.path().to_path_buf(),
        None => resolve(&a.recording, &a.data.data_dir)?,
    };
    let source = Source::open(&path, max_idle_ms, super::decode_jobs(a.jobs))?;
    let timing = match &a.timing {
        None => None,
        Some(p) => Some((
            std::io::BufWriter::new(std::fs::File::create(p).map_err(|source| {
                CliError::Write {
                    path: p.display().to_string(),
                    source,
                }
            })?),
            p.clone(),
        )),
    };
    let stdout = std::io::stdout();
    let interactive = is_terminal(std::os::fd::AsFd::as_fd(&stdout));
    let stdin = std::io::stdin();
    let keys_on =
        interactive && a.recording != "-" && is_terminal(std::os::fd::AsFd::as_fd(&stdin));

    let stop_keys = Arc::new(AtomicBool::new(false));
    let mut raw = None;
    let mut keys = None;
    let mut reader = None;
    if keys_on {
        raw = Some(
            RawMode::enable(std::os::fd::AsFd::as_fd(&stdin))
                .map_err(|e| CliError::Usage(format!("standard input: {e}")))?,
        );
        let (tx, rx) = mpsc::channel();
        let stop = stop_keys.clone();
        reader = Some(std::thread::spawn(move || key_reader(tx, stop)));
        keys = Some(rx);
    }
    if interactive {
        tapelog_term::pty::quit_on_signals();
    }
    let time = tapelog_audit::clock::system();
    let mut player = Player {
        source,
        out: stdout.lock(),
        out_name: "standard output",
        clock: PlayClock::new(a.speed, Duration::ZERO),
        time: time.clone(),
        epoch: time.now_mono(),
        screen: interactive.then(new_screen),
        timing,
        last_at: 0,
        keys,
    };
    let result = player.run();
    player.reset_terminal();
    stop_keys.store(true, Ordering::Release);
    if let Some(r) = reader {
        let _ = r.join();
    }
    drop(raw);
    result
}
