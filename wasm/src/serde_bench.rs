//! (feature `serde-bench`, built by `web-demo/bench.sh` only) The two ways of handing decoded
//! events to JavaScript, side by side on the same events, for the benchmark that chose between
//! them: Teleport's JSON written in Rust and parsed by the engine's `JSON.parse` in one call
//! (what [`Decoder`](crate::Decoder) and [`PlayerDecoder`](crate::PlayerDecoder) do), and
//! `serde-wasm-bindgen` building the objects field by field from the events' `Serialize`
//! (Teleport's JSON document too, see `tapelog_core::json`). The figures and the decision are
//! in docs/benchmarks.md ("Events into JavaScript").

use js_sys::Array;
use serde::Serialize as _;
use tapelog_core::AuditEvent;
use tapelog_core::codec::{Polled, RecordingReader};
use wasm_bindgen::prelude::*;

use crate::convert::{events_to_array, set};

/// The events of one recording, decoded once, to convert again and again.
#[wasm_bindgen]
pub struct SerdeBench {
    events: Vec<AuditEvent>,
}

#[wasm_bindgen]
impl SerdeBench {
    /// Decodes `bytes` (any supported format) and keeps its events.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8]) -> Result<SerdeBench, JsError> {
        let mut reader = RecordingReader::new();
        reader.push(bytes);
        reader.finish();
        let mut events = Vec::new();
        loop {
            match reader.poll() {
                Ok(Polled::Event(e)) => events.push(e),
                Ok(Polled::NeedInput | Polled::End) => break,
                Err(e) => return Err(JsError::new(&e.to_string())),
            }
        }
        Ok(SerdeBench { events })
    }

    /// How many events.
    #[wasm_bindgen(getter)]
    pub fn count(&self) -> u32 {
        self.events.len() as u32
    }

    /// The events as objects through one JSON text and `JSON.parse` (the shipped way).
    #[wasm_bindgen(js_name = viaJson)]
    pub fn via_json(&self) -> Array {
        events_to_array(&self.events)
    }

    /// The events as objects through `serde-wasm-bindgen` (plain objects for maps, as
    /// `JSON.parse` makes), print data attached as in [`SerdeBench::via_json`].
    #[wasm_bindgen(js_name = viaSerde)]
    pub fn via_serde(&self) -> Result<Array, JsError> {
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        let out = Array::new_with_length(self.events.len() as u32);
        for (i, e) in self.events.iter().enumerate() {
            let v = e
                .serialize(&serializer)
                .map_err(|e| JsError::new(&e.to_string()))?;
            if let Some(data) = e.print_data() {
                set(&v, "data", js_sys::Uint8Array::from(data));
            }
            out.set(i as u32, v);
        }
        Ok(out)
    }
}
