//! The event model: wire and JSON round trips of every event kind, Teleport's golden JSON,
//! unknown events, the type table.

use proptest::prelude::*;
use tapelog_core::event::{AuditEvent, EVENT_KINDS, EVENT_TYPES, EventFields, message_for};
use tapelog_core::json::JsonFields as _;
use tapelog_core::random::Rng;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random events of every kind → encode → decode → equal, and the size is exact.
    #[test]
    fn every_kind_round_trips_on_the_wire(seed in any::<u64>()) {
        for &(field, name) in EVENT_KINDS {
            let mut r = Rng::new(seed ^ u64::from(field));
            let e = AuditEvent::random_of(field, &mut r).unwrap();
            let bytes = e.to_oneof_bytes();
            prop_assert_eq!(bytes.len(), e.oneof_len(), "{}", name);
            let back = AuditEvent::decode_oneof(&bytes).unwrap();
            prop_assert_eq!(&back, &e, "{}", name);
            prop_assert_eq!(back.to_oneof_bytes(), bytes, "{}", name);
        }
    }

    /// JSON printed for an event of every kind reads back to an event that prints the same.
    #[test]
    fn every_kind_json_is_stable(seed in any::<u64>()) {
        for &(field, name) in EVENT_KINDS {
            let mut r = Rng::new(seed.rotate_left(7) ^ u64::from(field));
            let e = AuditEvent::random_of(field, &mut r).unwrap();
            let json = e.to_json();
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let obj = v.as_object().unwrap();
            let back = AuditEvent::from_json_object_as(name, obj).unwrap().unwrap();
            prop_assert_eq!(back.to_json(), json, "{}", name);
        }
    }
}

/// Lines Teleport itself printed (RFD 0047 playback files, the e2e events.jsonl), which
/// tapelog must read and print back byte for byte.
const GOLDEN: &[&str] = &[
    r#"{"ei":0,"event":"session.start","uid":"c06685ff-1b59-4858-b3a3-5e9467a77616","code":"T2000I","time":"2021-11-18T15:33:59.792Z","cluster_name":"teleport.zacazure.grvpoc.com","user":"joe","login":"root","sid":"9b6ec731-80f7-4751-9154-4214ecdc812a","namespace":"default","server_id":"ade010d6-4e75-4ed8-9f92-886a4f49eb26","server_hostname":"localhost","server_addr":"173.230.128.45:45350","addr.remote":"173.160.69.53:56544","size":"80:25","session_recording":"node"}"#,
    r#"{"ei":1,"event":"resize","uid":"c13d7ba5-42d0-4dbe-9c16-7fc772093055","code":"T2002I","time":"2021-11-18T15:33:59.862Z","cluster_name":"teleport.zacazure.grvpoc.com","user":"joe","login":"root","sid":"9b6ec731-80f7-4751-9154-4214ecdc812a","namespace":"default","server_id":"ade010d6-4e75-4ed8-9f92-886a4f49eb26","server_hostname":"localhost","server_addr":"173.230.128.45:45350","size":"168:44"}"#,
    r#"{"ei":2,"event":"print","time":"2021-11-18T15:34:00.069Z","cluster_name":"teleport.zacazure.grvpoc.com","ci":0,"bytes":40,"ms":0,"offset":0}"#,
    r#"{"ei":3,"event":"print","time":"2021-11-18T15:34:00.769Z","cluster_name":"teleport.zacazure.grvpoc.com","ci":1,"bytes":1,"ms":700,"offset":40}"#,
    r#"{"ei":23,"event":"session.end","uid":"54c8723c-e91e-4c34-affe-7dddeeda949a","code":"T2004I","time":"2026-03-27T16:36:19.938Z","cluster_name":"teleport-e2e","user":"bob","login":"root","user_kind":1,"user_roles":["access","admin","auditor","editor","updater_admin","awsidentitycenter"],"user_cluster_name":"teleport-e2e","sid":"e3286c06-d0ec-4d84-aeab-75692b885e3b","private_key_policy":"none","addr.remote":"[::1]:61152","proto":"ssh","namespace":"default","server_id":"59f4906c-d997-4b77-b5cb-0b29346f6469","server_hostname":"im-a-nodename","server_addr":"[::]:3022","server_labels":{"env":"example","hostname":"Yassines-MacBook-Pro.local"},"server_sub_kind":"teleport","server_version":"19.0.0-prealpha.2","enhanced_recording":false,"interactive":true,"participants":["bob"],"session_start":"2026-03-27T16:36:15.040647Z","session_stop":"2026-03-27T16:36:19.938249Z","session_recording":"node"}"#,
];

#[test]
fn teleport_json_reads_and_prints_back_byte_for_byte() {
    for line in GOLDEN {
        let e = AuditEvent::from_json(line).unwrap();
        assert_ne!(e.message_name(), "Unknown", "{line}");
        assert_eq!(e.to_json(), *line);
        // and through the wire format
        let back = AuditEvent::decode_oneof(&e.to_oneof_bytes()).unwrap();
        assert_eq!(back.to_json(), *line);
    }
}

#[test]
fn golden_events_have_their_accessors() {
    let e = AuditEvent::from_json(GOLDEN[0]).unwrap();
    assert_eq!(e.event_type(), "session.start");
    assert_eq!(e.code(), "T2000I");
    assert_eq!(e.index(), 0);
    assert_eq!(e.session_id(), "9b6ec731-80f7-4751-9154-4214ecdc812a");
    assert_eq!(e.user(), "joe");
    assert_eq!(e.login(), "root");
    assert_eq!(e.server_id(), "ade010d6-4e75-4ed8-9f92-886a4f49eb26");
    assert_eq!(e.cluster_name(), "teleport.zacazure.grvpoc.com");
    assert_eq!(e.time().to_rfc3339(), "2021-11-18T15:33:59.792Z");
    let f = EventFields::from_event(&e);
    assert_eq!(f.get_type(), "session.start");
    assert_eq!(f.get_code(), "T2000I");
    assert_eq!(f.get_int("ei"), 0);
    assert_eq!(f.get_timestamp(), e.time());
    assert_eq!(f.to_event().unwrap(), e);
}

/// Teleport's print event protobuf layout, byte by byte (docs/format.md).
#[test]
fn print_event_bytes_are_teleports_layout() {
    let e = AuditEvent::from_json(GOLDEN[3]).unwrap();
    let AuditEvent::SessionPrint(mut p) = e else {
        panic!("not a print event")
    };
    p.data = b"x".to_vec();
    p.metadata.cluster_name = "c".into();
    let bytes = AuditEvent::SessionPrint(p).to_oneof_bytes();
    // Metadata: ei=3, "print", time {seconds, nanos}, cluster "c".
    let secs = 1_637_249_640u64; // 2021-11-18T15:34:00Z
    let mut ts = vec![0x08];
    put_varint(&mut ts, secs);
    ts.push(0x10);
    put_varint(&mut ts, 769_000_000);
    let mut meta = vec![0x08, 0x03, 0x12, 0x05];
    meta.extend_from_slice(b"print");
    meta.push(0x2a);
    meta.push(ts.len() as u8);
    meta.extend_from_slice(&ts);
    meta.extend_from_slice(&[0x32, 0x01, b'c']);
    let mut print = vec![0x0a, meta.len() as u8];
    print.extend_from_slice(&meta);
    print.extend_from_slice(&[0x10, 0x01]); // ci = 1
    print.extend_from_slice(&[0x1a, 0x01, b'x']); // data
    print.extend_from_slice(&[0x20, 0x01]); // bytes = 1
    print.extend_from_slice(&[0x28, 0xbc, 0x05]); // ms = 700
    print.extend_from_slice(&[0x30, 0x28]); // offset = 40
    let mut want = vec![0x3a, print.len() as u8];
    want.extend_from_slice(&print);
    assert_eq!(bytes, want);
}

fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

#[test]
fn unknown_json_type_becomes_an_unknown_event_keeping_the_json() {
    let line = r#"{"event":"future.thing","code":"TX001I","uid":"u1","time":"2024-01-02T03:04:05Z","ei":7,"extra":{"a":1}}"#;
    let e = AuditEvent::from_json(line).unwrap();
    let AuditEvent::Unknown(u) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(u.metadata.type_, "unknown");
    assert_eq!(u.metadata.code, "TCC00E");
    assert_eq!(u.unknown_type, "future.thing");
    assert_eq!(u.unknown_code, "TX001I");
    // Upstream's `data`: Go's json.Marshal over the decoded map (keys sorted, compact).
    assert_eq!(
        u.data,
        r#"{"code":"TX001I","ei":7,"event":"future.thing","extra":{"a":1},"time":"2024-01-02T03:04:05Z","uid":"u1"}"#
    );
    assert_eq!(u.metadata.id, "u1");
    assert_eq!(e.index(), 7);
}

#[test]
fn every_type_in_the_table_decodes_to_its_message() {
    let mut checked = 0;
    for t in EVENT_TYPES {
        let Some(msg) = t.message else { continue };
        let code = t.codes.first().copied().unwrap_or("");
        assert_eq!(
            message_for(t.event_type, code),
            Some(msg),
            "{}",
            t.event_type
        );
        let json = format!(
            r#"{{"event":{:?},"code":{:?},"time":"2024-01-01T00:00:00Z"}}"#,
            t.event_type, code
        );
        let e = AuditEvent::from_json(&json).unwrap();
        assert_eq!(e.message_name(), msg, "{}", t.event_type);
        assert_eq!(e.event_type(), t.event_type);
        checked += 1;
    }
    assert!(checked > 150, "only {checked} event types map to messages");
}

#[test]
fn events_with_go_zero_time_print_it() {
    let e = AuditEvent::from_json(r#"{"event":"print"}"#).unwrap();
    assert_eq!(
        e.to_json(),
        r#"{"ei":0,"event":"print","time":"0001-01-01T00:00:00Z","ci":0,"bytes":0,"ms":0,"offset":0}"#
    );
}

#[test]
fn json_type_errors_name_the_field() {
    let err = AuditEvent::from_json(r#"{"event":"print","ei":"seven"}"#).unwrap_err();
    assert!(err.to_string().contains("\"ei\""), "{err}");
    let err = AuditEvent::from_json(r#"{"ei":1}"#).unwrap_err();
    assert!(err.to_string().contains("no \"event\""), "{err}");
    assert!(AuditEvent::from_json("not json").is_err());
}

#[test]
fn json_keys_match_case_insensitively_like_go() {
    let e = AuditEvent::from_json(r#"{"event":"print","EI":5,"Bytes":3}"#).unwrap();
    assert_eq!(e.index(), 5);
    let mut p = tapelog_core::event::SessionPrint::default();
    p.merge_json_object(
        serde_json::from_str::<serde_json::Value>(r#"{"OFFSET":9}"#)
            .unwrap()
            .as_object()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(p.offset, 9);
}

/// Found by the `json_event` fuzz target: an event of a type this build does not know becomes
/// Teleport's `unknown` event, and printing then parsing that again must give the same JSON.
#[test]
fn unknown_type_json_is_stable() {
    let text = r#"{"ei":-6807899191060886214,"event":"back\\slash","uid":"\u0001\u0001","code":"a\"b","time":"2028-06-06T06:03:22.254Z","cluster_name":"root","status":{"success":false,"message":"back\\slash "}}"#;
    let e = AuditEvent::from_json(text).unwrap();
    assert_eq!(e.event_type(), "unknown");
    let json = e.to_json();
    let again = AuditEvent::from_json(&json).unwrap();
    assert_eq!(again.to_json(), json);
}

/// Upstream's `FromEventFields`: when the fields do not fit the type's message, the event is
/// kept as `unknown` with its JSON rather than refused.
#[test]
fn fields_that_do_not_fit_the_message_become_unknown() {
    let text = r#"{"event":"session.start","code":"T2000I","time":"2024-01-01T00:00:00Z","size":7,"user":"joe"}"#;
    let e = AuditEvent::from_json(text).unwrap();
    let AuditEvent::Unknown(u) = &e else {
        panic!("{}", e.message_name())
    };
    assert_eq!(u.unknown_type, "session.start");
    assert_eq!(u.unknown_code, "T2000I");
    assert_eq!(
        u.data,
        r#"{"code":"T2000I","event":"session.start","size":7,"time":"2024-01-01T00:00:00Z","user":"joe"}"#
    );
    // A Metadata field of the wrong kind breaks `unknown` too: then it is an error naming it.
    let err = AuditEvent::from_json(r#"{"event":"session.start","ei":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("\"ei\""), "{err}");
}

/// gravitational/teleport#59469: SFTP events once written as `scp` with code T3010E read back as
/// SFTP events with type `sftp` and code TS020E; a well-formed SCP event with that code stays SCP.
#[test]
fn misfiled_sftp_events_are_read_as_sftp() {
    let text =
        r#"{"event":"scp","code":"T3010E","time":"2024-01-01T00:00:00Z","action":7,"path":"/etc"}"#;
    let e = AuditEvent::from_json(text).unwrap();
    assert_eq!(e.message_name(), "SFTP");
    assert_eq!(e.event_type(), "sftp");
    assert!(
        e.to_json().contains(r#""code":"TS020E""#),
        "{}",
        e.to_json()
    );
    let scp = r#"{"event":"scp","code":"T3010E","time":"2024-01-01T00:00:00Z","action":"upload","path":"/etc"}"#;
    assert_eq!(AuditEvent::from_json(scp).unwrap().message_name(), "SCP");
}

#[test]
fn code_table_names_types_from_the_type_table() {
    use tapelog_core::event::EVENT_CODES;
    let types: std::collections::HashSet<_> = EVENT_TYPES.iter().map(|t| t.event_type).collect();
    let mut seen = std::collections::HashSet::new();
    for c in EVENT_CODES {
        assert!(seen.insert(c.code), "code {} twice", c.code);
        assert!(
            c.event_type.is_empty() || types.contains(c.event_type),
            "{} names unknown type {}",
            c.code,
            c.event_type
        );
    }
    assert!(EVENT_CODES.len() > 300);
}

/// `data` of an `unknown` event is what Go's `json.Marshal` prints for the decoded map: HTML
/// characters and U+2028/U+2029 escaped, `\b`/`\f` by name, numbers as float64 (big integers
/// rounded, exponents past 1e21), spaces and key order of the input gone.
#[test]
fn unknown_data_is_marshalled_as_go_does() {
    let line = "{ \"uid\": \"u\", \"event\":\"x.y\", \"n\": 12345678901234567890, \"f\": 1.5e300, \"small\": 0.000001, \"tiny\": 1e-7, \"s\": \"<a&b>\\u2028\\b\\f\\u0001é\", \"l\": [true, null, -0.0, 100] }";
    let e = AuditEvent::from_json(line).unwrap();
    let AuditEvent::Unknown(u) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        u.data,
        r#"{"event":"x.y","f":1.5e+300,"l":[true,null,-0,100],"n":12345678901234567000,"s":"\u003ca\u0026b\u003e\u2028\b\f\u0001é","small":0.000001,"tiny":1e-7,"uid":"u"}"#
    );
}

/// Whether a JSON value holds a float anywhere (Go and serde_json spell some floats apart).
fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(has_float),
        serde_json::Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// serde: `serde_json` writes the JSON writer's document (text equal unless a float is in
    /// it, then equal as values), and an event read back through serde — from JSON text, from a
    /// `serde_json::Value` and from MessagePack (`rmp-serde`, a binary format) — is what the
    /// JSON reader makes of the same JSON.
    #[test]
    fn every_kind_goes_through_serde_as_teleport_json(seed in any::<u64>()) {
        for &(field, name) in EVENT_KINDS {
            let mut r = Rng::new(seed.rotate_left(13) ^ u64::from(field));
            let e = AuditEvent::random_of(field, &mut r).unwrap();
            let json = e.to_json();
            let via_serde = serde_json::to_string(&e).unwrap();
            let expected: serde_json::Value = serde_json::from_str(&json).unwrap();
            let got: serde_json::Value = serde_json::from_str(&via_serde).unwrap();
            prop_assert_eq!(&got, &expected, "{}", name);
            if !has_float(&expected) {
                prop_assert_eq!(&via_serde, &json, "{}", name);
            }
            // What the JSON reader makes of the text: an event, or an error (a random event
            // may have no usable `event` type), which serde must then give too.
            let reader = AuditEvent::from_json(&json)
                .map(|r| serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap());
            let from_text = serde_json::from_str::<AuditEvent>(&via_serde).map_err(|e| e.to_string());
            let from_value =
                serde_json::from_value::<AuditEvent>(got.clone()).map_err(|e| e.to_string());
            let packed = rmp_serde::to_vec(&e).unwrap();
            let from_msgpack =
                rmp_serde::from_slice::<AuditEvent>(&packed).map_err(|e| e.to_string());
            for back in [from_text, from_value, from_msgpack] {
                match (&reader, back) {
                    (Ok(expected), Ok(back)) => {
                        let v: serde_json::Value = serde_json::from_str(&back.to_json()).unwrap();
                        prop_assert_eq!(&v, expected, "{}", name);
                    }
                    (Err(r), Err(s)) => prop_assert!(s.contains(&r.to_string()), "{}: {} / {}", name, r, s),
                    (r, s) => prop_assert!(false, "{}: the reader gave {:?}, serde {:?}", name, r.is_ok(), s.is_ok()),
                }
            }
        }
    }
}

#[test]
fn teleport_json_goes_through_serde_byte_for_byte() {
    for line in GOLDEN {
        let e: AuditEvent = serde_json::from_str(line).unwrap();
        assert_ne!(e.message_name(), "Unknown", "{line}");
        assert_eq!(serde_json::to_string(&e).unwrap(), *line);
        // A generated message on its own: the session.start body.
        if let AuditEvent::SessionStart(m) = &e {
            let text = serde_json::to_string(m.as_ref()).unwrap();
            assert_eq!(text, *line);
            let back: tapelog_core::event::schema::SessionStart =
                serde_json::from_str(&text).unwrap();
            assert_eq!(&back, m.as_ref());
        }
    }
    // A value that is not an event is a serde error that says why.
    let err = serde_json::from_str::<AuditEvent>(r#"{"time":"2021-11-18T15:33:59.792Z"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("event"), "{err}");
}
