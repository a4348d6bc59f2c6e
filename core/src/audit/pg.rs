//! The rules of the PostgreSQL/CockroachDB audit log (upstream's `lib/events/pgevents`),
//! without any I/O: what the native `PgLog` writes, asks and parses.
//!
//! - [`session_uuid`]: the `session_id` column for an event's `sid` (upstream's derivation);
//! - [`event_uuid`]: the `event_id` column, derived from the event's `uid` so that a retried
//!   insert of the same event is a no-op (upstream draws a random one per call);
//! - [`PageKey`]: upstream's 24-byte page key (event time in µs, `event_id`), base64url;
//! - [`PgUrl`]: a `postgres://` URI split into what the driver takes, the TLS settings tapelog
//!   applies itself, the pool size, and upstream's `#fragment` options;
//! - [`sql`]: the statements (schema, insert, search, retention), for PostgreSQL and for
//!   CockroachDB.
//!
//! The table, columns, indexes, version table and key format are upstream's, so that Teleport
//! and tapelog pointed at one database read each other's events (docs/audit-log.md).

use std::time::Duration;

use base64::Engine;
use thiserror::Error;

/// A 16-byte UUID (big-endian, as PostgreSQL's `uuid` type sends it).
pub type Uuid = [u8; 16];

/// The all-zero UUID: the `session_id` of an event without a session.
pub const NIL_UUID: Uuid = [0; 16];

/// The namespace of upstream's UUIDv5 for session ids that are not UUIDs.
pub const SESSION_NAMESPACE: Uuid = [
    0xe4, 0x81, 0xe2, 0x21, 0x77, 0xb0, 0x4b, 0x9e, 0xbe, 0x98, 0xbc, 0x2e, 0x48, 0x6b, 0x75, 0x1b,
];

/// tapelog's namespace for `event_id`s derived from a `uid` that is not a UUID.
pub const EVENT_NAMESPACE: Uuid = [
    0x5a, 0x0c, 0x3e, 0x6f, 0x2b, 0x41, 0x4c, 0x8d, 0x9e, 0x17, 0x6d, 0x0b, 0x73, 0xa4, 0x21, 0xc5,
];

/// Parses a UUID as Go's `uuid.Parse` does: 36 characters with hyphens, 38 in braces, 45
/// with `urn:uuid:`, or 32 hex digits.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    let hex = match s.len() {
        32 => s.to_string(),
        36 => hyphenated(s)?,
        38 if s.starts_with('{') && s.ends_with('}') => hyphenated(&s[1..37])?,
        45 if s
            .get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:uuid:")) =>
        {
            hyphenated(&s[9..])?
        }
        _ => return None,
    };
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hyphenated(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    (hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// The canonical text of a UUID (`xxxxxxxx-xxxx-…`, lower case).
pub fn format_uuid(u: &Uuid) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
    }
    s
}

/// A name-based UUID, version 5 (SHA-1), as RFC 9562 defines it.
pub fn uuid_v5(namespace: &Uuid, name: &[u8]) -> Uuid {
    let mut input = Vec::with_capacity(16 + name.len());
    input.extend_from_slice(namespace);
    input.extend_from_slice(name);
    let digest = sha1(&input);
    let mut u = [0u8; 16];
    u.copy_from_slice(&digest[..16]);
    u[6] = (u[6] & 0x0f) | 0x50;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// SHA-1 of `data` (FIPS 180-4). Written here because it is the only use and it is short;
/// it names UUIDs, it protects nothing.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// The `session_id` column for an event whose `sid` is `sid`, as upstream's
/// `deriveSessionID`: "" → the zero UUID, a UUID → itself, anything else (app session ids are
/// 64 hex digits) → the UUIDv5 of its bytes in [`SESSION_NAMESPACE`].
pub fn session_uuid(sid: &str) -> Uuid {
    if sid.is_empty() {
        return NIL_UUID;
    }
    parse_uuid(sid).unwrap_or_else(|| uuid_v5(&SESSION_NAMESPACE, sid.as_bytes()))
}

/// The `event_id` column for an event whose `uid` is `uid`: the uid itself when it is a UUID
/// (tapelog's and Teleport's uids are), else the UUIDv5 of its bytes in [`EVENT_NAMESPACE`].
///
/// Upstream draws a random id per insert, so an emit retried after a lost answer is stored
/// twice; with the id derived from the uid, the retried insert hits the primary key
/// `(event_time, event_id)` and `ON CONFLICT DO NOTHING` drops it. `uid` must not be empty
/// (the checking emitter fills it).
pub fn event_uuid(uid: &str) -> Uuid {
    parse_uuid(uid).unwrap_or_else(|| uuid_v5(&EVENT_NAMESPACE, uid.as_bytes()))
}

/// A page key that can't be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed pagination key {key:?}: {reason}")]
pub struct PgKeyError {
    /// The key (cut to 100 characters).
    pub key: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Upstream's page key: the last returned row's `event_time` in microseconds since the Unix
/// epoch and its `event_id`, as 24 bytes (`u64` little-endian, then the UUID's 16 bytes) in
/// padded base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageKey {
    /// `event_time.UnixMicro()`.
    pub micros: i64,
    /// `event_id`.
    pub event_id: Uuid,
}

impl PageKey {
    /// The key's text.
    pub fn encode(&self) -> String {
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&(self.micros as u64).to_le_bytes());
        raw[8..].copy_from_slice(&self.event_id);
        base64::engine::general_purpose::URL_SAFE.encode(raw)
    }

    /// Reads a key made by [`PageKey::encode`] (or by Teleport).
    pub fn decode(key: &str) -> Result<PageKey, PgKeyError> {
        let err = |reason| PgKeyError {
            key: key.chars().take(100).collect(),
            reason,
        };
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(key)
            .map_err(|_| err("not padded base64url"))?;
        if raw.len() != 24 {
            return Err(err("not 24 bytes"));
        }
        let mut micros = [0u8; 8];
        micros.copy_from_slice(&raw[..8]);
        let mut event_id = [0u8; 16];
        event_id.copy_from_slice(&raw[8..]);
        Ok(PageKey {
            micros: u64::from_le_bytes(micros) as i64,
            event_id,
        })
    }
}

/// The position of tapelog's arrival-order feed over the events table: the last row read, by
/// `(creation_time, event_time, event_id)` (its insert time first). Text: `p1:` and the
/// unpadded base64url of 32 bytes (two little-endian `i64` µs, the id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedPosition {
    /// `creation_time` in µs since the Unix epoch.
    pub created_micros: i64,
    /// `event_time` in µs since the Unix epoch.
    pub time_micros: i64,
    /// `event_id`.
    pub event_id: Uuid,
}

/// The prefix of a database feed key.
pub const FEED_KEY_PREFIX: &str = "p1:";

impl FeedPosition {
    /// The key's text.
    pub fn encode(&self) -> String {
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&self.created_micros.to_le_bytes());
        raw[8..16].copy_from_slice(&self.time_micros.to_le_bytes());
        raw[16..].copy_from_slice(&self.event_id);
        format!(
            "{FEED_KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }

    /// Reads a key: "" is the beginning (`None`).
    pub fn decode(key: &str) -> Result<Option<FeedPosition>, PgKeyError> {
        if key.is_empty() {
            return Ok(None);
        }
        let err = |reason| PgKeyError {
            key: key.chars().take(100).collect(),
            reason,
        };
        let body = key
            .strip_prefix(FEED_KEY_PREFIX)
            .ok_or_else(|| err("not a database feed key (p1:…)"))?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| err("not base64url"))?;
        if raw.len() != 32 {
            return Err(err("not 32 bytes"));
        }
        let i64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[i..i + 8]);
            i64::from_le_bytes(b)
        };
        let mut event_id = [0u8; 16];
        event_id.copy_from_slice(&raw[16..]);
        Ok(Some(FeedPosition {
            created_micros: i64_at(0),
            time_micros: i64_at(8),
            event_id,
        }))
    }
}

/// Microseconds since the Unix epoch of a time given in nanoseconds, rounded down (what
/// PostgreSQL keeps of a `timestamptz`).
pub fn unix_micros(nanos: i128) -> i64 {
    nanos.div_euclid(1000) as i64
}

/// Why a `postgres://` URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("audit URI {uri}: {reason}")]
pub struct PgUrlError {
    /// The URI with its password hidden.
    pub uri: String,
    /// What is wrong.
    pub reason: String,
}

/// How the connection uses TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified (libpq's `allow` and `prefer`; the default).
    Prefer,
    /// TLS required; the certificate is verified against `sslrootcert` when one is given
    /// (as libpq does), else not at all.
    Require,
    /// TLS required, the chain verified (not the host name).
    VerifyCa,
    /// TLS required, the chain and the host name verified.
    VerifyFull,
}

/// Upstream's defaults: retention 8766 h (365.25 days), cleanup every hour.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(8766 * 3600);
/// How often PostgreSQL's expired rows are deleted by default.
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);

/// A `postgres://` / `postgresql://` audit URI, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// The URI for the driver: the fragment and the options tapelog applies itself removed,
    /// `sslmode` given as `disable`, `prefer` or `require`.
    pub connect: String,
    /// The URI as shown in messages (password replaced by `xxx`, no fragment).
    pub shown: String,
    /// `sslmode`.
    pub ssl_mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted CAs, or `system` for the platform's roots.
    pub ssl_root_cert: Option<String>,
    /// `sslcert`: a client certificate (PEM).
    pub ssl_cert: Option<String>,
    /// `sslkey`: the client certificate's key (PEM).
    pub ssl_key: Option<String>,
    /// `pool_max_conns`: the pool's size.
    pub pool_max_conns: Option<usize>,
    /// The database name (the path), "" when the URI has none.
    pub database: String,
    /// `#disable_cleanup`.
    pub disable_cleanup: bool,
    /// `#retention_period` (0 or absent → [`DEFAULT_RETENTION`]).
    pub retention_period: Duration,
    /// `#cleanup_interval` (0 or absent → [`DEFAULT_CLEANUP_INTERVAL`]).
    pub cleanup_interval: Duration,
}

/// Query options the driver does not read and tapelog applies itself.
const OWN_OPTIONS: [&str; 5] = [
    "sslrootcert",
    "sslcert",
    "sslkey",
    "pool_max_conns",
    "sslmode",
];

impl PgUrl {
    /// Splits `uri` (`postgres://user:pass@host:port/db?sslmode=…#retention_period=2160h`).
    /// Upstream's fragment options are `disable_cleanup`, `retention_period`,
    /// `cleanup_interval` and `auth_mode` (only the default, static credentials, here); an
    /// unknown fragment option is refused rather than ignored, so that a typo is seen.
    pub fn parse(uri: &str) -> Result<PgUrl, PgUrlError> {
        let (base, fragment) = match uri.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (uri, None),
        };
        let shown = hide_password(base);
        let fail = |reason: String| PgUrlError {
            uri: shown.clone(),
            reason,
        };
        let rest = base
            .strip_prefix("postgres://")
            .or_else(|| base.strip_prefix("postgresql://"))
            .ok_or_else(|| fail("not a postgres:// or postgresql:// URI".into()))?;
        let (path_part, query) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        let database = match path_part.split_once('/') {
            Some((_, db)) => percent_decode(db).map_err(fail)?,
            None => String::new(),
        };
        let mut out = PgUrl {
            connect: String::new(),
            shown: shown.clone(),
            ssl_mode: SslMode::Prefer,
            ssl_root_cert: None,
            ssl_cert: None,
            ssl_key: None,
            pool_max_conns: None,
            database,
            disable_cleanup: false,
            retention_period: DEFAULT_RETENTION,
            cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !OWN_OPTIONS.contains(&k) {
                kept.push(pair.to_string());
                continue;
            }
            let v = percent_decode(v).map_err(fail)?;
            match k {
                "sslmode" => {
                    out.ssl_mode = match v.as_str() {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        _ => {
                            return Err(fail(format!(
                                "sslmode={v:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                            )));
                        }
                    }
                }
                "sslrootcert" => out.ssl_root_cert = Some(v),
                "sslcert" => out.ssl_cert = Some(v),
                "sslkey" => out.ssl_key = Some(v),
                _ => {
                    let n: usize = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        fail(format!("pool_max_conns={v:?}: not a positive number"))
                    })?;
                    out.pool_max_conns = Some(n);
                }
            }
        }
        if out.ssl_cert.is_some() != out.ssl_key.is_some() {
            return Err(fail("sslcert and sslkey go together".into()));
        }
        let driver_mode = match out.ssl_mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            _ => "require",
        };
        kept.push(format!("sslmode={driver_mode}"));
        let scheme_end = base.len() - rest.len();
        out.connect = format!("{}{}?{}", &base[..scheme_end], path_part, kept.join("&"));
        for pair in fragment.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).map_err(fail)?;
            match k {
                "disable_cleanup" => {
                    out.disable_cleanup = go_bool(&v)
                        .ok_or_else(|| fail(format!("disable_cleanup={v:?}: not a boolean")))?;
                }
                "retention_period" | "cleanup_interval" => {
                    let d = go_duration(&v).map_err(|e| fail(format!("{k}={v:?}: {e}")))?;
                    let d = match d {
                        None => {
                            return Err(fail(format!("{k}={v:?}: negative durations are refused")));
                        }
                        Some(d) if d.is_zero() => None,
                        Some(d) => Some(d),
                    };
                    if k == "retention_period" {
                        out.retention_period = d.unwrap_or(DEFAULT_RETENTION);
                    } else {
                        out.cleanup_interval = d.unwrap_or(DEFAULT_CLEANUP_INTERVAL);
                    }
                }
                "auth_mode" if v.is_empty() => {}
                "auth_mode" => {
                    return Err(fail(format!(
                        "auth_mode={v:?}: tapelog connects with the URI's own credentials only (auth_mode empty)"
                    )));
                }
                "gcp_connection_name" | "gcp_ip_type" | "azure_client_id" => {
                    return Err(fail(format!(
                        "#{k}: cloud sign-in (auth_mode) is not supported by tapelog"
                    )));
                }
                _ => {
                    return Err(fail(format!(
                        "unknown option #{k} (known: disable_cleanup, retention_period, cleanup_interval, auth_mode)"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The same server's `postgres` database (where a missing database is created from).
    pub fn maintenance_connect(&self) -> String {
        replace_database(&self.connect, "postgres")
    }
}

/// `uri` with the database in its path replaced by `db`.
fn replace_database(uri: &str, db: &str) -> String {
    let scheme_end = uri.find("://").map_or(0, |i| i + 3);
    let (head, query) = match uri.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (uri, None),
    };
    let authority_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &head[..authority_end], db);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `uri` with the password of its user-info replaced by `xxx`.
fn hide_password(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://").map(|i| i + 3) else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end..];
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!(
                "{}{}:xxx{}",
                &uri[..scheme_end],
                user,
                &uri[scheme_end + at..]
            ),
            None => uri.to_string(),
        },
        None => uri.to_string(),
    }
}

/// Decodes `%XX` escapes (and `+` as a space, as Go's `url.ParseQuery`).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad %-escape at byte {i} of {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration` (`300ms`, `1.5h`, `2h45m`, units ns, us, µs, ms, s, m, h);
/// `Ok(None)` for a negative duration.
pub fn go_duration(s: &str) -> Result<Option<Duration>, String> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Some(Duration::ZERO));
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in {s:?}"))?;
        let number: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("bad number in {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("unknown unit {u:?} in {s:?}")),
        };
        total += number * nanos_per;
        rest = &rest[unit_end..];
    }
    if total > 9.2e18 {
        return Err(format!("{s:?} is too long"));
    }
    if negative && total > 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_nanos(total.round() as u64)))
}

/// The SQL tapelog sends, for PostgreSQL and for CockroachDB.
pub mod sql {
    use std::time::Duration;

    /// The schema-version table, created on its own before the migration (errors ignored, as
    /// upstream).
    pub const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS audit_version (\
        version integer PRIMARY KEY CHECK (version > 0), \
        created timestamptz NOT NULL DEFAULT now())";

    /// The stored schema version (0 when none).
    pub const CURRENT_VERSION: &str = "SELECT COALESCE(max(version), 0) FROM audit_version";

    /// The schema versions this code knows.
    pub const SCHEMA_VERSION: i32 = 1;

    /// Records [`SCHEMA_VERSION`] after the migration.
    pub const RECORD_VERSION: &str = "INSERT INTO audit_version (version) VALUES (1)";

    /// Schema version 1: the events table, the partial session index and, on PostgreSQL only
    /// (CockroachDB has no BRIN), the index the retention delete uses.
    pub fn schema_v1(cockroach: bool) -> Vec<&'static str> {
        let mut v = vec![
            "CREATE TABLE events (\
                event_time timestamptz NOT NULL, \
                event_id uuid NOT NULL, \
                event_type text NOT NULL, \
                session_id uuid NOT NULL, \
                event_data json NOT NULL, \
                creation_time timestamptz NOT NULL DEFAULT now(), \
                CONSTRAINT events_pkey PRIMARY KEY (event_time, event_id))",
            "CREATE INDEX events_search_session_events_idx ON events \
                (session_id, event_time, event_id) \
                WHERE session_id != '00000000-0000-0000-0000-000000000000'",
        ];
        if !cockroach {
            v.push("CREATE INDEX events_creation_time_idx ON events USING brin (creation_time)");
        }
        v
    }

    /// The rows of a batch: one per element of the five arrays (time, id, type, session, JSON
    /// text).
    macro_rules! insert_rows {
        () => {
            "INSERT INTO events (event_time, event_id, event_type, session_id, event_data) \
             SELECT t, i, ty, s, d::json FROM unnest(\
             $1::timestamptz[], $2::uuid[], $3::text[], $4::uuid[], $5::text[]) AS u(t, i, ty, s, d)"
        };
    }

    /// A batch's first try: without a conflict clause (PostgreSQL's check of the arbiter index
    /// before each row made the statement about 30% slower); a batch that meets a row already
    /// there fails whole (`unique_violation`, nothing stored) and goes again as
    /// [`INSERT_BATCH`].
    pub const INSERT_BATCH_NEW: &str = insert_rows!();

    /// The batched insert that skips a row whose key is already there.
    pub const INSERT_BATCH: &str = concat!(insert_rows!(), " ON CONFLICT DO NOTHING");

    /// PostgreSQL's periodic retention delete; `$1` is the retention in microseconds.
    pub const DELETE_EXPIRED: &str = "DELETE FROM events \
        WHERE creation_time < (now() - ($1::bigint * interval '1 microsecond'))";

    /// CockroachDB's row-level TTL for `retention` (expiry: `creation_time` in UTC plus the
    /// retention), or its removal when cleanup is disabled; set at every start.
    pub fn cockroach_ttl(retention: Duration, disable_cleanup: bool) -> String {
        if disable_cleanup {
            return "ALTER TABLE events RESET (ttl)".to_string();
        }
        let micros = retention.as_micros();
        format!(
            "ALTER TABLE events SET (ttl_expiration_expression = \
             '((creation_time AT TIME ZONE ''UTC'') + ''{micros} microseconds''::INTERVAL) AT TIME ZONE ''UTC''')"
        )
    }

    /// The arrival-order feed from the beginning: rows inserted at least `$1` µs ago, in
    /// `(creation_time, event_time, event_id)` order, `$2` at most.
    pub const FEED_FIRST: &str = "SELECT creation_time, event_time, event_id, event_data::text FROM events \
        WHERE creation_time <= now() - ($1::bigint * interval '1 microsecond') \
        ORDER BY creation_time, event_time, event_id LIMIT $2";

    /// The feed after the row `($2, $3, $4)`; `$1` and the limit `$5` as in [`FEED_FIRST`].
    pub const FEED_AFTER: &str = "SELECT creation_time, event_time, event_id, event_data::text FROM events \
        WHERE creation_time <= now() - ($1::bigint * interval '1 microsecond') \
        AND (creation_time, event_time, event_id) > ($2, $3, $4) \
        ORDER BY creation_time, event_time, event_id LIMIT $5";

    /// What a search asks for besides the time range.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SearchShape {
        /// `$3` holds the event types (a `text[]`).
        pub types: bool,
        /// `$4` holds a session UUID.
        pub session: bool,
        /// `$5`, `$6` hold the position (time, id) to continue after.
        pub after: bool,
        /// Newest first.
        pub descending: bool,
    }

    /// The page query: rows of the inclusive time range, in `(event_time, event_id)` order,
    /// after the position when there is one, a number of rows at most. Its parameters are
    /// numbered in this order, each only when the shape uses it: from, to, types (`text[]`),
    /// session (`uuid`), after time, after id, limit (`int8`).
    pub fn search(shape: SearchShape) -> String {
        let mut n = 2;
        let mut next = || {
            n += 1;
            n
        };
        let mut q = String::from(
            "SELECT event_time, event_id, event_data::text FROM events \
             WHERE event_time BETWEEN $1 AND $2",
        );
        if shape.types {
            q.push_str(&format!(" AND event_type = ANY(${})", next()));
        }
        if shape.session {
            q.push_str(&format!(
                " AND session_id != '00000000-0000-0000-0000-000000000000' AND session_id = ${}",
                next()
            ));
        }
        if shape.after {
            let (t, i) = (next(), next());
            let op = if shape.descending { '<' } else { '>' };
            q.push_str(&format!(" AND (event_time, event_id) {op} (${t}, ${i})"));
        }
        q.push_str(if shape.descending {
            " ORDER BY event_time DESC, event_id DESC"
        } else {
            " ORDER BY event_time, event_id"
        });
        q.push_str(&format!(" LIMIT ${}", next()));
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_answers() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(hex(sha1(&long)), "291e9a6c66994949b57ba5e650361e98fc36b1ba");
    }

    #[test]
    fn uuid_v5_matches_rfc_example() {
        // RFC 9562's DNS namespace example: "www.example.com".
        let dns = parse_uuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap();
        assert_eq!(
            format_uuid(&uuid_v5(&dns, b"www.example.com")),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2"
        );
    }

    #[test]
    fn session_ids_as_upstream() {
        assert_eq!(session_uuid(""), NIL_UUID);
        let u = "0b3c7c5f-4a6e-4d0c-9a3e-6c1b2f3a4d5e";
        assert_eq!(format_uuid(&session_uuid(u)), u);
        assert_eq!(
            session_uuid("0B3C7C5F4A6E4D0C9A3E6C1B2F3A4D5E"),
            parse_uuid(u).unwrap()
        );
        let app = "a".repeat(64);
        let derived = session_uuid(&app);
        assert_eq!(derived, uuid_v5(&SESSION_NAMESPACE, app.as_bytes()));
        assert_eq!(derived[6] >> 4, 5);
        assert_ne!(session_uuid("x"), session_uuid("y"));
    }

    #[test]
    fn event_ids_follow_the_uid() {
        let u = "11111111-2222-4333-8444-555555555555";
        assert_eq!(format_uuid(&event_uuid(u)), u);
        assert_eq!(event_uuid("not-a-uuid"), event_uuid("not-a-uuid"));
        assert_ne!(event_uuid("a"), event_uuid("b"));
    }

    #[test]
    fn uuid_forms() {
        let canon = parse_uuid("0b3c7c5f-4a6e-4d0c-9a3e-6c1b2f3a4d5e").unwrap();
        assert_eq!(
            parse_uuid("{0b3c7c5f-4a6e-4d0c-9a3e-6c1b2f3a4d5e}"),
            Some(canon)
        );
        assert_eq!(
            parse_uuid("urn:uuid:0b3c7c5f-4a6e-4d0c-9a3e-6c1b2f3a4d5e"),
            Some(canon)
        );
        assert_eq!(parse_uuid("0b3c7c5f-4a6e-4d0c-9a3e-6c1b2f3a4d5"), None);
        assert_eq!(parse_uuid("0b3c7c5f+4a6e-4d0c-9a3e-6c1b2f3a4d5e"), None);
        assert_eq!(parse_uuid("zb3c7c5f-4a6e-4d0c-9a3e-6c1b2f3a4d5e"), None);
    }

    #[test]
    fn page_keys_round_trip_in_upstream_layout() {
        let key = PageKey {
            micros: 1_705_312_800_123_456,
            event_id: parse_uuid("0b3c7c5f-4a6e-4d0c-9a3e-6c1b2f3a4d5e").unwrap(),
        };
        let text = key.encode();
        assert_eq!(text.len(), 32);
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(&text)
            .unwrap();
        assert_eq!(&raw[..8], &1_705_312_800_123_456u64.to_le_bytes());
        assert_eq!(&raw[8..], &key.event_id);
        assert_eq!(PageKey::decode(&text), Ok(key));
        assert!(PageKey::decode("AAAA").is_err());
        assert!(PageKey::decode("not base64!").is_err());
        let err = PageKey::decode(&base64::engine::general_purpose::URL_SAFE.encode([0u8; 23]))
            .unwrap_err();
        assert_eq!(err.reason, "not 24 bytes");
    }

    #[test]
    fn feed_keys_round_trip() {
        let p = FeedPosition {
            created_micros: 1_796_083_200_000_001,
            time_micros: -5,
            event_id: [7; 16],
        };
        let text = p.encode();
        assert!(text.starts_with("p1:"), "{text}");
        assert_eq!(FeedPosition::decode(&text), Ok(Some(p)));
        assert_eq!(FeedPosition::decode(""), Ok(None));
        assert!(FeedPosition::decode("f1:AAAA").is_err());
        assert!(FeedPosition::decode("p1:AAAA").is_err());
    }

    #[test]
    fn micros_round_down() {
        assert_eq!(unix_micros(1_999), 1);
        assert_eq!(unix_micros(-1), -1);
    }

    #[test]
    fn url_options() {
        let u = PgUrl::parse(
            "postgresql://teleport:s3cret@db.example:5433/teleport_audit?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x&pool_max_conns=7#disable_cleanup=true&retention_period=2160h&cleanup_interval=30m",
        )
        .unwrap();
        assert_eq!(
            u.connect,
            "postgresql://teleport:s3cret@db.example:5433/teleport_audit?application_name=x&sslmode=require"
        );
        assert_eq!(
            u.shown,
            "postgresql://teleport:xxx@db.example:5433/teleport_audit?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x&pool_max_conns=7"
        );
        assert_eq!(u.ssl_mode, SslMode::VerifyFull);
        assert_eq!(u.ssl_root_cert.as_deref(), Some("/ca.pem"));
        assert_eq!(u.pool_max_conns, Some(7));
        assert_eq!(u.database, "teleport_audit");
        assert!(u.disable_cleanup);
        assert_eq!(u.retention_period, Duration::from_secs(2160 * 3600));
        assert_eq!(u.cleanup_interval, Duration::from_secs(1800));
        assert_eq!(
            u.maintenance_connect(),
            "postgresql://teleport:s3cret@db.example:5433/postgres?application_name=x&sslmode=require"
        );

        let d = PgUrl::parse("postgres://u@h/db").unwrap();
        assert_eq!(d.ssl_mode, SslMode::Prefer);
        assert_eq!(d.retention_period, DEFAULT_RETENTION);
        assert_eq!(d.cleanup_interval, DEFAULT_CLEANUP_INTERVAL);
        assert!(!d.disable_cleanup);
        assert_eq!(d.connect, "postgres://u@h/db?sslmode=prefer");
        let zero = PgUrl::parse("postgres://u@h/db#retention_period=0").unwrap();
        assert_eq!(zero.retention_period, DEFAULT_RETENTION);

        for (bad, says) in [
            ("mysql://h/db", "not a postgres"),
            ("postgres://h/db?sslmode=maybe", "sslmode"),
            ("postgres://h/db#retention_period=-1h", "negative"),
            ("postgres://h/db#retention_period=ten", "retention_period"),
            ("postgres://h/db#disable_cleanup=yes", "disable_cleanup"),
            (
                "postgres://h/db#retension_period=1h",
                "unknown option #retension_period",
            ),
            ("postgres://h/db#auth_mode=azure", "auth_mode"),
            ("postgres://h/db?sslcert=/c.pem", "go together"),
            ("postgres://h/db?pool_max_conns=0", "pool_max_conns"),
        ] {
            let e = PgUrl::parse(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        let e = PgUrl::parse("postgres://me:pw@h/db?sslmode=no").unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn go_durations() {
        let h = |n: u64| Some(Duration::from_secs(n * 3600));
        assert_eq!(go_duration("8766h"), Ok(h(8766)));
        assert_eq!(go_duration("1h30m"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(go_duration("1.5h"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(go_duration("300ms"), Ok(Some(Duration::from_millis(300))));
        assert_eq!(go_duration("2µs"), Ok(Some(Duration::from_micros(2))));
        assert_eq!(go_duration("0"), Ok(Some(Duration::ZERO)));
        assert_eq!(go_duration("-5s"), Ok(None));
        assert!(go_duration("5").is_err());
        assert!(go_duration("5d").is_err());
        assert!(go_duration("").is_err());
    }

    #[test]
    fn statements() {
        assert_eq!(sql::schema_v1(false).len(), 3);
        assert!(sql::schema_v1(true).iter().all(|s| !s.contains("brin")));
        assert_eq!(
            sql::cockroach_ttl(Duration::from_secs(1), true),
            "ALTER TABLE events RESET (ttl)"
        );
        let ttl = sql::cockroach_ttl(Duration::from_secs(2), false);
        assert!(ttl.contains("ttl_expiration_expression"), "{ttl}");
        assert!(ttl.contains("2000000 microseconds"), "{ttl}");
        let q = sql::search(sql::SearchShape {
            types: true,
            session: true,
            after: true,
            descending: true,
        });
        assert!(q.contains("event_type = ANY($3)"));
        assert!(q.contains("(event_time, event_id) < ($5, $6)"));
        assert!(q.ends_with("ORDER BY event_time DESC, event_id DESC LIMIT $7"));
        let plain = sql::search(sql::SearchShape {
            types: false,
            session: false,
            after: false,
            descending: false,
        });
        assert!(
            plain.ends_with("ORDER BY event_time, event_id LIMIT $3"),
            "{plain}"
        );
        assert!(
            q.contains("session_id = $4") && q.ends_with("LIMIT $7"),
            "{q}"
        );
    }
}
