//! Teleport's `wrappers.Traits` (user traits) and the container for unknown fields.

use std::collections::BTreeMap;

use super::{
    DecodeError, Message, WireType, expect_wire, len_field_len, merge_nested, put_key, put_varint,
    read_string,
};

/// Fields of a message that this build does not know, kept verbatim (keys included) and
/// written back after the known fields, as Go's generated code does with `XXX_unrecognized`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UnknownFields(pub Vec<u8>);

impl UnknownFields {
    /// Whether nothing unknown was seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// User traits: a map of trait name to values (`wrappers.Traits` in Go). On the wire a
/// `wrappers.LabelValues { map<string, StringValues> Values = 1 }`; in JSON an object of arrays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Traits(pub BTreeMap<String, Vec<String>>);

fn string_values_len(values: &[String]) -> usize {
    values.iter().map(|v| len_field_len(1, v.len())).sum()
}

fn entry_len(key: &str, values: &[String]) -> usize {
    len_field_len(1, key.len()) + len_field_len(2, string_values_len(values))
}

#[derive(Default)]
struct StringValues(Vec<String>);

impl Message for StringValues {
    const NAME: &'static str = "wrappers.StringValues";
    fn encoded_len(&self) -> usize {
        string_values_len(&self.0)
    }
    fn encode_raw(&self, buf: &mut Vec<u8>) {
        for v in &self.0 {
            super::put_len_field(buf, 1, v.as_bytes());
        }
    }
    fn merge_field(
        &mut self,
        field: u32,
        wire_type: WireType,
        _key_start: &[u8],
        buf: &mut &[u8],
        _depth: u32,
    ) -> Result<(), DecodeError> {
        if field == 1 {
            expect_wire(Self::NAME, 1, wire_type, WireType::Len)?;
            self.0.push(read_string(buf)?);
            Ok(())
        } else {
            super::skip_value(wire_type, buf)
        }
    }
}

#[derive(Default)]
struct Entry {
    key: String,
    values: StringValues,
}

impl Message for Entry {
    const NAME: &'static str = "wrappers.LabelValues.ValuesEntry";
    fn encoded_len(&self) -> usize {
        entry_len(&self.key, &self.values.0)
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
                merge_nested(&mut self.values, buf, depth)
            }
            _ => super::skip_value(wire_type, buf),
        }
    }
}

impl Message for Traits {
    const NAME: &'static str = "wrappers.LabelValues";
    fn encoded_len(&self) -> usize {
        self.0
            .iter()
            .map(|(k, v)| len_field_len(1, entry_len(k, v)))
            .sum()
    }
    fn encode_raw(&self, buf: &mut Vec<u8>) {
        for (k, values) in &self.0 {
            put_key(buf, 1, WireType::Len);
            put_varint(buf, entry_len(k, values) as u64);
            super::put_len_field(buf, 1, k.as_bytes());
            put_key(buf, 2, WireType::Len);
            put_varint(buf, string_values_len(values) as u64);
            for v in values {
                super::put_len_field(buf, 1, v.as_bytes());
            }
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
        if field == 1 {
            expect_wire(Self::NAME, 1, wire_type, WireType::Len)?;
            let mut entry = Entry::default();
            merge_nested(&mut entry, buf, depth)?;
            self.0.insert(entry.key, entry.values.0);
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
    fn traits_round_trip() {
        let mut t = Traits::default();
        t.0.insert("logins".into(), vec!["root".into(), "ubuntu".into()]);
        t.0.insert("empty".into(), vec![]);
        let b = t.encode_to_vec();
        assert_eq!(b.len(), t.encoded_len());
        assert_eq!(Traits::decode(&b).unwrap(), t);
    }
}
