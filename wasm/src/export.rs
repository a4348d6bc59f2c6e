//! The command line's exports in the browser: [`Exporter`] (streaming) and the one-call
//! [`to_json_lines`] and [`to_asciicast`]. The bytes are the core's (`core::export`), so
//! they equal `tapelog export --format json|asciicast` of the same recording.

use tapelog_core::AuditEvent;
use tapelog_core::codec::RecordingReader;
use tapelog_core::export::{AsciicastWriter, TextFormat, export_event};
use wasm_bindgen::prelude::*;

use crate::convert::usage_error;
use crate::decoder::{Pull, pull};

enum Writer {
    JsonLines,
    Terminal,
    Asciicast(Box<AsciicastWriter>),
}

impl Writer {
    fn push(&mut self, e: &AuditEvent, out: &mut Vec<u8>) {
        match self {
            Writer::JsonLines => export_event(TextFormat::JsonLines, e, out),
            Writer::Terminal => export_event(TextFormat::Terminal, e, out),
            Writer::Asciicast(w) => w.push(e, out),
        }
    }
}

/// Streaming export: `new Exporter("json" | "asciicast" | "text")`, then `push(chunk)` for
/// each chunk of the recording and `finish()`; each returns the output bytes it produced.
/// At damage, `push`/`finish` return what was exported before it and the following call
/// throws the `RecordingError` (also readable at once from `error`).
#[wasm_bindgen]
pub struct Exporter {
    reader: RecordingReader,
    writer: Writer,
    ended: bool,
    error: Option<JsValue>,
}

#[wasm_bindgen]
impl Exporter {
    /// An exporter to `format`: `"json"` (JSON lines, Teleport's JSON), `"asciicast"`
    /// (asciicast v2) or `"text"` (the raw terminal output).
    #[wasm_bindgen(constructor)]
    pub fn new(format: &str) -> Result<Exporter, JsValue> {
        let writer = match format {
            "json" | "jsonl" => Writer::JsonLines,
            "text" => Writer::Terminal,
            "asciicast" => Writer::Asciicast(Box::new(AsciicastWriter::new())),
            other => {
                return Err(usage_error(&format!(
                    "unknown export format {other:?}: use \"json\", \"asciicast\" or \"text\""
                )));
            }
        };
        Ok(Exporter {
            reader: RecordingReader::new(),
            writer,
            ended: false,
            error: None,
        })
    }

    fn check(&mut self) -> Result<(), JsValue> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn drain(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.error.is_none() {
            match pull(&mut self.reader, &mut self.ended) {
                Ok(Pull::Event(e)) => self.writer.push(&e, &mut out),
                Ok(Pull::Nothing) => break,
                Err(e) => self.error = Some(e),
            }
        }
        out
    }

    /// Adds a chunk; returns the output it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, JsValue> {
        self.check()?;
        self.reader.push(chunk);
        Ok(self.drain())
    }

    /// Ends the input; returns the rest of the output.
    pub fn finish(&mut self) -> Result<Vec<u8>, JsValue> {
        self.check()?;
        self.reader.finish();
        let mut out = self.drain();
        if self.error.is_none()
            && let Writer::Asciicast(w) = &mut self.writer
        {
            w.finish(&mut out);
        }
        Ok(out)
    }

    /// The `RecordingError` met so far, or `null`.
    #[wasm_bindgen(getter)]
    pub fn error(&self) -> JsValue {
        self.error.clone().unwrap_or(JsValue::NULL)
    }
}

fn export_all(format: &str, bytes: &[u8]) -> Result<String, JsValue> {
    let mut x = Exporter::new(format)?;
    let mut out = x.push(bytes)?;
    out.extend(x.finish()?);
    x.check()?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A whole recording as JSON lines (one Teleport JSON event per line). Throws a
/// `RecordingError` on damage.
#[wasm_bindgen(js_name = toJsonLines)]
pub fn to_json_lines(bytes: &[u8]) -> Result<String, JsValue> {
    export_all("json", bytes)
}

/// A whole recording as an asciicast v2 file. Throws a `RecordingError` on damage.
#[wasm_bindgen(js_name = toAsciicast)]
pub fn to_asciicast(bytes: &[u8]) -> Result<String, JsValue> {
    export_all("asciicast", bytes)
}
