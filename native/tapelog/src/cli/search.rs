//! `tapelog search`: one page (or every page) of the file audit log, of the logs of
//! `--audit` (a database), of a server's (`--server`) or of a Teleport cluster's
//! (`--teleport`). [`Source`] is the audit log in each
//! case (also used by `sessions list`).

use std::io::Write;

use clap::ValueEnum;
use tapelog_audit::{
    AuditLog, Condition, FileLog, FileLogConfig, MultiLog, OpenOptions, Order, SearchPage,
    SearchQuery, SessionQuery, default_server_id,
};
use tapelog_client::Client;
use tapelog_core::audit::SESSION_RECORDING_EVENTS;
use tapelog_core::audit::files::DAY_SECONDS;
use tapelog_core::{EventFields, Timestamp};
use tapelog_teleport::EventQuery;

use super::CliError;
use super::emit::DataDirArgs;
use super::remote::{Cluster, RemoteArgs, TeleportArgs};

/// Result order.
#[derive(Clone, Copy, ValueEnum)]
pub enum OrderArg {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// Arguments of `tapelog search`.
#[derive(clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub teleport: TeleportArgs,
    /// Earliest event time, RFC 3339 or a date (`2024-01-15` = its midnight, UTC). Default:
    /// the Unix epoch.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Latest event time, RFC 3339 or a date (`2024-01-15` = the end of that day, UTC).
    /// Default: now.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Events per page (0 = 500, at most 10000).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Result order.
    #[arg(long, value_enum, default_value = "asc")]
    pub order: OrderArg,
    /// Start after this key (the `next-key` of the previous page, or an event id).
    #[arg(long, default_value = "", value_name = "KEY")]
    pub start_key: String,
    /// Completed sessions only (`session.end`, `windows.desktop.session.end`,
    /// `db.session.end`).
    #[arg(long, conflicts_with = "types")]
    pub sessions: bool,
    /// With `--sessions`: only this session.
    #[arg(long, requires = "sessions", value_name = "SID")]
    pub session_id: Option<String>,
    /// With `--sessions`: only events whose field equals the value (repeatable; all must
    /// hold), e.g. `--where user=bob`.
    #[arg(long = "where", requires = "sessions", value_name = "FIELD=VALUE")]
    pub conditions: Vec<String>,
    /// One event per line (the stored JSON) on standard output; the next key on standard
    /// error as `next-key: KEY`.
    #[arg(long)]
    pub json: bool,
    /// Follow the keys to the last page.
    #[arg(long)]
    pub all: bool,
}

/// Reads a `--from`/`--to` value: RFC 3339, or a bare date (its first or last nanosecond).
pub fn parse_time(s: &str, end_of_day: bool) -> Result<Timestamp, CliError> {
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    if s.len() == 10
        && let Some(t) = Timestamp::parse_rfc3339(&format!("{s}T00:00:00Z"))
    {
        if end_of_day {
            return Ok(Timestamp::from_unix_nanos(
                t.unix_nanos() + i128::from(DAY_SECONDS) * 1_000_000_000 - 1,
            ));
        }
        return Ok(t);
    }
    Err(CliError::Usage(format!(
        "{s:?} is not a time: use RFC 3339 (2024-01-15T10:00:00Z) or a date (2024-01-15)"
    )))
}

fn condition(conditions: &[String]) -> Result<Option<Condition>, CliError> {
    let mut all = Vec::new();
    for c in conditions {
        let Some((field, value)) = c.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--where {c:?}: expected FIELD=VALUE"
            )));
        };
        all.push(Condition::equals(field, value));
    }
    Ok(match all.len() {
        0 => None,
        1 => all.pop(),
        _ => Some(Condition::And(all)),
    })
}

/// A page of events as both sources give it: each event's JSON line and fields.
pub struct Page {
    /// The events: Teleport's JSON (one line) and its fields.
    pub events: Vec<(String, EventFields)>,
    /// The key of the next page; "" on the last.
    pub next_key: String,
}

/// The audit log a search reads: the local files or a server.
pub enum Source {
    /// The file audit log under a data directory.
    Local(FileLog),
    /// The logs of `--audit` (a database, files, …) and the runtime their calls run on.
    Logs(MultiLog, tokio::runtime::Runtime),
    /// A `tapelog serve` (with the runtime its calls run on).
    Remote(Client, tokio::runtime::Runtime),
    /// A Teleport cluster's Auth Service (`GetUnstructuredEvents` pages, the cluster's keys).
    Teleport(Cluster),
}

impl Source {
    /// The cluster of `--teleport`, else the server of `--server`, else the file log under
    /// `--data-dir`.
    pub fn open(
        data: &DataDirArgs,
        remote: &RemoteArgs,
        teleport: &TeleportArgs,
    ) -> Result<Source, CliError> {
        if let Some(cluster) = teleport.open(Some(&data.data_dir), remote)? {
            return Ok(Source::Teleport(cluster));
        }
        if let Some(client) = remote.client(Some(&data.data_dir))? {
            return Ok(Source::Remote(client, super::remote::runtime()?));
        }
        let uris = data.audit_uris();
        if !uris.is_empty() {
            let rt = super::remote::runtime()?;
            let options = OpenOptions {
                data_dir: data.data_dir.clone(),
                server_id: default_server_id(),
                durability: tapelog_audit::Durability::Write,
                metrics: tapelog_audit::metrics::Metrics::shared(),
            };
            let logs = rt.block_on(MultiLog::open(&uris, &options))?;
            return Ok(Source::Logs(logs, rt));
        }
        // A search reads every server directory; the server id only says where this process
        // would write, and it writes nothing.
        Ok(Source::Local(FileLog::open(FileLogConfig::new(
            &data.data_dir,
            &default_server_id(),
        ))?))
    }

    /// One page of events.
    pub fn events(&self, q: &SearchQuery) -> Result<Page, CliError> {
        match self {
            Source::Local(log) => Ok(local_page(log.search_events_blocking(q)?)),
            Source::Logs(logs, rt) => Ok(local_page(rt.block_on(logs.search_events(q.clone()))?)),
            Source::Remote(client, rt) => Ok(remote_page(rt.block_on(client.search_events(q))?)),
            Source::Teleport(c) => {
                let types = q.event_types.clone();
                let cq = cluster_query(q.from, q.to, types, q.limit, q.order, &q.start_key)?;
                cluster_page(c, &cq, |_| true)
            }
        }
    }

    /// One page of session end events.
    pub fn sessions(&self, q: &SessionQuery) -> Result<Page, CliError> {
        match self {
            Source::Local(log) => Ok(local_page(log.search_session_events_blocking(q)?)),
            Source::Logs(logs, rt) => Ok(local_page(
                rt.block_on(logs.search_session_events(q.clone()))?,
            )),
            Source::Remote(client, rt) => Ok(remote_page(rt.block_on(client.search_sessions(q))?)),
            Source::Teleport(c) => {
                let types = SESSION_RECORDING_EVENTS.map(String::from).to_vec();
                let cq = cluster_query(q.from, q.to, types, q.limit, q.order, &q.start_key)?;
                // The cluster filters by type; the session id and `--where` are applied here,
                // page by page (a page may come out shorter; its key still leads on).
                cluster_page(c, &cq, |f| {
                    (q.session_id.is_empty() || f.get_session_id() == q.session_id)
                        && q.condition.as_ref().is_none_or(|cond| cond.matches(f))
                })
            }
        }
    }
}

/// A page query of the cluster (`limit`: 0 = the server's 500, at most 10,000), from the
/// page key `start_key` (the cluster's `last_key`; "" for the first page).
fn cluster_query(
    from: Timestamp,
    to: Timestamp,
    event_types: Vec<String>,
    limit: usize,
    order: Order,
    start_key: &str,
) -> Result<EventQuery, CliError> {
    let limit = i32::try_from(limit)
        .ok()
        .filter(|l| *l <= 10_000)
        .ok_or_else(|| CliError::Usage(format!("--limit {limit}: at most 10000")))?;
    Ok(EventQuery {
        start: from,
        end: to,
        event_types,
        limit,
        start_key: start_key.to_string(),
        ascending: order == Order::Ascending,
    })
}

/// One page of the cluster, the events `keep` accepts, with the cluster's next key.
fn cluster_page(
    c: &Cluster,
    q: &EventQuery,
    keep: impl Fn(&EventFields) -> bool,
) -> Result<Page, CliError> {
    let page = c.page(q)?;
    let mut events = Vec::with_capacity(page.items.len());
    for (position, item) in page.items.into_iter().enumerate() {
        let fields = EventFields::parse(&item.json).map_err(|e| {
            tapelog_teleport::TeleportError::BadItem {
                addr: c.client.addr().to_string(),
                rpc: "GetUnstructuredEvents",
                position,
                what: format!("its JSON is not an event: {e}"),
            }
        })?;
        if keep(&fields) {
            events.push((item.json, fields));
        }
    }
    Ok(Page {
        events,
        next_key: page.last_key,
    })
}

fn local_page(page: SearchPage) -> Page {
    Page {
        events: page
            .events
            .into_iter()
            .map(|e| (e.json, e.fields))
            .collect(),
        next_key: page.next_key,
    }
}

/// A server's page (see [`tapelog_api::EventsPage::into_events`]).
fn remote_page(page: tapelog_api::EventsPage) -> Page {
    Page {
        next_key: page.next_key.clone(),
        events: page.into_events(),
    }
}

/// `--from`/`--to` with their defaults (the epoch; now).
pub fn time_range(
    from: &Option<String>,
    to: &Option<String>,
) -> Result<(Timestamp, Timestamp), CliError> {
    let from = match from {
        Some(s) => parse_time(s, false)?,
        None => Timestamp::from_unix_nanos(0),
    };
    let to = match to {
        Some(s) => parse_time(s, true)?,
        None => tapelog_audit::emit::system_clock(),
    };
    Ok((from, to))
}

impl From<OrderArg> for Order {
    fn from(o: OrderArg) -> Order {
        match o {
            OrderArg::Asc => Order::Ascending,
            OrderArg::Desc => Order::Descending,
        }
    }
}

/// Runs `tapelog search`.
pub fn run(a: SearchArgs) -> Result<(), CliError> {
    let (from, to) = time_range(&a.from, &a.to)?;
    let order = Order::from(a.order);
    let source = Source::open(&a.data, &a.remote, &a.teleport)?;
    let cond = condition(&a.conditions)?;
    let mut key = a.start_key.clone();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let write_err = |source| CliError::Write {
        path: "standard output".into(),
        source,
    };
    let mut header = !a.json;
    loop {
        let page = if a.sessions {
            source.sessions(&SessionQuery {
                from,
                to,
                limit: a.limit,
                order,
                start_key: key.clone(),
                condition: cond.clone(),
                session_id: a.session_id.clone().unwrap_or_default(),
            })?
        } else {
            source.events(&SearchQuery {
                from,
                to,
                event_types: a.types.clone(),
                limit: a.limit,
                order,
                start_key: key.clone(),
            })?
        };
        // The header after the first answer: a failed search prints only its error.
        if std::mem::take(&mut header) {
            writeln!(
                out,
                "{:<30}  {:<28}  {:<7}  {:<16}  SID",
                "TIME", "TYPE", "CODE", "USER"
            )
            .map_err(write_err)?;
        }
        for (json, f) in &page.events {
            if a.json {
                writeln!(out, "{json}").map_err(write_err)?;
            } else {
                writeln!(
                    out,
                    "{:<30}  {:<28}  {:<7}  {:<16}  {}",
                    f.get_string("time"),
                    f.get_type(),
                    f.get_code(),
                    f.get_string("user"),
                    f.get_session_id()
                )
                .map_err(write_err)?;
            }
        }
        key = page.next_key;
        if !a.all || key.is_empty() {
            break;
        }
    }
    out.flush().map_err(write_err)?;
    if a.json {
        eprintln!("next-key: {key}");
    } else if key.is_empty() {
        writeln!(out, "(end of results)").map_err(write_err)?;
    } else {
        writeln!(out, "next-key: {key}").map_err(write_err)?;
    }
    out.flush().map_err(write_err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn times() {
        let t = |s, end| parse_time(s, end).unwrap().to_rfc3339();
        assert_eq!(
            t("2024-01-15T10:00:00+01:00", false),
            "2024-01-15T09:00:00Z"
        );
        assert_eq!(t("2024-01-15", false), "2024-01-15T00:00:00Z");
        assert_eq!(t("2024-01-15", true), "2024-01-15T23:59:59.999999999Z");
        assert!(parse_time("yesterday", false).is_err());
        assert!(parse_time("2024-13-01", false).is_err());
    }
}
