//! Fluentd's Forward protocol (v1), sans-IO: the bytes `tapelog forward` sends to a Fluentd
//! `in_forward` source (or Fluent Bit, or anything that speaks the protocol) and the `ack`
//! it reads back.
//!
//! - [`msgpack`]: a small MessagePack encoder and a bounded, incremental decoder.
//! - [`forward_protocol`]: a batch of Teleport JSON events as one **PackedForward** message
//!   (`[tag, bin(entries), {"size": n, "chunk": id}]`), the receiver's side of the same
//!   (every mode decoded, for tests and tools), and the `{"ack": id}` answer both ways.
//!
//! Nothing here reads a clock or makes ids: the send time and the chunk id are arguments.
//! See `docs/forward-protocol.md`.

pub mod forward_protocol;
pub mod msgpack;

pub use forward_protocol::{
    AckDecoder, AckError, EncodeError, Entry, EventTime, ForwardMessage, MessageDecoder,
    MessageError, Mode, Options, decode_message, encode_ack, encode_packed_forward,
};
