//! The direct JSON reader (`json/direct.rs`, `AuditEvent::from_json_direct`) against the
//! `Value` reader it stands in for: on varied input — events of every kind as printed, then
//! with members reordered, renamed in another case, repeated, set to `null` or to a value of
//! the wrong kind, unknown members with values serde_json refuses, escaped keys — the event
//! or the error of `AuditEvent::from_json` is the `Value` reader's, and the direct reader
//! never gives an event the `Value` reader would not.

use proptest::prelude::*;
use tapelog_events::event::{AuditEvent, EVENT_CODES, EVENT_KINDS, EVENT_TYPES, message_for};
use tapelog_events::json::direct::array_items;
use tapelog_events::random::Rng;
use tapelog_events::{EventError, json::JsonError};

/// What `AuditEvent::from_json` gave before the direct reader: a `Value`, then the event.
fn value_reader(text: &str) -> Result<AuditEvent, EventError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| JsonError::Syntax(e.to_string()))?;
    AuditEvent::from_json_value(&v, Some(text))
}

/// Checks one text; returns whether the direct reader read it.
fn check(text: &str) -> bool {
    let want = value_reader(text);
    assert_eq!(AuditEvent::from_json(text), want, "from_json of {text}");
    match AuditEvent::from_json_direct(text) {
        Some(e) => {
            assert_eq!(Ok(&e), want.as_ref(), "direct reader of {text}");
            true
        }
        None => false,
    }
}

/// A random event of the kind `field` whose `event` and `code` name that kind, as a server
/// receives them.
fn typed_event(field: u32, name: &str, r: &mut Rng) -> AuditEvent {
    let mut e = AuditEvent::random_of(field, r).unwrap();
    if let Some(t) = EVENT_TYPES.iter().find(|t| t.message == Some(name)) {
        let code = t.codes.first().copied().or_else(|| {
            EVENT_CODES
                .iter()
                .find(|c| c.event_type == t.event_type)
                .map(|c| c.code)
        });
        if let Some(m) = e.metadata_mut() {
            m.type_ = t.event_type.to_string();
            m.code = code.unwrap_or("").to_string();
        }
    }
    e
}

/// Members of a JSON object as texts (key as JSON, value as JSON), in document order.
fn members(text: &str) -> Vec<(String, String)> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    v.into_iter()
        .map(|(k, v)| (serde_json::to_string(&k).unwrap(), v.to_string()))
        .collect()
}

fn object(members: &[(String, String)], r: &mut Rng) -> String {
    let ws = [" ", "", "\n", "\t"];
    let mut s = String::from("{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if r.below(8) == 0 {
            s.push_str(ws[r.below(4) as usize]);
        }
        s.push_str(k);
        s.push(':');
        s.push_str(v);
    }
    s.push('}');
    s
}

/// Values for mutated members: good, wrong kinds, and values a `RawValue` passes that
/// serde_json refuses in a `Value` (out-of-range number, lone surrogate, too deep).
fn odd_value(r: &mut Rng) -> String {
    match r.below(14) {
        0 => "null".into(),
        1 => "12".into(),
        2 => "-0".into(),
        3 => "1.5".into(),
        4 => "1e400".into(),
        5 => r#""\ud800""#.into(),
        6 => r#""text""#.into(),
        7 => r#""2024-01-15T10:00:00Z""#.into(),
        8 => "true".into(),
        9 => "[]".into(),
        10 => r#"{"a":[1,{"b":null}]}"#.into(),
        11 => format!("{}{}", "[".repeat(130), "]".repeat(130)),
        12 => format!("{}{}", "[".repeat(99), "]".repeat(99)),
        _ => r#""e\u0301\n\"q\"""#.into(),
    }
}

/// `text` (an event object) changed at random.
fn mutate(text: &str, r: &mut Rng) -> String {
    let mut ms = members(text);
    let n = ms.len() as u64;
    for _ in 0..r.below(4) {
        let i = r.below(n.max(1)) as usize;
        match r.below(9) {
            0 => {
                // Reorder.
                let j = r.below(n.max(1)) as usize;
                if i < ms.len() && j < ms.len() {
                    ms.swap(i, j);
                }
            }
            1 => {
                // Another case: matched case-insensitively, after the exact names.
                if let Some(m) = ms.get_mut(i) {
                    m.0 = if r.coin() {
                        m.0.to_uppercase()
                    } else {
                        let mut c = m.0.clone();
                        if c.len() > 2 {
                            let up = c[1..2].to_uppercase();
                            c.replace_range(1..2, &up);
                        }
                        c
                    };
                }
            }
            2 => {
                // The same key twice: the last wins.
                if let Some(m) = ms.get(i).cloned() {
                    let odd = (m.0.clone(), odd_value(r));
                    let at = r.below(ms.len() as u64 + 1) as usize;
                    ms.insert(at, odd);
                }
            }
            3 => {
                if let Some(m) = ms.get_mut(i) {
                    m.1 = "null".into();
                }
            }
            4 => {
                if let Some(m) = ms.get_mut(i) {
                    m.1 = odd_value(r);
                }
            }
            5 => {
                // A member no message has.
                let at = r.below(ms.len() as u64 + 1) as usize;
                ms.insert(at, (r#""zz_unknown""#.into(), odd_value(r)));
            }
            6 => {
                // An escaped key.
                if let Some(m) = ms.get_mut(i)
                    && m.0.len() > 2
                {
                    let c = m.0.as_bytes()[1];
                    m.0 = format!("\"\\u{:04x}{}", c, &m.0[2..]);
                }
            }
            7 => {
                // Case-insensitive twins of one key, both present.
                if let Some(m) = ms.get(i).cloned() {
                    ms.push((m.0.to_uppercase(), m.1));
                }
            }
            _ => {
                if let Some(m) = ms.get_mut(i) {
                    m.1 = format!(" {} ", m.1);
                }
            }
        }
    }
    object(&ms, r)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every kind, as printed and mutated: the direct reader agrees with the `Value` reader.
    #[test]
    fn direct_reader_agrees_with_the_value_reader(seed in any::<u64>()) {
        let mut direct = 0usize;
        let mut plain = 0usize;
        for &(field, name) in EVENT_KINDS {
            let mut r = Rng::new(seed ^ u64::from(field).rotate_left(17));
            let e = typed_event(field, name, &mut r);
            let text = e.to_json();
            plain += 1;
            if check(&text) {
                direct += 1;
            }
            for _ in 0..4 {
                check(&mutate(&text, &mut r));
            }
        }
        // The plain texts of known types are the direct reader's to read, nearly all of them
        // (a random `code` may pick another message, which then refuses a member).
        prop_assert!(direct * 10 >= plain * 9, "direct reader read {} of {}", direct, plain);
    }
}

/// The server's event, edge cases of the rules, and texts that are not events.
#[test]
fn direct_reader_agrees_on_chosen_cases() {
    let ev = r#"{"ei":0,"event":"session.start","uid":"00000001-1b59-4858-b3a3-5e9467a77616","code":"T2000I","time":"2024-01-15T10:00:00.000Z","cluster_name":"bench.example.com","user":"joe","login":"root","sid":"9b6ec731-80f7-4751-9154-4214ecdc812a","namespace":"default","server_id":"ade010d6-4e75-4ed8-9f92-886a4f49eb26","server_hostname":"node-1","addr.remote":"173.160.69.53:56544","size":"80:25","session_recording":"node"}"#;
    assert!(check(ev), "the plain event is read directly");
    let printed = AuditEvent::from_json(ev).unwrap().to_json();
    assert!(
        check(&printed),
        "the event as printed is read directly: {printed}"
    );
    let with = |extra: &str| format!("{},{extra}}}", &ev[..ev.len() - 1]);
    let direct = [
        with(r#""USER":"ann""#),
        with(r#""user":"ann""#),
        with(r#""user":null"#),
        with(r#""zz":[1,2,{"x":"y"}]"#),
        with(r#""\u0075ser":"esc""#),
        with(r#""code":"T2000I""#),
        format!("  {ev}\n"),
    ];
    for t in &direct {
        assert!(check(t), "read directly: {t}");
    }
    let declined = [
        with(r#""zz":1e400"#),
        with(r#""zz":"\ud800""#),
        with(&format!(r#""zz":{}{}"#, "[".repeat(127), "]".repeat(127))),
        with(r#""user":5"#),
        with(r#""time":"yesterday""#),
        with(r#""ei":"0""#),
        with(r#""code":7"#),
        with(""),
        format!("{ev} x"),
        format!("[{ev}]"),
        ev.replace("session.start", "no.such.type"),
        ev.replace(r#""event":"session.start","#, ""),
        ev.replace(r#""session.start""#, r#""""#),
        ev.replace(r#""session.start""#, "null"),
        r#"{"event":"scp","code":"T3010E","action":3,"path":"/x"}"#.to_string(),
        "{}".into(),
        "[]".into(),
        "".into(),
        "nul".into(),
    ];
    for t in &declined {
        check(t);
    }
    // Sanity of the table lookups the test relies on.
    assert_eq!(message_for("session.start", "T2000I"), Some("SessionStart"));
}

/// Arrays as a server body holds them: the items are the texts of the events.
#[test]
fn array_items_are_the_item_texts() {
    let items = array_items(r#" [ {"a":1} ,{"b":[2]},"x" ] "#).unwrap();
    assert_eq!(items, vec![r#"{"a":1}"#, r#"{"b":[2]}"#, r#""x""#]);
    assert!(array_items("{}").is_err());
    assert!(array_items("[1,]").is_err());
    assert!(array_items("[1] 2").is_err());
}
