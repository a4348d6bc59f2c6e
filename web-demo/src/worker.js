// The decoding worker: reads a recording (File or URL) as a stream, feeds each chunk to
// tapelog-wasm's PlayerDecoder as it arrives and posts batches of frames (terminal output with
// its times), events and the summary to the page. The file's bytes are never kept: each chunk
// is pushed and dropped. Exports re-read the source through an Exporter.
import init, { PlayerDecoder, Exporter } from './pkg/tapelog_wasm.js';

const ready = init();
const BATCH_EVENTS = 4096;
// Idle gaps are cut to this on the "skip idle" timeline (as `tapelog play --max-idle 1`).
const MAX_IDLE_MS = 1000;

const now = () => performance.timeOrigin + performance.now();

/** A ReadableStream of the source's bytes. */
async function open(source) {
  if (source.file) return source.file.stream();
  // A token (the session list of `tapelog serve`) goes only to the page's own origin.
  const headers = source.token ? { Authorization: `Bearer ${source.token}` } : {};
  const resp = await fetch(source.url, { headers });
  if (!resp.ok) throw new Error(`fetching ${source.url}: HTTP ${resp.status} ${resp.statusText}`);
  return resp.body;
}

function errorInfo(e) {
  return { message: e.message || String(e), kind: e.kind || null, offset: e.offset ?? null };
}

/** Posts everything the decoder has ready; returns whether it gave anything. */
function drain(dec, state) {
  for (;;) {
    const b = dec.poll(BATCH_EVENTS); // throws at damage, after the batch before it
    if (b.pulled === 0) return;
    const f = b.frames;
    self.postMessage({
      type: 'batch', frames: f, events: b.events, initialSize: dec.initialSize,
      summary: dec.summary(), bytes: state.bytes, firstBytesAt: state.firstBytesAt,
    }, [f.time.buffer, f.idle.buffer, f.index.buffer, f.cols.buffer, f.rows.buffer, f.end.buffer, f.data.buffer]);
  }
}

async function decode(source) {
  await ready;
  const dec = new PlayerDecoder(MAX_IDLE_MS);
  const state = { bytes: 0, firstBytesAt: null, started: now() };
  try {
    const reader = (await open(source)).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (state.firstBytesAt === null) state.firstBytesAt = now();
      state.bytes += value.length;
      dec.push(value);
      drain(dec, state);
    }
    dec.finish();
    drain(dec, state);
    self.postMessage({
      type: 'done', summary: dec.summary(), stats: dec.stats(), bytes: state.bytes,
      firstBytesAt: state.firstBytesAt, decodeMs: now() - (state.firstBytesAt ?? state.started),
    });
  } catch (e) {
    self.postMessage({
      type: 'error', error: errorInfo(e), summary: dec.summary(), stats: dec.stats(), bytes: state.bytes,
    });
  } finally {
    dec.free();
  }
}

async function exportAs(source, format) {
  await ready;
  const x = new Exporter(format);
  const parts = [];
  try {
    const reader = (await open(source)).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(x.push(value));
    }
    parts.push(x.finish());
    const type = format === 'json' ? 'application/x-ndjson' : 'application/x-asciicast';
    self.postMessage({ type: 'exported', format, blob: new Blob(parts, { type }) });
  } catch (e) {
    self.postMessage({ type: 'export-error', format, error: errorInfo(e) });
  } finally {
    x.free();
  }
}

self.onmessage = (m) => {
  const { type, source, format } = m.data;
  if (type === 'open') decode(source);
  else if (type === 'export') exportAs(source, format);
};
