//! Property tests of the Forward protocol codec: any JSON object survives a batch's
//! encoding and the receiver's decoding; any bytes, whole or split anywhere, give the same
//! result from every decoder, and never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Map, Value as Json};
use tapelog_core::fluentd::msgpack::{self, DecodeError, Limits};
use tapelog_core::fluentd::{
    AckDecoder, EventTime, MessageDecoder, decode_message, encode_packed_forward,
};

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Json::from),
        ".{0,40}".prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..20)
                .prop_map(|m| Json::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Json> {
    prop::collection::btree_map("[a-z.]{1,12}", json(), 0..24)
        .prop_map(|m| Json::Object(m.into_iter().filter(|(k, _)| k != "time").collect()))
}

proptest! {
    #[test]
    fn json_objects_survive_a_batch(events in prop::collection::vec(object(), 1..12), seconds in any::<u32>()) {
        let now = EventTime { seconds, nanos: 0 };
        let texts: Vec<String> = events.iter().map(Json::to_string).collect();
        let bytes = encode_packed_forward("a.tag", &texts, "Y2h1bms=", now).unwrap();
        let m = decode_message(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(m.tag, "a.tag");
        prop_assert_eq!(m.options.size, Some(events.len() as u64));
        prop_assert_eq!(m.entries.len(), events.len());
        for (entry, event) in m.entries.iter().zip(&events) {
            prop_assert_eq!(entry.time, now);
            prop_assert_eq!(&entry.record.to_json().unwrap(), event);
        }
    }

    #[test]
    fn any_bytes_decode_the_same_whole_or_split(data in prop::collection::vec(any::<u8>(), 0..256), cut in any::<usize>()) {
        let limits = Limits { max_depth: 8, max_bytes: 128 };
        let whole = msgpack::decode(&data, &limits);
        let skipped = msgpack::skip(&data, &limits);
        match (&whole, &skipped) {
            (Ok((_, n)), Ok(m)) => prop_assert_eq!(n, m),
            (Err(a), Err(b)) => prop_assert_eq!(std::mem::discriminant(a), std::mem::discriminant(b)),
            _ => prop_assert!(false, "decode {whole:?} but skip {skipped:?}"),
        }
        let cut = if data.is_empty() { 0 } else { cut % data.len() };
        let poll_all = |parts: &[&[u8]]| {
            let mut d = MessageDecoder::new(512);
            let mut out = Vec::new();
            for part in parts {
                if let Err(e) = d.push(part) {
                    out.push(Err(e));
                    return out;
                }
                loop {
                    match d.poll() {
                        Ok(Some(m)) => out.push(Ok(m)),
                        Ok(None) => break,
                        Err(e) => {
                            out.push(Err(e));
                            return out;
                        }
                    }
                }
            }
            out
        };
        prop_assert_eq!(poll_all(&[&data]), poll_all(&[&data[..cut], &data[cut..]]));
        let mut acks = AckDecoder::new(128);
        if acks.push(&data).is_ok() {
            let _ = acks.poll();
        }
        if let Err(DecodeError::Incomplete) = whole {
            prop_assert!(skipped.is_err());
        }
    }
}
