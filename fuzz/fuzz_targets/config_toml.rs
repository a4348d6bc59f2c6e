//! TOML configuration files: `tapelog serve --config` and `tapelog forward --config`.
//!
//! The first byte chooses the reader, the rest is the file's text:
//! - even: `serve`'s `FileConfig`. `FileConfig::parse` never panics; a config it reads
//!   prints (`to_toml`) as TOML that reads back to an equal config, and its tokens are checked
//!   without panicking.
//! - odd: `forward`'s options, resolved from the file alone (no flags, no environment).
//!   Resolution never panics; options it resolves keep their documented bounds, and written
//!   back as a TOML file (every option under its own name) resolve to the same options.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_forward::options::{ForwardArgs, ForwardOptions};
use tapelog_server::FileConfig;

fn serve(text: &str) {
    let Ok(c) = FileConfig::parse(text, "serve.toml") else {
        return;
    };
    let printed = c.to_toml().expect("a parsed config prints");
    let again = FileConfig::parse(&printed, "printed");
    assert!(
        matches!(&again, Ok(a) if *a == c),
        "{text:?} → {c:?} → {printed:?} → {again:?}"
    );
    let _ = c.token_specs();
}

/// The options as a config file that names each one literally.
fn as_toml(o: &ForwardOptions) -> String {
    let mut t = toml::Table::new();
    let mut put = |k: &str, v: String| {
        t.insert(k.into(), toml::Value::String(v));
    };
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let nanos = |d: std::time::Duration| format!("{}ns", d.as_nanos());
    put("teleport-addr", o.teleport_addr.clone());
    put("teleport-ca", path(&o.teleport_ca));
    put("teleport-cert", path(&o.teleport_cert));
    put("teleport-key", path(&o.teleport_key));
    put("teleport-identity", path(&o.teleport_identity));
    put(
        "teleport-refresh-enabled",
        o.teleport_refresh_enabled.to_string(),
    );
    put(
        "teleport-refresh-interval",
        nanos(o.teleport_refresh_interval),
    );
    put("data-dir", path(&o.data_dir));
    put("fluentd-url", o.fluentd_url.clone());
    put("fluentd-session-url", o.fluentd_session_url.clone());
    put("fluentd-ca", path(&o.fluentd_ca));
    put("fluentd-cert", path(&o.fluentd_cert));
    put("fluentd-key", path(&o.fluentd_key));
    put(
        "fluentd-max-connections",
        o.fluentd_max_connections.to_string(),
    );
    put("storage", o.storage.to_string_lossy().into_owned());
    put("batch", o.batch.to_string());
    put("types", o.types.join(","));
    put("skip-event-types", o.skip_event_types.join(","));
    put("skip-session-types", o.skip_session_types.join(","));
    put(
        "start-time",
        o.start_time.map(|t| t.to_rfc3339()).unwrap_or_default(),
    );
    put("timeout", nanos(o.timeout));
    put("cursor", o.cursor.clone().unwrap_or_default());
    put("concurrency", o.concurrency.to_string());
    put("window-size", nanos(o.window_size));
    put("dry-run", o.dry_run.to_string());
    put("exit-on-last-event", o.exit_on_last_event.to_string());
    put("debug", o.debug.to_string());
    put("lock-enabled", o.lock_enabled.to_string());
    put(
        "lock-failed-attempts-count",
        o.lock_failed_attempts_count.to_string(),
    );
    put("lock-period", nanos(o.lock_period));
    put("lock-for", nanos(o.lock_for));
    t.to_string()
}

fn forward(text: &str) {
    let args = ForwardArgs::default();
    let no_env = |_: &str| None;
    let Ok(o) = args.resolve_with_config_text(text, "forward.toml", no_env) else {
        return;
    };
    assert!(o.concurrency >= 1);
    assert!((1..=10_000).contains(&o.batch));
    assert!(o.fluentd_max_connections >= 1);
    assert!(!o.window_size.is_zero());
    assert!(o.check().is_ok());
    for list in [&o.types, &o.skip_event_types, &o.skip_session_types] {
        assert!(
            list.iter()
                .all(|t| !t.is_empty() && t.trim() == t && !t.contains(','))
        );
    }
    let written = as_toml(&o);
    let again = args.resolve_with_config_text(&written, "written", no_env);
    assert!(
        matches!(&again, Ok(a) if *a == o),
        "{text:?} → {o:?} → {written:?} → {again:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode & 1 == 0 {
        serve(text);
    } else {
        forward(text);
    }
});
