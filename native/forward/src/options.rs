//! Every option of `tapelog forward`, from a flag, an environment variable or the TOML file,
//! with upstream's names.
//!
//! Precedence: flag > environment > TOML (`--config`) > default.
//!
//! - **Environment.** Each option `--a-b` is read from `FDFWD_A_B` and, as an alias, from
//!   `FDWRD_A_B` (upstream misspelt several of its variables `FDWRD_*`; deployments that use
//!   either spelling keep working). `--fluentd-max-connections` is also read from upstream's
//!   `FDFWD_MAX_CONNECTIONS` / `FDWRD_MAX_CONNECTIONS`. When both spellings are set, `FDFWD_`
//!   wins.
//! - **TOML.** As upstream's resolver: for `--a-b-c` the dotted key `a.b.c` (section `[a.b]`,
//!   key `c`), then the shorter splits (`[a] b-c`), then the literal `a-b-c`; flags that start
//!   with `fluentd-` are read from `[forward.fluentd]` (`fluentd-session-url` →
//!   `[forward.fluentd] session-url`). Unknown keys are ignored, as upstream does.
//! - **Values.** Durations in Go syntax (`5s`, `1m30s`, `24h`, `87600h`, `250ms`); lists
//!   comma-separated (or a TOML array); booleans `true`/`false`/`1`/`0`.

use std::path::PathBuf;
use std::time::Duration;
use tapelog_api::layers::pick;

use tapelog_core::Timestamp;
use thiserror::Error;

/// Why the options can't be used.
#[derive(Debug, Error)]
pub enum OptionsError {
    /// A value can't be read.
    #[error("{option}: {value:?} {reason}")]
    Value {
        /// The option (`--timeout`).
        option: String,
        /// The value given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A required option is missing.
    #[error(
        "{option} is required (flag {option}, variable {env}, or `{toml}` in the --config file)"
    )]
    Missing {
        /// The flag.
        option: String,
        /// Its environment variable.
        env: String,
        /// Its TOML key.
        toml: String,
    },
    /// Options that don't go together.
    #[error("{0}")]
    Conflict(String),
    /// The TOML file can't be read.
    #[error("config file {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// `tapelog forward`'s flags as given on the command line (`None`: not given). Resolve them
/// with [`ForwardArgs::resolve`].
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ForwardArgs {
    /// TOML file with upstream's `[forward.fluentd]` and `[teleport]` sections
    /// (FDFWD_CONFIG).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<String>,
    /// The `tapelog serve` to read from, `HOST:PORT` (https) or a URL; also names the state
    /// directory `<storage>/<host>_<port>` (FDFWD_TELEPORT_ADDR; default `localhost:3025`).
    #[arg(long, value_name = "ADDR")]
    pub teleport_addr: Option<String>,
    /// CA certificate (PEM) of the server (FDFWD_TELEPORT_CA).
    #[arg(long, value_name = "FILE")]
    pub teleport_ca: Option<String>,
    /// Client certificate (PEM) for the server (FDFWD_TELEPORT_CERT, upstream's
    /// FDWRD_TELEPORT_CERT).
    #[arg(long, value_name = "FILE")]
    pub teleport_cert: Option<String>,
    /// The client certificate's key (PEM) (FDFWD_TELEPORT_KEY).
    #[arg(long, value_name = "FILE")]
    pub teleport_key: Option<String>,
    /// One PEM file holding the client certificate, its key and the CA; instead of
    /// --teleport-cert/key/ca (FDFWD_TELEPORT_IDENTITY).
    #[arg(long, value_name = "FILE")]
    pub teleport_identity: Option<String>,
    /// Re-read the identity file every --teleport-refresh-interval
    /// (FDFWD_TELEPORT_REFRESH_ENABLED).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub teleport_refresh_enabled: Option<String>,
    /// How often the identity file is re-read (FDFWD_TELEPORT_REFRESH_INTERVAL; default 1m).
    #[arg(long, value_name = "DURATION")]
    pub teleport_refresh_interval: Option<String>,
    /// Read a local tapelog data directory instead of a server (FDFWD_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Fluentd URL for audit events: `https://host:8888/test.log` (in_http; the path is the
    /// tag) (FDFWD_FLUENTD_URL; required).
    #[arg(long, value_name = "URL")]
    pub fluentd_url: Option<String>,
    /// Fluentd URL prefix for session events; `.<sid>.log` is appended
    /// (FDFWD_FLUENTD_SESSION_URL; required).
    #[arg(long, value_name = "URL")]
    pub fluentd_session_url: Option<String>,
    /// CA certificate (PEM) that signed Fluentd's certificate (FDFWD_FLUENTD_CA, upstream's
    /// FDWRD_FLUENTD_CA).
    #[arg(long, value_name = "FILE")]
    pub fluentd_ca: Option<String>,
    /// Client certificate (PEM) presented to Fluentd (FDFWD_FLUENTD_CERT).
    #[arg(long, value_name = "FILE")]
    pub fluentd_cert: Option<String>,
    /// The client certificate's key (PEM) (FDFWD_FLUENTD_KEY).
    #[arg(long, value_name = "FILE")]
    pub fluentd_key: Option<String>,
    /// Requests to Fluentd in flight at most, audit and sessions together; 0 = 2 ×
    /// --concurrency (FDFWD_FLUENTD_MAX_CONNECTIONS, upstream's FDWRD_MAX_CONNECTIONS).
    #[arg(long, value_name = "N")]
    pub fluentd_max_connections: Option<String>,
    /// State directory (FDFWD_STORAGE; required).
    #[arg(long, value_name = "DIR")]
    pub storage: Option<String>,
    /// Events per page read from the source (FDFWD_BATCH; default 20); a request carries
    /// up to 1000 events read while the previous one was in flight.
    #[arg(long, value_name = "N")]
    pub batch: Option<String>,
    /// Only these event types, comma-separated (FDFWD_TYPES; default all).
    #[arg(long, value_name = "TYPES")]
    pub types: Option<String>,
    /// Audit event types not sent, comma-separated (FDFWD_SKIP_EVENT_TYPES).
    #[arg(long, value_name = "TYPES")]
    pub skip_event_types: Option<String>,
    /// Session event types not sent, comma-separated; '' sends all (FDFWD_SKIP_SESSION_TYPES;
    /// default print).
    #[arg(long, value_name = "TYPES")]
    pub skip_session_types: Option<String>,
    /// Export events from this time, RFC 3339; can't change once stored (FDFWD_START_TIME;
    /// default now).
    #[arg(long, value_name = "TIME")]
    pub start_time: Option<String>,
    /// Poll interval when no new events are found (FDFWD_TIMEOUT; default 5s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Start from this page key when no cursor is stored (FDFWD_CURSOR).
    #[arg(long, value_name = "KEY")]
    pub cursor: Option<String>,
    /// Sessions exported at once (FDFWD_CONCURRENCY; default 5).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<String>,
    /// Time span of one search window (FDFWD_WINDOW_SIZE; default 24h).
    #[arg(long, value_name = "DURATION")]
    pub window_size: Option<String>,
    /// Send nothing; use a separate state directory (FDFWD_DRY_RUN).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub dry_run: Option<String>,
    /// Exit once every event is exported instead of polling (FDFWD_EXIT_ON_LAST_EVENT).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub exit_on_last_event: Option<String>,
    /// Debug logging (FDFWD_DEBUG).
    #[arg(short = 'd', long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub debug: Option<String>,
    /// Lock a user's login after too many failed logins (`UpsertLock` on a Teleport cluster;
    /// FDFWD_LOCKING_ENABLED).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub lock_enabled: Option<String>,
    /// Failed logins allowed per login and --lock-period (FDFWD_LOCKING_FAILED_ATTEMPTS;
    /// default 3).
    #[arg(long, value_name = "N")]
    pub lock_failed_attempts_count: Option<String>,
    /// The period failed logins are counted over (FDFWD_LOCKING_PERIOD; default 1m).
    #[arg(long, value_name = "DURATION")]
    pub lock_period: Option<String>,
    /// How long a lock lasts; 0 = for ever (FDFWD_LOCKING_FOR; default 0).
    #[arg(long, value_name = "DURATION")]
    pub lock_for: Option<String>,
}

/// The resolved options.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardOptions {
    /// `--teleport-addr`.
    pub teleport_addr: String,
    /// `--teleport-ca`.
    pub teleport_ca: Option<PathBuf>,
    /// `--teleport-cert`.
    pub teleport_cert: Option<PathBuf>,
    /// `--teleport-key`.
    pub teleport_key: Option<PathBuf>,
    /// `--teleport-identity`.
    pub teleport_identity: Option<PathBuf>,
    /// `--teleport-refresh-enabled`.
    pub teleport_refresh_enabled: bool,
    /// `--teleport-refresh-interval`.
    pub teleport_refresh_interval: Duration,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--fluentd-url`.
    pub fluentd_url: String,
    /// `--fluentd-session-url`.
    pub fluentd_session_url: String,
    /// `--fluentd-ca`.
    pub fluentd_ca: Option<PathBuf>,
    /// `--fluentd-cert`.
    pub fluentd_cert: Option<PathBuf>,
    /// `--fluentd-key`.
    pub fluentd_key: Option<PathBuf>,
    /// `--fluentd-max-connections`, 0 resolved to 2 × concurrency.
    pub fluentd_max_connections: usize,
    /// `--storage`.
    pub storage: PathBuf,
    /// `--batch`.
    pub batch: usize,
    /// `--types`.
    pub types: Vec<String>,
    /// `--skip-event-types`.
    pub skip_event_types: Vec<String>,
    /// `--skip-session-types`.
    pub skip_session_types: Vec<String>,
    /// `--start-time`.
    pub start_time: Option<Timestamp>,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--cursor`.
    pub cursor: Option<String>,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--window-size`.
    pub window_size: Duration,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--exit-on-last-event`.
    pub exit_on_last_event: bool,
    /// `--debug`.
    pub debug: bool,
    /// `--lock-enabled`.
    pub lock_enabled: bool,
    /// `--lock-failed-attempts-count`.
    pub lock_failed_attempts_count: u32,
    /// `--lock-period`.
    pub lock_period: Duration,
    /// `--lock-for` (zero: for ever).
    pub lock_for: Duration,
    /// When a missing recording is tried again: after the first wait, then after every
    /// second one (upstream: about 1 m, then about 3 m). Not a flag: the environment
    /// variable `TAPELOG_MISSING_RECORDING_RETRY=FIRST,EVERY` (e.g. `1m,3m`), for tests and
    /// for clusters whose uploads take longer.
    pub missing_retry: (Duration, Duration),
}

/// The environment variable of [`ForwardOptions::missing_retry`].
pub const MISSING_RETRY_ENV: &str = "TAPELOG_MISSING_RECORDING_RETRY";

/// The options and their defaults, in the order of [`ForwardArgs`].
const DEFAULTS: &[(&str, Option<&str>)] = &[
    ("teleport-addr", Some("localhost:3025")),
    ("teleport-refresh-interval", Some("1m")),
    ("fluentd-max-connections", Some("0")),
    ("batch", Some("20")),
    ("skip-session-types", Some("print")),
    ("timeout", Some("5s")),
    ("concurrency", Some("5")),
    ("window-size", Some("24h")),
    ("lock-failed-attempts-count", Some("3")),
    ("lock-period", Some("1m")),
    ("lock-for", Some("0")),
];

/// The environment variable names of `--name`: `FDFWD_NAME`, `FDWRD_NAME` (and upstream's
/// `*_MAX_CONNECTIONS` for `--fluentd-max-connections`), in the order they are read.
pub fn env_names(name: &str) -> Vec<String> {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    let mut out = vec![format!("FDFWD_{upper}"), format!("FDWRD_{upper}")];
    if name == "fluentd-max-connections" {
        out.push("FDFWD_MAX_CONNECTIONS".into());
        out.push("FDWRD_MAX_CONNECTIONS".into());
    }
    // Upstream's lock variables are named LOCKING_* (its flags lock-*).
    let locking = match name {
        "lock-enabled" => Some("LOCKING_ENABLED"),
        "lock-failed-attempts-count" => Some("LOCKING_FAILED_ATTEMPTS"),
        "lock-period" => Some("LOCKING_PERIOD"),
        "lock-for" => Some("LOCKING_FOR"),
        _ => None,
    };
    if let Some(l) = locking {
        out.insert(0, format!("FDWRD_{l}"));
        out.insert(0, format!("FDFWD_{l}"));
    }
    out
}

/// The TOML paths tried for `--name`, first match wins (see the module documentation).
pub fn toml_paths(name: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if let Some(rest) = name.strip_prefix("fluentd-") {
        let mut splits = splits(rest);
        for s in &mut splits {
            s.insert(0, "fluentd".into());
            s.insert(0, "forward".into());
        }
        out.extend(splits);
    }
    out.extend(splits(name));
    out
}

/// `a-b-c` → `[a,b,c]`, `[a,b-c]`, `[a-b-c]`.
fn splits(name: &str) -> Vec<Vec<String>> {
    let parts: Vec<&str> = name.split('-').collect();
    (1..=parts.len())
        .rev()
        .map(|tables| {
            let mut path: Vec<String> = parts[..tables - 1].iter().map(|s| s.to_string()).collect();
            path.push(parts[tables - 1..].join("-"));
            path
        })
        .collect()
}

fn toml_value(doc: &toml::Table, name: &str) -> Option<String> {
    for path in toml_paths(name) {
        let mut table = doc;
        let (last, tables) = path.split_last()?;
        let mut ok = true;
        for t in tables {
            match table.get(t.as_str()) {
                Some(toml::Value::Table(inner)) => table = inner,
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        let text = match table.get(last.as_str()) {
            None | Some(toml::Value::Table(_)) => continue,
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            Some(other) => other.to_string(),
        };
        return Some(text);
    }
    None
}

/// Reads a Go duration (`300ms`, `1.5h`, `2h45m`, `87600h`; units ns, us, µs, ms, s, m, h;
/// a bare `0` is zero; surrounding blanks and a leading `+` allowed): the rules of
/// [`super::configure::parse_go_duration`], which names what is wrong.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    super::configure::parse_go_duration(s.strip_prefix('+').unwrap_or(s)).ok()
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The `--config` file's text as a TOML table; `origin` names the file in the error.
fn parse_config(text: &str, origin: &str) -> Result<toml::Table, OptionsError> {
    text.parse::<toml::Table>()
        .map_err(|e| OptionsError::Config {
            path: origin.into(),
            reason: e.to_string(),
        })
}

impl ForwardArgs {
    fn flag(&self, name: &str) -> Option<&String> {
        match name {
            "config" => self.config.as_ref(),
            "teleport-addr" => self.teleport_addr.as_ref(),
            "teleport-ca" => self.teleport_ca.as_ref(),
            "teleport-cert" => self.teleport_cert.as_ref(),
            "teleport-key" => self.teleport_key.as_ref(),
            "teleport-identity" => self.teleport_identity.as_ref(),
            "teleport-refresh-enabled" => self.teleport_refresh_enabled.as_ref(),
            "teleport-refresh-interval" => self.teleport_refresh_interval.as_ref(),
            "data-dir" => self.data_dir.as_ref(),
            "fluentd-url" => self.fluentd_url.as_ref(),
            "fluentd-session-url" => self.fluentd_session_url.as_ref(),
            "fluentd-ca" => self.fluentd_ca.as_ref(),
            "fluentd-cert" => self.fluentd_cert.as_ref(),
            "fluentd-key" => self.fluentd_key.as_ref(),
            "fluentd-max-connections" => self.fluentd_max_connections.as_ref(),
            "storage" => self.storage.as_ref(),
            "batch" => self.batch.as_ref(),
            "types" => self.types.as_ref(),
            "skip-event-types" => self.skip_event_types.as_ref(),
            "skip-session-types" => self.skip_session_types.as_ref(),
            "start-time" => self.start_time.as_ref(),
            "timeout" => self.timeout.as_ref(),
            "cursor" => self.cursor.as_ref(),
            "concurrency" => self.concurrency.as_ref(),
            "window-size" => self.window_size.as_ref(),
            "dry-run" => self.dry_run.as_ref(),
            "exit-on-last-event" => self.exit_on_last_event.as_ref(),
            "debug" => self.debug.as_ref(),
            "lock-enabled" => self.lock_enabled.as_ref(),
            "lock-failed-attempts-count" => self.lock_failed_attempts_count.as_ref(),
            "lock-period" => self.lock_period.as_ref(),
            "lock-for" => self.lock_for.as_ref(),
            _ => None,
        }
    }

    /// Resolves the options with the process environment.
    pub fn resolve(&self) -> Result<ForwardOptions, OptionsError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// Resolves the options with `env` as the environment (tests).
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ForwardOptions, OptionsError> {
        let from_env = |name: &str| env_names(name).into_iter().find_map(|n| env(&n));
        let config =
            pick(self.flag("config").cloned(), || from_env("config"), || None).map(|l| l.value);
        let doc = match config.as_deref().filter(|c| !c.is_empty()) {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| OptionsError::Config {
                    path: path.into(),
                    reason: e.to_string(),
                })?;
                parse_config(&text, path)?
            }
        };
        self.resolve_doc(&doc, env)
    }

    /// Resolves the options with `text` as the `--config` file's contents (`origin` names it
    /// in errors) and `env` as the environment; the `--config` flag and variable are not read.
    pub fn resolve_with_config_text(
        &self,
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ForwardOptions, OptionsError> {
        self.resolve_doc(&parse_config(text, origin)?, env)
    }

    fn resolve_doc(
        &self,
        doc: &toml::Table,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ForwardOptions, OptionsError> {
        let from_env = |name: &str| env_names(name).into_iter().find_map(|n| env(&n));
        let get = |name: &str| -> Option<String> {
            pick(
                self.flag(name).cloned(),
                || from_env(name),
                || toml_value(doc, name),
            )
            .map(|l| l.value)
            .or_else(|| {
                DEFAULTS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, d)| d.map(String::from))
            })
        };
        let bad = |name: &str, value: &str, reason: &str| OptionsError::Value {
            option: format!("--{name}"),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let path = |name: &str| get(name).filter(|s| !s.is_empty()).map(PathBuf::from);
        let boolean = |name: &str| -> Result<bool, OptionsError> {
            match get(name).as_deref().map(str::trim) {
                None | Some("") => Ok(false),
                Some("true" | "1" | "yes" | "on") => Ok(true),
                Some("false" | "0" | "no" | "off") => Ok(false),
                Some(v) => Err(bad(name, v, "is not true or false")),
            }
        };
        let number = |name: &str| -> Result<usize, OptionsError> {
            let v = get(name).unwrap_or_default();
            v.trim()
                .parse()
                .map_err(|_| bad(name, &v, "is not a whole number"))
        };
        let duration = |name: &str| -> Result<Duration, OptionsError> {
            let v = get(name).unwrap_or_default();
            parse_go_duration(&v).ok_or_else(|| bad(name, &v, "is not a duration like 5s, 1m, 24h"))
        };
        let required = |name: &str| -> Result<String, OptionsError> {
            get(name).filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                let toml = toml_paths(name)
                    .first()
                    .map(|p| match p.split_last() {
                        Some((k, t)) if !t.is_empty() => format!("[{}] {k}", t.join(".")),
                        _ => p.join("."),
                    })
                    .unwrap_or_default();
                OptionsError::Missing {
                    option: format!("--{name}"),
                    env: env_names(name).join(" or "),
                    toml,
                }
            })
        };

        let concurrency = number("concurrency")?;
        if concurrency == 0 {
            return Err(bad("concurrency", "0", "must be at least 1"));
        }
        let batch = number("batch")?;
        if batch == 0 || batch > 10_000 {
            return Err(bad("batch", &batch.to_string(), "must be 1 to 10000"));
        }
        let max_conn = match number("fluentd-max-connections")? {
            0 => 2 * concurrency,
            n => n,
        };
        let start_time = match get("start-time").filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(s) => Some(
                Timestamp::parse_rfc3339(s.trim())
                    .ok_or_else(|| bad("start-time", &s, "is not an RFC 3339 time"))?,
            ),
        };
        let window_size = duration("window-size")?;
        if window_size.is_zero() {
            return Err(bad("window-size", "0", "must be longer than zero"));
        }
        let missing_retry = match env(MISSING_RETRY_ENV).filter(|v| !v.trim().is_empty()) {
            None => (Duration::from_secs(60), Duration::from_secs(180)),
            Some(v) => {
                let parsed = v.split_once(',').and_then(|(a, b)| {
                    Some((parse_go_duration(a.trim())?, parse_go_duration(b.trim())?))
                });
                parsed
                    .filter(|(_, every)| !every.is_zero())
                    .ok_or_else(|| OptionsError::Value {
                        option: MISSING_RETRY_ENV.into(),
                        value: v.clone(),
                        reason: "is not FIRST,EVERY durations like 1m,3m (EVERY above zero)".into(),
                    })?
            }
        };
        let opts = ForwardOptions {
            missing_retry,
            teleport_addr: get("teleport-addr").unwrap_or_default(),
            teleport_ca: path("teleport-ca"),
            teleport_cert: path("teleport-cert"),
            teleport_key: path("teleport-key"),
            teleport_identity: path("teleport-identity"),
            teleport_refresh_enabled: boolean("teleport-refresh-enabled")?,
            teleport_refresh_interval: duration("teleport-refresh-interval")?,
            data_dir: path("data-dir"),
            fluentd_url: required("fluentd-url")?,
            fluentd_session_url: required("fluentd-session-url")?,
            fluentd_ca: path("fluentd-ca"),
            fluentd_cert: path("fluentd-cert"),
            fluentd_key: path("fluentd-key"),
            fluentd_max_connections: max_conn,
            storage: PathBuf::from(required("storage")?),
            batch,
            types: list(&get("types").unwrap_or_default()),
            skip_event_types: list(&get("skip-event-types").unwrap_or_default()),
            skip_session_types: list(&get("skip-session-types").unwrap_or_default()),
            start_time,
            timeout: duration("timeout")?,
            cursor: get("cursor").filter(|s| !s.is_empty()),
            concurrency,
            window_size,
            dry_run: boolean("dry-run")?,
            exit_on_last_event: boolean("exit-on-last-event")?,
            debug: boolean("debug")?,
            lock_enabled: boolean("lock-enabled")?,
            lock_failed_attempts_count: u32::try_from(number("lock-failed-attempts-count")?)
                .unwrap_or(u32::MAX),
            lock_period: duration("lock-period")?,
            lock_for: duration("lock-for")?,
        };
        opts.check()?;
        Ok(opts)
    }
}

impl ForwardOptions {
    /// Upstream's `Check()`: credentials that go together.
    pub fn check(&self) -> Result<(), OptionsError> {
        if self.fluentd_cert.is_some() != self.fluentd_key.is_some() {
            return Err(OptionsError::Conflict(
                "--fluentd-cert and --fluentd-key must be given together (a client certificate needs its key)".into(),
            ));
        }
        if self.data_dir.is_none() {
            let parts = [&self.teleport_cert, &self.teleport_key, &self.teleport_ca];
            let given = parts.iter().filter(|p| p.is_some()).count();
            if self.teleport_identity.is_some() && given > 0 {
                return Err(OptionsError::Conflict(
                    "--teleport-identity can't be combined with --teleport-cert, --teleport-key or --teleport-ca".into(),
                ));
            }
            if given != 0 && given != 3 {
                return Err(OptionsError::Conflict(
                    "--teleport-cert, --teleport-key and --teleport-ca must be given together"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("5s"), Some(Duration::from_secs(5)));
        assert_eq!(d("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(d("87600h"), Some(Duration::from_secs(87600 * 3600)));
        assert_eq!(d("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "-1s", "5x", "1h-1m"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn config_text_resolves_like_a_config_file() {
        let text = "storage = \"/s\"\nbatch = 7\n[forward.fluentd]\nurl = \"https://f/a.log\"\nsession-url = \"https://f/s\"\n";
        let o = ForwardArgs::default()
            .resolve_with_config_text(text, "f.toml", |_| None)
            .unwrap();
        assert_eq!(o.storage, PathBuf::from("/s"));
        assert_eq!(o.batch, 7);
        assert_eq!(o.fluentd_url, "https://f/a.log");
        assert_eq!(o.fluentd_max_connections, 10);
        let env = |n: &str| (n == "FDFWD_BATCH").then(|| "9".to_string());
        let o = ForwardArgs::default()
            .resolve_with_config_text(text, "f.toml", env)
            .unwrap();
        assert_eq!(o.batch, 9);
        match ForwardArgs::default().resolve_with_config_text("a = ", "f.toml", |_| None) {
            Err(OptionsError::Config { path, .. }) => assert_eq!(path, "f.toml"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn toml_paths_follow_upstream() {
        let p = toml_paths("fluentd-session-url");
        assert_eq!(p[0], ["forward", "fluentd", "session", "url"]);
        assert_eq!(p[1], ["forward", "fluentd", "session-url"]);
        assert_eq!(
            toml_paths("teleport-refresh-enabled")[0],
            ["teleport", "refresh", "enabled"]
        );
        assert_eq!(toml_paths("storage"), [["storage"]]);
        assert_eq!(
            env_names("teleport-cert"),
            ["FDFWD_TELEPORT_CERT", "FDWRD_TELEPORT_CERT"]
        );
    }
}
