//! `google.protobuf.Struct`, held as a JSON object (Teleport prints it as plain JSON).

use serde_json::{Map, Number, Value};

use super::{
    DecodeError, Message, WireType, expect_wire, len_field_len, merge_nested, put_key,
    put_len_field, put_varint, read_fixed64, read_string, read_varint,
};

/// A `google.protobuf.Struct`: a JSON object. Keys are kept sorted; numbers are f64 on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonStruct(pub Map<String, Value>);

fn value_len(v: &Value) -> usize {
    match v {
        Value::Null => 2,
        Value::Bool(_) => 2,
        Value::Number(_) => 9,
        Value::String(s) => len_field_len(3, s.len()),
        Value::Object(m) => len_field_len(5, struct_len(m)),
        Value::Array(a) => len_field_len(6, list_len(a)),
    }
}

fn list_len(a: &[Value]) -> usize {
    a.iter().map(|v| len_field_len(1, value_len(v))).sum()
}

fn entry_len(k: &str, v: &Value) -> usize {
    len_field_len(1, k.len()) + len_field_len(2, value_len(v))
}

fn struct_len(m: &Map<String, Value>) -> usize {
    m.iter()
        .map(|(k, v)| len_field_len(1, entry_len(k, v)))
        .sum()
}

fn put_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.extend_from_slice(&[0x08, 0x00]),
        Value::Bool(b) => buf.extend_from_slice(&[0x20, u8::from(*b)]),
        Value::Number(n) => {
            buf.push(0x11);
            buf.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
        }
        Value::String(s) => put_len_field(buf, 3, s.as_bytes()),
        Value::Object(m) => {
            put_key(buf, 5, WireType::Len);
            put_varint(buf, struct_len(m) as u64);
            put_struct(buf, m);
        }
        Value::Array(a) => {
            put_key(buf, 6, WireType::Len);
            put_varint(buf, list_len(a) as u64);
            for item in a {
                put_key(buf, 1, WireType::Len);
                put_varint(buf, value_len(item) as u64);
                put_value(buf, item);
            }
        }
    }
}

fn put_struct(buf: &mut Vec<u8>, m: &Map<String, Value>) {
    for (k, v) in m {
        put_key(buf, 1, WireType::Len);
        put_varint(buf, entry_len(k, v) as u64);
        put_len_field(buf, 1, k.as_bytes());
        put_key(buf, 2, WireType::Len);
        put_varint(buf, value_len(v) as u64);
        put_value(buf, v);
    }
}

#[derive(Default)]
struct ValueWire(Option<Value>);

impl Message for ValueWire {
    const NAME: &'static str = "google.protobuf.Value";
    fn encoded_len(&self) -> usize {
        self.0.as_ref().map_or(0, value_len)
    }
    fn encode_raw(&self, buf: &mut Vec<u8>) {
        if let Some(v) = &self.0 {
            put_value(buf, v)
        }
    }
    fn merge_field(
        &mut self,
        field: u32,
        wire_type: WireType,
        _key_start: &[u8],
        buf: &mut &[u8],
        depth: u32,
    ) -> Result<(), DecodeError> {
        let expected = match field {
            1 | 4 => WireType::Varint,
            2 => WireType::Fixed64,
            3 | 5 | 6 => WireType::Len,
            _ => return super::skip_value(wire_type, buf),
        };
        expect_wire(Self::NAME, field, wire_type, expected)?;
        self.0 = Some(match field {
            1 => {
                read_varint(buf)?;
                Value::Null
            }
            2 => {
                let f = f64::from_bits(read_fixed64(buf)?);
                // JSON has no NaN or infinity; Go's jsonpb refuses them too. Keep null.
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            3 => Value::String(read_string(buf)?),
            4 => Value::Bool(read_varint(buf)? != 0),
            5 => {
                let mut s = JsonStruct::default();
                merge_nested(&mut s, buf, depth)?;
                Value::Object(s.0)
            }
            _ => {
                let mut l = ListWire::default();
                merge_nested(&mut l, buf, depth)?;
                Value::Array(l.0)
            }
        });
        Ok(())
    }
}

#[derive(Default)]
struct ListWire(Vec<Value>);

impl Message for ListWire {
    const NAME: &'static str = "google.protobuf.ListValue";
    fn encoded_len(&self) -> usize {
        list_len(&self.0)
    }
    fn encode_raw(&self, _buf: &mut Vec<u8>) {}
    fn merge_field(
        &mut self,
        field: u32,
        wire_type: WireType,
        _key_start: &[u8],
        buf: &mut &[u8],
        depth: u32,
    ) -> Result<(), DecodeError> {
        if field == 1 {
            expect_wire(Self::NAME, 1, wire_type, WireType::Len)?;
            let mut v = ValueWire::default();
            merge_nested(&mut v, buf, depth)?;
            self.0.push(v.0.unwrap_or(Value::Null));
            Ok(())
        } else {
            super::skip_value(wire_type, buf)
        }
    }
}

#[derive(Default)]
struct EntryWire {
    key: String,
    value: ValueWire,
}

impl Message for EntryWire {
    const NAME: &'static str = "google.protobuf.Struct.FieldsEntry";
    fn encoded_len(&self) -> usize {
        0
    }
    fn encode_raw(&self, _buf: &mut Vec<u8>) {}
    fn merge_field(
        &mut self,
        field: u32,
        wire_type: WireType,
        _key_start: &[u8],
        buf: &mut &[u8],
        depth: u32,
    ) -> Result<(), DecodeError> {
        match field {
            1 => {
                expect_wire(Self::NAME, 1, wire_type, WireType::Len)?;
                self.key = read_string(buf)?;
                Ok(())
            }
            2 => {
                expect_wire(Self::NAME, 2, wire_type, WireType::Len)?;
                merge_nested(&mut self.value, buf, depth)
            }
            _ => super::skip_value(wire_type, buf),
        }
    }
}

impl Message for JsonStruct {
    const NAME: &'static str = "google.protobuf.Struct";
    fn encoded_len(&self) -> usize {
        struct_len(&self.0)
    }
    fn encode_raw(&self, buf: &mut Vec<u8>) {
        put_struct(buf, &self.0)
    }
    fn merge_field(
        &mut self,
        field: u32,
        wire_type: WireType,
        _key_start: &[u8],
        buf: &mut &[u8],
        depth: u32,
    ) -> Result<(), DecodeError> {
        if field == 1 {
            expect_wire(Self::NAME, 1, wire_type, WireType::Len)?;
            let mut e = EntryWire::default();
            merge_nested(&mut e, buf, depth)?;
            self.0.insert(e.key, e.value.0.unwrap_or(Value::Null));
            Ok(())
        } else {
            super::skip_value(wire_type, buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_round_trip() {
        let v: Value = serde_json::json!({"a": 1.5, "b": [true, null, "x", {"c": -2.0}], "d": {}});
        let Value::Object(m) = v else { unreachable!() };
        let s = JsonStruct(m);
        let b = s.encode_to_vec();
        assert_eq!(b.len(), s.encoded_len());
        assert_eq!(JsonStruct::decode(&b).unwrap(), s);
    }

    #[test]
    fn deep_nesting_is_refused() {
        // 200 nested list values: each level is field 6 (list) of a Value inside a Struct entry.
        let mut v = Value::Null;
        for _ in 0..200 {
            v = Value::Array(vec![v]);
        }
        let mut m = Map::new();
        m.insert("k".into(), v);
        let b = JsonStruct(m).encode_to_vec();
        assert_eq!(JsonStruct::decode(&b), Err(DecodeError::RecursionLimit));
    }
}
