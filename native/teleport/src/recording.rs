//! A session's typed events (from [`AuthClient::stream_session_events`]) written back into a
//! ProtoStream V1 recording by tapelog's own writer, as a stream of bytes: what the CLI's
//! `play`/`export --teleport` read from a temporary file and what `serve --teleport` sends
//! as `GET /v1/sessions/{sid}/recording`. Teleport's API gives the events, not the stored
//! bytes; the rebuilt recording holds the same events (print data included) in Teleport's
//! format, though not byte for byte the parts the cluster stored.
//!
//! [`AuthClient::stream_session_events`]: crate::AuthClient::stream_session_events

use std::collections::VecDeque;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use tapelog_core::AuditEvent;
use tapelog_core::codec::{EncodedPart, RecordingWriter, WriterConfig};

use crate::{ResultStream, TeleportError};

/// The call whose events are encoded (named in errors).
const RPC: &str = "StreamSessionEvents";

/// Zero bytes the padding of a part is sent from, a slice at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

struct Encoder {
    events: ResultStream<AuditEvent>,
    writer: Option<RecordingWriter>,
    out: VecDeque<Bytes>,
    position: usize,
    addr: String,
}

impl Encoder {
    fn push_parts(&mut self, parts: Vec<EncodedPart>) {
        for p in parts {
            self.out.push_back(Bytes::from(p.data));
            let mut left = p.padding;
            while left > 0 {
                let n = left.min(ZEROS.len() as u64) as usize;
                self.out.push_back(Bytes::from_static(&ZEROS[..n]));
                left -= n as u64;
            }
        }
    }
}

/// The recording of `events` as chunks of bytes, in order. An event the writer refuses, or
/// a failed stream, ends it with the error (after the bytes of the parts before it).
/// `addr` names the cluster in errors. Memory: one part being built, at most.
pub fn recording_bytes(
    addr: &str,
    events: ResultStream<AuditEvent>,
    config: WriterConfig,
) -> ResultStream<Bytes> {
    let enc = Encoder {
        events,
        writer: Some(RecordingWriter::new(config)),
        out: VecDeque::new(),
        position: 0,
        addr: addr.to_string(),
    };
    stream::unfold(enc, |mut enc| async move {
        loop {
            if let Some(b) = enc.out.pop_front() {
                return Some((Ok(b), enc));
            }
            let writer = enc.writer.as_mut()?;
            match enc.events.next().await {
                Some(Ok(event)) => {
                    if let Err(e) = writer.add(&event) {
                        let err = TeleportError::BadItem {
                            addr: enc.addr.clone(),
                            rpc: RPC,
                            position: enc.position,
                            what: format!(
                                "event {} ({}) cannot be written to a recording: {e}",
                                event.index(),
                                event.event_type()
                            ),
                        };
                        enc.writer = None;
                        return Some((Err(err), enc));
                    }
                    enc.position += 1;
                    let parts = writer.take_parts();
                    enc.push_parts(parts);
                }
                Some(Err(e)) => {
                    enc.writer = None;
                    return Some((Err(e), enc));
                }
                None => {
                    if let Some(w) = enc.writer.take() {
                        let parts = w.finish();
                        enc.push_parts(parts);
                    }
                }
            }
        }
    })
    .boxed()
}
