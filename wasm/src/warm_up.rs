//! A small recording to run through the decoder before the first real bytes arrive.
//!
//! Browsers compile a wasm module's functions lazily, on their first call, and start them in a
//! baseline tier: the first `PlayerDecoder.poll` of a page cost 16–25 ms whatever it decoded
//! (docs/benchmarks.md, "wasm"), most of the time to a recording's first output. The web
//! player's worker decodes this recording once when it starts (while the page still waits for
//! the recording's first bytes), so that inflate, the part reader, the print scan, the
//! framer and the conversions to JavaScript are compiled by then.
//!
//! The bytes are a file rather than written here at run time: writing needs the deflate
//! encoder, which the page's module does not otherwise contain. A test checks that they are
//! what the core's writer makes of the sample session, and that the decoder reads them.

use wasm_bindgen::prelude::*;

/// `tapelog_core::sample::sample_session(WARM_UP_PRINTS)` written by the core's
/// `encode_recording` with [`warm_up_config`]: several parts (so part boundaries and
/// checkpoints are crossed), prints, a resize, a session start and end.
const WARM_UP: &[u8] = include_bytes!("warm_up.tlog");

/// Prints in the warm-up session.
#[cfg(test)]
const WARM_UP_PRINTS: usize = 120;

/// Small parts (a few per warm-up recording).
#[cfg(test)]
fn warm_up_config() -> tapelog_core::codec::WriterConfig {
    tapelog_core::codec::WriterConfig {
        min_upload_bytes: 1024,
        ..Default::default()
    }
}

/// A copy of the warm-up recording (see the module documentation), as a `Uint8Array`.
#[wasm_bindgen(js_name = warmUpRecording)]
pub fn warm_up_recording() -> Vec<u8> {
    WARM_UP.to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Batcher;
    use tapelog_core::codec::encode_recording;
    use tapelog_core::sample::sample_session;

    /// `TAPELOG_WRITE_WARM_UP=1 cargo test -p tapelog-wasm --lib warm_up` writes the file anew
    /// (after a change to the writer or the sample session).
    #[test]
    fn warm_up_is_the_sample_session_as_the_writer_writes_it() {
        let bytes = encode_recording(&sample_session(WARM_UP_PRINTS), warm_up_config()).unwrap();
        if std::env::var_os("TAPELOG_WRITE_WARM_UP").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/warm_up.tlog");
            std::fs::write(path, &bytes).unwrap();
        }
        assert!(
            bytes == WARM_UP,
            "src/warm_up.tlog is stale: rewrite it (see this test)"
        );
    }

    #[test]
    fn warm_up_decodes_to_every_frame_across_parts() {
        let mut b = Batcher::new(1000.0);
        b.push(WARM_UP);
        b.finish();
        let (mut prints, mut resizes, mut checkpoints) = (0, 0, 0);
        loop {
            let batch = b.poll(16).unwrap();
            if batch.pulled == 0 {
                break;
            }
            checkpoints += usize::from(batch.checkpoint);
            for i in 0..batch.frames.time.len() {
                if batch.frames.cols[i] > 0 {
                    resizes += 1;
                } else {
                    prints += 1;
                }
            }
        }
        assert!(b.ended());
        assert_eq!(prints, WARM_UP_PRINTS);
        assert!(resizes >= 1);
        assert!(
            checkpoints >= 2,
            "the warm-up crosses part boundaries: {checkpoints}"
        );
    }
}
