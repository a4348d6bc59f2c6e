//! Teleport's JSON: the writer reproduces what Go's `utils.FastMarshal` (json-iterator with
//! `EscapeHTML: false`, sorted map keys) prints for an event; the reader accepts what Go's
//! decoder accepts (exact keys first, then ASCII case-insensitively; `null` leaves a field as is).

pub mod direct;
mod read;
mod serde_impl;
mod write;

pub use read::{
    FromJson, JsonError, JsonFields, base64_list_from_json, base64_map_from_json, bytes_from_json,
    from_json_value, message_map_from_json, messages_from_json,
};
pub(crate) use serde_impl::{
    de_error, deserialize_json_value, serde_via_json, serialize_json_text,
};
pub use write::{
    Base64List, List, ObjectWriter, StrMap, ToJson, write_go_float, write_go_marshal_value,
    write_json_string, write_json_value,
};

/// Serialises any [`ToJson`] value to a string.
pub fn to_string<T: ToJson + ?Sized>(v: &T) -> String {
    let mut out = String::with_capacity(256);
    v.write_json(&mut out);
    out
}
