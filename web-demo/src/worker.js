// The decoding worker. Three jobs, all streaming (a chunk is pushed into the decoder and
// dropped: the recording's bytes are never kept):
//
// 1. `open`: the load pass. Reads the whole source once through tapelog-wasm's PlayerDecoder
//    and posts every batch of frames (terminal output with its times), the non-print events
//    and the summary to the page, which keeps only a bounded window of them. Alongside, a
//    headless terminal (@xterm/headless) is fed the same output, and at part boundaries (the
//    decoder's checkpoints, at least `spacing` bytes of output apart) its state is serialised
//    (@xterm/addon-serialize) and posted as a checkpoint: the page can then show any moment
//    by restoring the nearest checkpoint before it and writing the output from there.
// 2. `replay`: decodes again from a checkpoint: the source is re-read from the checkpoint's
//    byte offset (File.slice, or an HTTP Range request; without Range support, from the start
//    with the bytes before the offset skipped), and frames from a given frame number on are
//    posted in rounds of about `budget` bytes of output, each round asked for by the page
//    (`more`), so that nothing piles up on either side.
// 3. `export`: re-reads the source through an Exporter into a Blob of chunks.
import './worker-env.js'; // before @xterm/headless
import init, { PlayerDecoder, Exporter } from './pkg/tapelog_wasm.js';
import { Terminal } from './xterm/xterm-headless.mjs';
import { SerializeAddon } from './xterm/addon-serialize.mjs';

const ready = init();
let batchEvents = 4096; // events per batch (the page may ask for fewer)
// Idle gaps are cut to this on the "skip idle" timeline (as `tapelog play --max-idle 1`).
const MAX_IDLE_MS = 1000;
// The page's terminal keeps this many lines of scrollback; the snapshots keep as many.
const SCROLLBACK = 1000;

const now = () => performance.timeOrigin + performance.now();

/** The open source: `{file}` or `{url, token}`. */
let source = null;
/** Checkpoints of the load pass by frame number: the decoder's `Checkpoint` objects. */
const checkpoints = new Map();
/** The running replay (one at a time): `{gen, cancel, more}`. */
let replay = null;

/** A ReadableStream of the source's bytes from `offset` on. */
async function openStream(src, offset = 0) {
  if (src.file) return src.file.slice(offset).stream();
  // A token (the session list of `tapelog serve`) goes only to the page's own origin.
  const headers = src.token ? { Authorization: `Bearer ${src.token}` } : {};
  if (offset > 0) headers.Range = `bytes=${offset}-`;
  const resp = await fetch(src.url, { headers });
  if (!resp.ok) throw new Error(`fetching ${src.url}: HTTP ${resp.status} ${resp.statusText}`);
  if (offset > 0 && resp.status !== 206) return skipBytes(resp.body, offset); // Range ignored
  return resp.body;
}

/** `stream` without its first `n` bytes. */
function skipBytes(stream, n) {
  let left = n;
  return stream.pipeThrough(new TransformStream({
    transform(chunk, out) {
      if (left >= chunk.length) { left -= chunk.length; return; }
      out.enqueue(left > 0 ? chunk.subarray(left) : chunk);
      left = 0;
    },
  }));
}

function errorInfo(e) {
  return { message: e.message || String(e), kind: e.kind || null, offset: e.offset ?? null };
}

const transferList = (f) => [f.time.buffer, f.idle.buffer, f.index.buffer, f.cols.buffer, f.rows.buffer, f.end.buffer, f.data.buffer];

// ---- 1. the load pass ---------------------------------------------------------------------

/** The headless terminal that follows the output, to snapshot it at checkpoints. */
function headless(size) {
  const term = new Terminal({ cols: size.cols, rows: size.rows, scrollback: SCROLLBACK, allowProposedApi: true });
  const ser = new SerializeAddon();
  term.loadAddon(ser);
  return { term, ser, written: Promise.resolve() };
}

/** Writes a batch's frames (output and resizes, in order) to the headless terminal. */
function follow(h, f) {
  let a = 0;
  for (let i = 0; i < f.time.length; i++) {
    if (f.cols[i] > 0) {
      if (f.end[i] > a) h.term.write(f.data.slice(a, f.end[i]));
      const c = f.cols[i], r = f.rows[i];
      h.term.write(new Uint8Array(0), () => h.term.resize(c, r));
      a = f.end[i];
    }
  }
  if (f.data.length > a) h.term.write(f.data.slice(a));
  // Wait for the parser before decoding further: it is the back-pressure of the load pass.
  h.written = new Promise((resolve) => h.term.write(new Uint8Array(0), resolve));
}

async function decode(src, opts) {
  await ready;
  source = src;
  batchEvents = opts.batch || batchEvents;
  const dec = new PlayerDecoder(MAX_IDLE_MS);
  const state = { bytes: 0, firstBytesAt: null, started: now(), headlessMs: 0 };
  let h = null;
  let spacing = opts.spacing; // output bytes between snapshots (doubled when the page thins)
  let sinceSnapshot = 0;
  self.onThin = () => { spacing *= 2; };

  /** Posts everything the decoder has ready. */
  async function drain() {
    for (;;) {
      const b = dec.poll(batchEvents); // throws at damage, after the batch before it
      if (b.pulled === 0) return;
      const f = b.frames;
      const first = dec.frames - f.time.length;
      if (!h && dec.initialSize) h = headless(dec.initialSize);
      if (b.checkpoint) {
        const cp = dec.takeCheckpoint();
        if (cp && h && sinceSnapshot >= spacing) {
          const t0 = now();
          await h.written;
          const snapshot = h.ser.serialize({ scrollback: SCROLLBACK });
          state.headlessMs += now() - t0;
          checkpoints.set(first, cp);
          sinceSnapshot = 0;
          self.postMessage({ type: 'checkpoint', frame: first, snapshot, cols: h.term.cols, rows: h.term.rows });
        } else if (cp) {
          cp.free();
        }
      }
      if (h) {
        const t0 = now();
        await h.written;
        state.headlessMs += now() - t0;
        follow(h, f);
      }
      sinceSnapshot += f.data.length;
      self.postMessage({
        type: 'batch', frames: f, first, events: b.events, initialSize: dec.initialSize,
        summary: dec.summary(), bytes: state.bytes, firstBytesAt: state.firstBytesAt,
      }, transferList(f));
    }
  }

  try {
    const reader = (await openStream(src)).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (state.firstBytesAt === null) state.firstBytesAt = now();
      state.bytes += value.length;
      dec.push(value);
      await drain();
    }
    dec.finish();
    await drain();
    self.postMessage({
      type: 'done', summary: dec.summary(), stats: dec.stats(), bytes: state.bytes, frames: dec.frames,
      firstBytesAt: state.firstBytesAt, decodeMs: now() - (state.firstBytesAt ?? state.started),
      headlessMs: state.headlessMs,
    });
  } catch (e) {
    self.postMessage({
      type: 'error', error: errorInfo(e), summary: dec.summary(), stats: dec.stats(), bytes: state.bytes,
      frames: dec.frames,
    });
  } finally {
    dec.free();
    if (h) h.term.dispose();
  }
}

// ---- 2. replays from a checkpoint ---------------------------------------------------------

/**
 * Posts the frames from number `from` on, decoding from the checkpoint at frame `at` (0: the
 * start), `budget` bytes of output per round. Frames before `from` are dropped here.
 */
async function startReplay({ gen, at, from, budget }) {
  if (replay) replay.cancel();
  await ready;
  const cp = at > 0 ? checkpoints.get(at) : null;
  const dec = cp ? PlayerDecoder.resume(cp) : new PlayerDecoder(MAX_IDLE_MS);
  let cancelled = false;
  let allowance = budget;
  let wake = null;
  const me = {
    gen,
    cancel() { cancelled = true; if (wake) wake(); },
    more(b) { allowance += b; if (wake) wake(); },
  };
  replay = me;
  const started = now();
  let reader = null;
  try {
    reader = (await openStream(source, cp ? cp.offset : 0)).getReader();
    let finished = false;
    while (!cancelled) {
      const b = dec.poll(batchEvents);
      if (b.pulled === 0) {
        if (finished) break;
        const { done, value } = await reader.read();
        if (done) { dec.finish(); finished = true; } else dec.push(value);
        continue;
      }
      if (b.checkpoint) dec.takeCheckpoint()?.free();
      let f = b.frames;
      const first = dec.frames - f.time.length;
      if (first + f.time.length <= from) continue; // before the frames asked for
      let start = first;
      if (first < from) { f = sliceFrames(f, from - first); start = from; }
      if (f.time.length === 0) continue;
      while (allowance <= 0 && !cancelled) await new Promise((r) => { wake = r; });
      wake = null;
      if (cancelled) break;
      allowance -= f.data.length + 32 * f.time.length; // as the page counts its cache
      self.postMessage({ type: 'replay', gen, first: start, frames: f, startedAt: started }, transferList(f));
    }
    if (!cancelled) self.postMessage({ type: 'replay-end', gen });
  } catch (e) {
    if (!cancelled) self.postMessage({ type: 'replay-end', gen, error: errorInfo(e) });
  } finally {
    if (reader) reader.cancel().catch(() => {});
    dec.free();
    if (replay === me) replay = null;
  }
}

/** The frames of `f` from frame `k` on (a copy; `end` made relative to the new data). */
function sliceFrames(f, k) {
  const base = k > 0 ? f.end[k - 1] : 0;
  const end = new Uint32Array(f.end.length - k);
  for (let i = 0; i < end.length; i++) end[i] = f.end[k + i] - base;
  return {
    time: f.time.slice(k), idle: f.idle.slice(k), index: f.index.slice(k),
    cols: f.cols.slice(k), rows: f.rows.slice(k), end, data: f.data.slice(base),
  };
}

// ---- 3. exports ---------------------------------------------------------------------------

async function exportAs(src, format) {
  await ready;
  const x = new Exporter(format);
  // The output goes into a Blob every 8 MB: a Blob is the browser's (Chromium moves big ones
  // to disk), so the worker holds at most one round of chunks.
  const type = format === 'json' ? 'application/x-ndjson' : 'application/x-asciicast';
  let blob = new Blob([], { type });
  let parts = [], held = 0;
  const add = (bytes) => {
    parts.push(bytes); held += bytes.length;
    if (held >= 8e6) { blob = new Blob([blob, ...parts], { type }); parts = []; held = 0; }
  };
  try {
    const reader = (await openStream(src)).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      add(x.push(value));
    }
    add(x.finish());
    self.postMessage({ type: 'exported', format, blob: new Blob([blob, ...parts], { type }) });
  } catch (e) {
    self.postMessage({ type: 'export-error', format, error: errorInfo(e) });
  } finally {
    x.free();
  }
}

self.onmessage = (m) => {
  const msg = m.data;
  switch (msg.type) {
    case 'open': decode(msg.source, msg); break;
    case 'export': exportAs(msg.source, msg.format); break;
    case 'replay': startReplay(msg); break;
    case 'more': if (replay && replay.gen === msg.gen) replay.more(msg.budget); break;
    case 'cancel': if (replay && replay.gen === msg.gen) replay.cancel(); break;
    case 'thin':
      for (const frame of msg.dropped) { checkpoints.get(frame)?.free(); checkpoints.delete(frame); }
      self.onThin?.();
      break;
  }
};
