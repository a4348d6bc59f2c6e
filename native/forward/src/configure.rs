//! `tapelog forward configure OUT_DIR`: upstream's `teleport-event-handler configure`. Writes
//! a small mutual-TLS PKI and the two configuration files a first run needs:
//!
//! | file | what |
//! |---|---|
//! | `ca.crt`, `ca.key` | the CA (CN `CA`) that signs both ends |
//! | `server.crt`, `server.key` | Fluentd's certificate (CN `Server`), for `--dns-names` and `--ip` |
//! | `client.crt`, `client.key` | `tapelog forward`'s client certificate (CN `Client`) |
//! | `fluent.conf` | an `in_http` source on 8888 with `<transport tls>` and client certificates required, JSON parsing as upstream's template, `<match test.log>` and `<match session.*.log>` to stdout, and a Forward-protocol source on 24224 (commented out unless [`Protocol::Forward`]) |
//! | `tapelog-forward.toml` | upstream's `teleport-event-handler.toml`: `storage`, `timeout`, `batch`, `[forward.fluentd]` `ca`/`cert`/`key`/`url`/`session-url`, `[teleport]` `addr`/`identity`/`refresh.enabled` |
//!
//! Every file is written with mode 0600 (as upstream), and nothing is written when any of
//! them exists already, unless [`ConfigureOptions::force`].
//!
//! Two choices differ from upstream, on purpose:
//! - **Keys are ECDSA P-256** (rcgen's default), not RSA 1024/2048/4096: P-256 is about as
//!   strong as RSA-3072, fast to make and to handshake with, and Fluentd (Ruby OpenSSL),
//!   Fluent Bit and rustls all take it. So there is no `--length` option; the CLI may accept
//!   it for compatibility and ignore it with a warning.
//! - **`server.key` is not encrypted.** Upstream encrypts it with a random passphrase (legacy
//!   PEM encryption) and writes the passphrase into `fluent.conf`, next to the key — so the
//!   passphrase protects nothing that the file mode does not, and rustls cannot read legacy
//!   encrypted PEM at all (tapelog's own tests and a tapelog-based receiver would need extra
//!   crypto dependencies). The key is PKCS#8 with mode 0600, and `fluent.conf` has no
//!   `private_key_passphrase`.
//!
//! Also unlike upstream's template, `fluent.conf` has no `<buffer>` inside `<source>`: a
//! real Fluentd ignores it there ("section <buffer> is not used in <source> of http
//! plugin"); buffers belong in the `<match>` outputs.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use thiserror::Error;

/// Upstream's default certificate lifetime, `87600h` (10 years).
pub const DEFAULT_TTL: Duration = Duration::from_secs(87_600 * 3600);

/// The port of the `in_http` source in `fluent.conf` (upstream's).
pub const HTTP_PORT: u16 = 8888;

/// The port of the Forward-protocol source in `fluent.conf` (`in_forward`'s default).
pub const FORWARD_PORT: u16 = 24224;

/// Which Fluentd input the generated `tapelog-forward.toml` sends to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `https://HOST:8888/test.log` to the `in_http` source (upstream's only choice).
    #[default]
    Http,
    /// `forward+tls://HOST:24224/test.log` to the Forward-protocol source, which is then
    /// written uncommented in `fluent.conf`.
    Forward,
}

/// What `configure` makes. Every field is one CLI option (the CLI layer owns clap); the
/// defaults are upstream's.
#[derive(Debug, Clone)]
pub struct ConfigureOptions {
    /// `--dns-names` (comma-separated, default `localhost`): the DNS names of Fluentd's
    /// server certificate. The first one is the host in the TOML's URLs.
    pub dns_names: Vec<String>,
    /// `--ip` (repeatable or comma-separated, default none): IP addresses of the server
    /// certificate (e.g. `127.0.0.1`).
    pub ips: Vec<IpAddr>,
    /// `--ttl` (a Go duration, default `87600h`, see [`parse_go_duration`]): how long the
    /// certificates are valid from now.
    pub ttl: Duration,
    /// `--force`: overwrite files that exist. Without it, `configure` writes nothing when
    /// any of its files exists.
    pub force: bool,
    /// `--protocol http|forward` (tapelog's own; default `http`): which source the TOML's
    /// URLs point at.
    pub protocol: Protocol,
    /// Upstream's positional `[addr]` (default `localhost:3025`): written as the TOML's
    /// `[teleport] addr`.
    pub addr: String,
    /// `--keys-dir` (tapelog's own; default: the output directory): the directory in which
    /// Fluentd will see `ca.crt`, `server.crt` and `server.key`, for `fluent.conf`'s paths
    /// (upstream's template hard-codes `/keys`, its Docker mount).
    pub fluentd_keys_dir: Option<PathBuf>,
}

impl Default for ConfigureOptions {
    fn default() -> Self {
        ConfigureOptions {
            dns_names: vec!["localhost".into()],
            ips: Vec::new(),
            ttl: DEFAULT_TTL,
            force: false,
            protocol: Protocol::Http,
            addr: "localhost:3025".into(),
            fluentd_keys_dir: None,
        }
    }
}

/// The files `configure` wrote (absolute paths).
#[derive(Debug, Clone)]
pub struct ConfigureFiles {
    /// `ca.crt`.
    pub ca_cert: PathBuf,
    /// `ca.key`.
    pub ca_key: PathBuf,
    /// `server.crt`.
    pub server_cert: PathBuf,
    /// `server.key` (not encrypted; see the module documentation).
    pub server_key: PathBuf,
    /// `client.crt`.
    pub client_cert: PathBuf,
    /// `client.key`.
    pub client_key: PathBuf,
    /// `fluent.conf`.
    pub fluent_conf: PathBuf,
    /// `tapelog-forward.toml`.
    pub toml: PathBuf,
}

impl ConfigureFiles {
    /// Every file, in the order they are written.
    pub fn all(&self) -> [&Path; 8] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
            &self.fluent_conf,
            &self.toml,
        ]
    }
}

/// Why `configure` failed.
#[derive(Debug, Error)]
pub enum ConfigureError {
    /// A file exists and `--force` was not given; nothing was written.
    #[error("{} exists; nothing was written (use --force to overwrite)", path.display())]
    Exists {
        /// The first existing file.
        path: PathBuf,
    },
    /// The output directory or a file could not be made.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// No DNS name and no IP address for the server certificate.
    #[error("the server certificate needs at least one --dns-names or --ip")]
    NoHosts,
    /// A `--ttl` that is zero, not a Go duration, or ends past year 9999.
    #[error("--ttl {value:?}: {what}")]
    Ttl {
        /// The value.
        value: String,
        /// What is wrong.
        what: String,
    },
    /// Certificate generation failed (for instance a DNS name rcgen refuses).
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Parses a Go duration (`87600h`, `1h30m`, `1.5s`, `300ms`, `10us`, `5ns`; `0`).
pub fn parse_go_duration(s: &str) -> Result<Duration, ConfigureError> {
    let bad = |what: &str| ConfigureError::Ttl {
        value: s.to_string(),
        what: what.to_string(),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = s;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number without a unit (ns, us, ms, s, m, h)"))?;
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad(&format!("unknown unit {unit:?} (ns, us, ms, s, m, h)"))),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if whole.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(bad(&format!("{num:?} is not a number")));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("a number too large"))?
        };
        let mut part = whole.checked_mul(per).ok_or_else(|| bad("too large"))?;
        let mut scale = per;
        for d in frac.bytes().take(18) {
            scale /= 10;
            part += u128::from(d - b'0') * scale;
        }
        nanos = nanos.checked_add(part).ok_or_else(|| bad("too large"))?;
        rest = after;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad("too large"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Writes the PKI, `fluent.conf` and `tapelog-forward.toml` into `out` (created if
/// missing). See the module documentation.
pub fn run(out: &Path, opts: &ConfigureOptions) -> Result<ConfigureFiles, ConfigureError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigureError::Io { path, source }
    };
    if opts.dns_names.is_empty() && opts.ips.is_empty() {
        return Err(ConfigureError::NoHosts);
    }
    let ttl_error = |what: &str| ConfigureError::Ttl {
        value: format!("{:?}", opts.ttl),
        what: what.to_string(),
    };
    if opts.ttl.is_zero() {
        return Err(ttl_error("certificates that expire at once are of no use"));
    }
    let now = time::OffsetDateTime::now_utc();
    let not_after = time::Duration::try_from(opts.ttl)
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| ttl_error("the certificates would end after year 9999"))?;
    // A minute of slack for clocks a little behind this one.
    let not_before = now - time::Duration::minutes(1);

    std::fs::create_dir_all(out).map_err(io(out))?;
    let dir = out.canonicalize().map_err(io(out))?;
    let files = ConfigureFiles {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        fluent_conf: dir.join("fluent.conf"),
        toml: dir.join("tapelog-forward.toml"),
    };
    if !opts.force
        && let Some(path) = files.all().into_iter().find(|p| p.exists())
    {
        return Err(ConfigureError::Exists {
            path: path.to_path_buf(),
        });
    }

    // The CA.
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = cn("CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = (ca_cert.pem(), ca_key.serialize_pem());
    let issuer = Issuer::new(ca_params, ca_key);

    let issue = |name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = cn(name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok::<_, rcgen::Error>((cert.pem(), key.serialize_pem()))
    };
    let hosts: Vec<String> = opts
        .dns_names
        .iter()
        .cloned()
        .chain(opts.ips.iter().map(IpAddr::to_string))
        .collect();
    let server = issue("Server", hosts.clone(), ExtendedKeyUsagePurpose::ServerAuth)?;
    let client = issue("Client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;

    let keys_dir = opts.fluentd_keys_dir.clone().unwrap_or_else(|| dir.clone());
    let conf = fluent_conf(&keys_dir, opts.protocol);
    let url_host = match hosts.first() {
        Some(h) if h.contains(':') => format!("[{h}]"),
        Some(h) => h.clone(),
        None => "localhost".into(),
    };
    let toml = toml_file(&files, &url_host, opts);

    let contents: [(&Path, &str); 8] = [
        (&files.ca_cert, &ca_pem.0),
        (&files.ca_key, &ca_pem.1),
        (&files.server_cert, &server.0),
        (&files.server_key, &server.1),
        (&files.client_cert, &client.0),
        (&files.client_key, &client.1),
        (&files.fluent_conf, &conf),
        (&files.toml, &toml),
    ];
    for (path, text) in contents {
        write_private(path, text, opts.force).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => ConfigureError::Exists {
                path: path.to_path_buf(),
            },
            _ => ConfigureError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
    }
    Ok(files)
}

fn cn(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// Writes `text` with mode 0600: a new file, or (with `force`) over an existing one, whose
/// mode is set back to 0600 too.
fn write_private(path: &Path, text: &str, force: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = options.open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn fluent_conf(keys: &Path, protocol: Protocol) -> String {
    let ca = keys.join("ca.crt");
    let cert = keys.join("server.crt");
    let key = keys.join("server.key");
    let (ca, cert, key) = (ca.display(), cert.display(), key.display());
    let forward = format!(
        "<source>
  @type forward
  port {FORWARD_PORT}

  <transport tls>
    client_cert_auth true
    ca_path {ca}
    cert_path {cert}
    private_key_path {key}
  </transport>
</source>
"
    );
    let forward = match protocol {
        Protocol::Forward => forward,
        Protocol::Http => forward
            .lines()
            .map(|l| {
                if l.is_empty() {
                    "#\n".to_string()
                } else {
                    format!("# {l}\n")
                }
            })
            .collect(),
    };
    format!(
        "# Written by `tapelog forward configure`. Fluentd receives audit events with the tag
# of --fluentd-url's path (test.log) and session events with the tag of
# --fluentd-session-url's path + .<session id>.log (session.*.log).
#
# If Fluentd runs in Docker with this directory mounted at /keys, replace the directory
# of the three paths below with /keys.

<source>
  @type http
  port {HTTP_PORT}

  <transport tls>
    client_cert_auth true
    ca_path {ca}
    cert_path {cert}
    private_key_path {key}
  </transport>

  <parse>
    @type json
    json_parser oj

    # Teleport's event time. This field is required.
    time_type string
    time_format %Y-%m-%dT%H:%M:%S
  </parse>
</source>

# The Forward protocol (tapelog's forward+tls:// URLs): MessagePack over mutual TLS, each
# batch acknowledged. Event times come from the events; records keep their `time` key.
{forward}
# To survive bursts and restarts, give the outputs a file <buffer> (a <buffer> inside
# <source> is ignored by Fluentd).
<match test.log>
  @type stdout
</match>

<match session.*.log>
  @type stdout
</match>
"
    )
}

fn toml_file(files: &ConfigureFiles, host: &str, opts: &ConfigureOptions) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let p = |p: &Path| q(&p.display().to_string());
    let (scheme, port) = match opts.protocol {
        Protocol::Http => ("https", HTTP_PORT),
        Protocol::Forward => ("forward+tls", FORWARD_PORT),
    };
    format!(
        "# Written by `tapelog forward configure`; read with `tapelog forward --config <this file>`.
storage = \"./storage\"
timeout = \"10s\"
batch = 20

[forward.fluentd]
ca = {ca}
cert = {cert}
key = {key}
url = {url}
session-url = {session}

[teleport]
addr = {addr}
identity = \"identity\"
refresh.enabled = true
",
        ca = p(&files.ca_cert),
        cert = p(&files.client_cert),
        key = p(&files.client_key),
        url = q(&format!("{scheme}://{host}:{port}/test.log")),
        session = q(&format!("{scheme}://{host}:{port}/session")),
        addr = q(&opts.addr),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(d("87600h"), DEFAULT_TTL);
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("300ms"), Duration::from_millis(300));
        assert_eq!(d("10us"), Duration::from_micros(10));
        assert_eq!(d("5ns"), Duration::from_nanos(5));
        assert_eq!(d(".5m"), Duration::from_secs(30));
        assert_eq!(d("0"), Duration::ZERO);
        for bad in [
            "",
            "10",
            "h",
            "5d",
            "1..2s",
            "-1h",
            "1h 2m",
            "99999999999999999999999h",
        ] {
            assert!(
                matches!(parse_go_duration(bad), Err(ConfigureError::Ttl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_forward_source_is_commented_unless_chosen() {
        let http = fluent_conf(Path::new("/keys"), Protocol::Http);
        assert!(http.contains("# <source>\n#   @type forward\n"));
        assert!(http.contains("\n<source>\n  @type http\n"));
        let fwd = fluent_conf(Path::new("/keys"), Protocol::Forward);
        assert!(fwd.contains("\n<source>\n  @type forward\n"));
        assert!(fwd.contains("ca_path /keys/ca.crt"));
        assert!(!fwd.contains("<buffer>\n"));
    }
}
