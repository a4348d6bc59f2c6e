//! A byte-level tonic codec for the calls that carry `events.OneOf`.
//!
//! tapelog does not model `events.OneOf` with prost: its events are
//! [`tapelog_core::AuditEvent`]s. The `/proto.AuthService/GetEvents` and
//! `/proto.AuthService/StreamSessionEvents` calls therefore move raw message bytes through
//! [`RawCodec`]; requests are encoded with prost, and replies are split into their items here
//! and decoded by the caller, so that a bad item becomes a typed error naming its position.

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends and receives whole protobuf messages as bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// The encoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// The decoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// `proto.Events` with its items left as the bytes of each `events.OneOf` (wire-identical
/// to upstream: a repeated message field and a repeated bytes field encode the same way).
#[derive(Clone, PartialEq, Message)]
pub struct EventsWire {
    /// Field 1 `Items`: one `events.OneOf` record each.
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub items: Vec<Bytes>,
    /// Field 2 `LastKey`.
    #[prost(string, tag = "2")]
    pub last_key: String,
}
