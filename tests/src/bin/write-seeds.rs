//! Writes the fuzz seeds committed under `fuzz/seeds/<target>/` (`cargo run -p tapelog-tests
//! --bin write-seeds -- fuzz/seeds`): small inputs of every target's form, deterministic, so
//! that running it again rewrites the same files. See docs/fuzzing.md for each target's form.
use std::io::Read as _;
use std::path::{Path, PathBuf};

use tapelog_core::audit::index::{Index, IndexedLine, index_line};
use tapelog_core::audit::key::{PageKey, Position};
use tapelog_core::audit::lines::prepare_line;
use tapelog_core::codec::{frame_record, legacy};
use tapelog_core::event::{AuditEvent, EVENT_KINDS};
use tapelog_core::fluentd::forward_protocol::{EventTime, encode_ack, encode_packed_forward};
use tapelog_core::random::{self, Rng, UnknownBody};
use tapelog_core::vectors;

/// A seed over this size is cut to it (the whole set stays a few hundred KB).
const MAX_SEED: usize = 12 * 1024;

struct Seeds {
    root: PathBuf,
    total: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        let bytes = &bytes[..bytes.len().min(MAX_SEED)];
        self.total += bytes.len();
        std::fs::write(dir.join(name), bytes)
    }

    /// A seed whose first byte chooses the target's form.
    fn put_mode(&mut self, target: &str, name: &str, mode: u8, body: &[u8]) -> std::io::Result<()> {
        let mut b = vec![mode];
        b.extend_from_slice(body);
        self.put(target, name, &b)
    }
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out);
    out
}

/// The `legacy` target's list of session files (uncompressed; the target gzips `.gz` files).
fn session_files(files: &[(&str, String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (source, name, data) in files {
        let data = if name.ends_with(".gz") {
            gunzip(data)
        } else {
            data.clone()
        };
        let data = &data[..data.len().min(u16::MAX as usize)];
        out.push(source.len() as u8);
        out.extend_from_slice(source.as_bytes());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// A recording of raw `OneOf` records in one part.
fn records_part(records: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = Vec::new();
    for r in records {
        payload.extend_from_slice(&(r.len() as u32).to_be_bytes());
        payload.extend_from_slice(r);
    }
    vectors::raw_part(&payload, 1)
}

fn recordings(s: &mut Seeds) -> std::io::Result<()> {
    for t in ["read_whole", "read_split"] {
        for v in vectors::all() {
            s.put(t, &format!("vector-{}", v.name), &v.bytes)?;
        }
    }
    // Random sessions with unknown OneOf members of every body kind.
    let mut r = Rng::new(11);
    for seed in 0..3 {
        let records = random::random_records(&mut r, 12, 3);
        let bytes = records_part(&records);
        s.put("read_whole", &format!("random-unknown-{seed}"), &bytes)?;
        s.put("read_split", &format!("random-unknown-{seed}"), &bytes)?;
    }
    for (i, kind) in UnknownBody::ALL.into_iter().enumerate() {
        let known = vectors::sample_session(1);
        let mut records: Vec<Vec<u8>> = known.iter().map(AuditEvent::to_oneof_bytes).collect();
        let field = random::unknown_oneof_field(&mut r);
        let body = random::unknown_oneof_body(&mut r, kind, records.len() as i64);
        records.push(random::oneof_record(field, &body));
        s.put(
            "read_whole",
            &format!("unknown-{i}-{kind:?}"),
            &records_part(&records),
        )?;
    }
    Ok(())
}

fn json_events(s: &mut Seeds) -> std::io::Result<()> {
    let mut r = Rng::new(7);
    // Every fourth kind: the JSON reader is the same code for all of them.
    for &(field, name) in EVENT_KINDS.iter().step_by(4) {
        if let Some(e) = AuditEvent::random_of(field, &mut r) {
            s.put(
                "json_event",
                &format!("kind-{name}"),
                e.to_json().as_bytes(),
            )?;
        }
    }
    Ok(())
}

fn legacy_seeds(s: &mut Seeds) -> std::io::Result<()> {
    s.put_mode("legacy", "tar", 0, &vectors::legacy_tar(3))?;
    let mut files = Vec::new();
    for (server, named) in vectors::legacy_two_servers(3) {
        for (name, data) in named {
            files.push((server, name, data));
        }
    }
    s.put_mode("legacy", "two-servers", 1, &session_files(&files))?;
    let one: Vec<_> = legacy::read_tar(&vectors::legacy_tar(2), "archive")
        .unwrap_or_default()
        .into_iter()
        .map(|f| ("archive", f.name, f.data))
        .collect();
    s.put_mode("legacy", "one-server", 3, &session_files(&one))
}

fn audit_seeds(s: &mut Seeds) -> std::io::Result<()> {
    let mut log = Vec::new();
    for e in vectors::sample_session(3) {
        if let Ok(l) = prepare_line(&e) {
            log.extend_from_slice(l.json.as_bytes());
            log.push(b'\n');
        }
    }
    log.extend_from_slice(
        b"\nnot json\n[1,2]\n{\"event\":\"x\",\"time\":\"bad\"}\n{\"event\":\"torn",
    );
    s.put_mode("audit_lines", "day-file", 0, &log)?;
    s.put_mode("audit_lines", "day-file-long-lines", 2, &log)?;
    let mut entries = Vec::new();
    let mut offset = 0u64;
    for line in log.split(|&b| b == b'\n') {
        if let IndexedLine::Entry(e) = index_line(offset, line) {
            entries.push(e);
        }
        offset += line.len() as u64 + 1;
    }
    let mut index = Index::default();
    index.extend(entries, offset, 3);
    s.put_mode(
        "audit_lines",
        "index",
        1,
        &index.encode(0x1234_5678, 0x9abc_def0),
    )
}

fn key_seeds(s: &mut Seeds) -> std::io::Result<()> {
    let key = PageKey {
        position: Position {
            seconds: 1_705_312_800,
            nanos: 123,
            sid_hash: 0x0123_4567_89ab_cdef,
            index: 7,
            file: "auth/2024-01-15.00:00:00.log".into(),
            offset: 4096,
        },
        checkpoint: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
    };
    s.put_mode("page_key", "tl1", 0, key.encode().as_bytes())?;
    s.put_mode(
        "page_key",
        "uid",
        0,
        b"6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    )?;
    s.put_mode("page_key", "hash", 0, &[b'a'; 64])?;
    let p = &key.position;
    let mut fields = Vec::new();
    fields.extend_from_slice(&p.seconds.to_le_bytes());
    fields.extend_from_slice(&p.nanos.to_le_bytes());
    fields.extend_from_slice(&p.sid_hash.to_le_bytes());
    fields.extend_from_slice(&p.index.to_le_bytes());
    fields.extend_from_slice(&p.offset.to_le_bytes());
    fields.extend_from_slice(p.file.as_bytes());
    fields.push(0);
    fields.extend_from_slice(key.checkpoint.as_bytes());
    s.put_mode("page_key", "fields", 1, &fields)
}

fn url_seeds(s: &mut Seeds) -> std::io::Result<()> {
    for (i, url) in [
        "file:///var/lib/tapelog/records",
        "/srv/records/",
        "file://localhost/a%20b",
        "memory://",
        "s3://my-bucket/teleport/records",
        "az://recordings/prefix",
        "azure://container",
        "gs://bucket_1/a/b",
        "S3://abc",
    ]
    .into_iter()
    .enumerate()
    {
        s.put("storage_url", &format!("url-{i}"), url.as_bytes())?;
    }
    Ok(())
}

const SERVE_TOML: &str = r#"data_dir = "/var/lib/tapelog"
listen = "0.0.0.0:7450"
storage = "s3://bucket/recordings"
endpoint = "http://127.0.0.1:9000"
allow_http = true
tls_cert = "server.pem"
tls_key = "server-key.pem"
client_ca = "ca.pem"
max_body = 16777216
durability = "fsync"
completer_grace = 3600
search_rate = 10
[[tokens]]
role = "recorder"
name = "host1"
token = "a long random secret, 32 chars or more"
"#;

const FORWARD_TOML: &str = r#"storage = "/var/lib/tapelog-forward"
batch = 50
concurrency = 3
timeout = "10s"
window-size = "1h30m"
start-time = "2024-01-15T10:00:00+02:00"
types = ["session.start", "user.login"]
dry-run = true
[forward.fluentd]
url = "https://localhost:8888/test.log"
session-url = "https://localhost:8888/session"
cert = "client.crt"
key = "client.key"
ca = "ca.crt"
[teleport]
addr = "localhost:7450"
identity = "identity"
refresh.enabled = true
refresh.interval = "5m"
"#;

fn toml_seeds(s: &mut Seeds) -> std::io::Result<()> {
    s.put_mode("config_toml", "serve", 0, SERVE_TOML.as_bytes())?;
    s.put_mode("config_toml", "forward", 1, FORWARD_TOML.as_bytes())
}

fn body_seeds(s: &mut Seeds) -> std::io::Result<()> {
    let events = vectors::sample_session(2);
    let json: Vec<String> = events.iter().map(AuditEvent::to_json).collect();
    s.put_mode(
        "api_body",
        "events-array",
        0,
        format!("[{}]", json.join(",")).as_bytes(),
    )?;
    s.put_mode("api_body", "event-object", 0, json[0].as_bytes())?;
    s.put_mode(
        "api_body",
        "events-lines",
        1,
        (json.join("\n") + "\n").as_bytes(),
    )?;
    s.put_mode(
        "api_body",
        "stream",
        2,
        br#"{"session_id":"9b6ec731-80f7-4751-9154-4214ecdc812a"}"#,
    )?;
    let mut framed = Vec::new();
    for e in &events {
        frame_record(e, &mut framed).map_err(std::io::Error::other)?;
    }
    let mut r = Rng::new(5);
    for record in random::random_records(&mut r, 8, 2) {
        framed.extend_from_slice(&(record.len() as u32).to_be_bytes());
        framed.extend_from_slice(&record);
    }
    s.put_mode("api_body", "records", 3, &framed)
}

fn fluent_seeds(s: &mut Seeds) -> std::io::Result<()> {
    let events: Vec<String> = vectors::sample_session(2)
        .iter()
        .map(AuditEvent::to_json)
        .collect();
    let now = EventTime {
        seconds: (vectors::START_MILLIS / 1000) as u32,
        nanos: 0,
    };
    let mut stream = encode_packed_forward("teleport.audit", &events, "Y2h1bmsx", now)
        .map_err(std::io::Error::other)?;
    stream.extend_from_slice(&encode_ack("Y2h1bmsx"));
    s.put("fluent_split", "packed-forward", &stream)
}

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    let mut s = Seeds { root, total: 0 };
    recordings(&mut s)?;
    json_events(&mut s)?;
    fluent_seeds(&mut s)?;
    legacy_seeds(&mut s)?;
    audit_seeds(&mut s)?;
    key_seeds(&mut s)?;
    url_seeds(&mut s)?;
    toml_seeds(&mut s)?;
    body_seeds(&mut s)?;
    println!(
        "wrote {} bytes of seeds under {}",
        s.total,
        Path::new(&s.root).display()
    );
    Ok(())
}
