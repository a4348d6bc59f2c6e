//! `tapelog sessions list`: completed sessions (their end events) from the local audit log,
//! a server (`--server`) or a Teleport cluster (`--teleport`), as a table for people or Teleport JSON lines for scripts.

use std::io::Write;

use tapelog_audit::SessionQuery;
use tapelog_core::EventFields;

use super::CliError;
use super::emit::DataDirArgs;
use super::remote::{RemoteArgs, TeleportArgs};
use super::search::{OrderArg, Source, time_range};

/// `tapelog sessions ...`
#[derive(clap::Subcommand)]
pub enum SessionsCommand {
    /// List completed sessions (`session.end`, `windows.desktop.session.end`,
    /// `db.session.end`): session, user, login, server, start and duration.
    List(ListArgs),
}

/// Arguments of `tapelog sessions list`.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub teleport: TeleportArgs,
    /// Sessions that ended at or after this time (RFC 3339 or a date). Default: the epoch.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Sessions that ended at or before this time (RFC 3339 or a date: its end). Default:
    /// now.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Sessions per page (0 = 500, at most 10000).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Result order (by end time).
    #[arg(long, value_enum, default_value = "desc")]
    pub order: OrderArg,
    /// Start after this key (the `next-key` of the previous page).
    #[arg(long, default_value = "", value_name = "KEY")]
    pub start_key: String,
    /// Follow the keys to the last page.
    #[arg(long)]
    pub all: bool,
    /// The session end events as Teleport's JSON, one a line (the next key on standard error
    /// as `next-key: KEY`).
    #[arg(long)]
    pub json: bool,
}

/// Runs `tapelog sessions ...`.
pub fn run(cmd: SessionsCommand) -> Result<(), CliError> {
    match cmd {
        SessionsCommand::List(a) => list(a),
    }
}

/// One row of the table.
struct Row {
    session: String,
    user: String,
    login: String,
    server: String,
    start: String,
    duration: String,
}

fn first<'a>(f: &'a EventFields, keys: &[&str]) -> &'a str {
    keys.iter()
        .map(|k| f.get_string(k))
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

/// `1h02m03s`, `4m05s`, `6.7s`.
fn duration_text(nanos: i128) -> String {
    if nanos < 0 {
        return "?".into();
    }
    let secs = nanos / 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{}.{}s", s, nanos / 100_000_000 % 10)
    }
}

fn row(f: &EventFields) -> Row {
    let start = f.get_time("session_start");
    let stop = f.get_time("session_stop");
    let (start_text, duration) = if start.unix_nanos() > 0 {
        let d = if stop.unix_nanos() > 0 {
            duration_text(stop.unix_nanos() - start.unix_nanos())
        } else {
            "?".into()
        };
        (start.to_rfc3339(), d)
    } else {
        (f.get_string("time").to_string(), "?".into())
    };
    Row {
        session: f.get_session_id().to_string(),
        user: f.get_string("user").to_string(),
        login: first(f, &["login", "db_user", "windows_user"]).to_string(),
        server: first(
            f,
            &["server_hostname", "desktop_name", "db_service", "server_id"],
        )
        .to_string(),
        start: start_text,
        duration,
    }
}

fn list(a: ListArgs) -> Result<(), CliError> {
    let (from, to) = time_range(&a.from, &a.to)?;
    let source = Source::open(&a.data, &a.remote, &a.teleport)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let write_err = |source| CliError::Write {
        path: "standard output".into(),
        source,
    };
    let mut key = a.start_key.clone();
    let mut rows = Vec::new();
    loop {
        let page = source.sessions(&SessionQuery {
            from,
            to,
            limit: a.limit,
            order: a.order.into(),
            start_key: key.clone(),
            condition: None,
            session_id: String::new(),
        })?;
        for (json, f) in &page.events {
            if a.json {
                writeln!(out, "{json}").map_err(write_err)?;
            } else {
                rows.push(row(f));
            }
        }
        key = page.next_key;
        if !a.all || key.is_empty() {
            break;
        }
    }
    if a.json {
        out.flush().map_err(write_err)?;
        eprintln!("next-key: {key}");
        return Ok(());
    }
    let width = |get: fn(&Row) -> &str, title: &str| {
        rows.iter()
            .map(|r| get(r).chars().count())
            .fold(title.len(), usize::max)
    };
    let (ws, wu, wl, wv, wt) = (
        width(|r| &r.session, "SESSION"),
        width(|r| &r.user, "USER"),
        width(|r| &r.login, "LOGIN"),
        width(|r| &r.server, "SERVER"),
        width(|r| &r.start, "START"),
    );
    writeln!(
        out,
        "{:<ws$}  {:<wu$}  {:<wl$}  {:<wv$}  {:<wt$}  DURATION",
        "SESSION", "USER", "LOGIN", "SERVER", "START"
    )
    .map_err(write_err)?;
    for r in &rows {
        writeln!(
            out,
            "{:<ws$}  {:<wu$}  {:<wl$}  {:<wv$}  {:<wt$}  {}",
            r.session, r.user, r.login, r.server, r.start, r.duration
        )
        .map_err(write_err)?;
    }
    if key.is_empty() {
        writeln!(out, "({} session(s), end of results)", rows.len()).map_err(write_err)?;
    } else {
        writeln!(out, "({} session(s)) next-key: {key}", rows.len()).map_err(write_err)?;
    }
    out.flush().map_err(write_err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_text(4_898_000_000), "4.8s");
        assert_eq!(duration_text(245_000_000_000), "4m05s");
        assert_eq!(duration_text(3_723_000_000_000), "1h02m03s");
        assert_eq!(duration_text(-1), "?");
    }

    #[test]
    fn row_from_session_end() {
        let f = EventFields::parse(r#"{"event":"session.end","sid":"e3286c06-d0ec-4d84-aeab-75692b885e3b","user":"bob","login":"root","server_hostname":"node1","session_start":"2026-03-27T16:36:15.040647Z","session_stop":"2026-03-27T16:36:19.938249Z"}"#).unwrap();
        let r = row(&f);
        assert_eq!(r.session, "e3286c06-d0ec-4d84-aeab-75692b885e3b");
        assert_eq!(
            (r.user.as_str(), r.login.as_str(), r.server.as_str()),
            ("bob", "root", "node1")
        );
        assert_eq!(r.start, "2026-03-27T16:36:15.040647Z");
        assert_eq!(r.duration, "4.8s");
    }
}
