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
import init, { PlayerDecoder, Exporter, warmUpRecording } from './pkg/tapelog_wasm.js';
import { Terminal } from './xterm/xterm-headless.mjs';
import { SerializeAddon } from './xterm/addon-serialize.mjs';
import { SCROLLBACK, replayCost } from './protocol.js';

/** @typedef {import('./protocol.js').Frames} Frames */
/** @typedef {import('./protocol.js').Source} Source */
/** @typedef {import('./protocol.js').FromWorker} FromWorker */
/** @typedef {import('./protocol.js').ToWorker} ToWorker */
/**
 * A batch from `PlayerDecoder.poll` (wasm/src/player.rs).
 * @typedef {{events: import('./protocol.js').EventObject[], frames: Frames, pulled: number,
 *   checkpoint: boolean}} Poll
 */

let batchEvents = 4096; // events per batch (the page may ask for fewer)
// Events in the load pass's first batch: about a screenful, so that it is decoded, posted and
// drawn at once whatever the recording.
const FIRST_BATCH = 64;
// Idle gaps are cut to this on the "skip idle" timeline (as `tapelog play --max-idle 1`).
const MAX_IDLE_MS = 1000;
// Bytes pushed into the decoder at a time: a network read can be megabytes, and the first
// batch should not wait for all of them to be copied into the decoder first.
const PUSH_SLICE = 256 << 10;

/**
 * Decodes tapelog-wasm's small warm-up recording once (wasm/src/warm_up.rs): the browser
 * compiles wasm functions on their first call, which would otherwise make the real
 * recording's first batch 15-25 ms late. It runs while the page waits for the first bytes.
 */
function warmUp() {
  const d = new PlayerDecoder(MAX_IDLE_MS);
  try {
    d.push(warmUpRecording());
    d.finish();
    while (d.poll(FIRST_BATCH).pulled > 0) d.takeCheckpoint()?.free();
    d.summary();
    void d.initialSize;
  } catch (e) {
    console.warn('tapelog: the decoder warm-up failed', e); // the real decode will say more
  } finally {
    d.free();
  }
}

const ready = init().then(warmUp);

const now = () => performance.timeOrigin + performance.now();

/** @param {FromWorker} msg @param {Transferable[]} [transfer] */
const post = (msg, transfer = []) => self.postMessage(msg, transfer);

/** @type {Source | null} The open source. */
let source = null;
/** @type {Map<number, import('./pkg/tapelog_wasm.js').Checkpoint>} Checkpoints of the load pass by frame number. */
const checkpoints = new Map();
/** @type {{gen: number, cancel: () => void, more: (budget: number) => void} | null} The running replay (one at a time). */
let replay = null;
/** @type {(() => void) | null} Called when the page thins its checkpoints (the load pass spaces them wider). */
let onThin = null;

/**
 * A ReadableStream of the source's bytes from `offset` on.
 * @param {Source} src
 * @returns {Promise<ReadableStream<Uint8Array>>}
 */
async function openStream(src, offset = 0) {
  if ('file' in src) return src.file.slice(offset).stream();
  // A token (the session list of `tapelog serve`) goes only to the page's own origin.
  /** @type {Record<string, string>} */
  const headers = src.token ? { Authorization: `Bearer ${src.token}` } : {};
  if (offset > 0) headers.Range = `bytes=${offset}-`;
  const resp = await fetch(src.url, { headers });
  if (!resp.ok) throw new Error(`fetching ${src.url}: HTTP ${resp.status} ${resp.statusText}`);
  if (!resp.body) throw new Error(`fetching ${src.url}: no body`);
  if (offset > 0 && resp.status !== 206) return skipBytes(resp.body, offset); // Range ignored
  return resp.body;
}

/**
 * `stream` without its first `n` bytes.
 * @param {ReadableStream<Uint8Array>} stream
 * @param {number} n
 */
function skipBytes(stream, n) {
  let left = n;
  return stream.pipeThrough(new TransformStream({
    /** @param {Uint8Array} chunk @param {TransformStreamDefaultController<Uint8Array>} out */
    transform(chunk, out) {
      if (left >= chunk.length) { left -= chunk.length; return; }
      out.enqueue(left > 0 ? chunk.subarray(left) : chunk);
      left = 0;
    },
  }));
}

/**
 * What the page shows of an error (tapelog-wasm's `RecordingError` has `kind` and `offset`).
 * @param {unknown} e
 * @returns {import('./protocol.js').ErrorInfo}
 */
function errorInfo(e) {
  const o = /** @type {{message?: string, kind?: string, offset?: number}} */ (e ?? {});
  return { message: o.message || String(e), kind: o.kind || null, offset: o.offset ?? null };
}

/** @param {Frames} f */
const transferList = (f) => [f.time.buffer, f.idle.buffer, f.index.buffer, f.cols.buffer, f.rows.buffer, f.end.buffer, f.data.buffer];

// ---- 1. the load pass ---------------------------------------------------------------------

/**
 * The headless terminal that follows the output, to snapshot it at checkpoints.
 * @param {import('./protocol.js').Size} size
 */
function headless(size) {
  const term = new Terminal({ cols: size.cols, rows: size.rows, scrollback: SCROLLBACK, allowProposedApi: true });
  const ser = new SerializeAddon();
  term.loadAddon(ser);
  return { term, ser, written: Promise.resolve() };
}

/**
 * Writes a batch's frames (output and resizes, in order) to the headless terminal.
 * @param {ReturnType<typeof headless>} h
 * @param {Frames} f
 */
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

/**
 * The load pass (see the top of the file).
 * @param {Source} src
 * @param {{spacing: number, batch: number}} opts
 */
async function decode(src, opts) {
  await ready;
  source = src;
  batchEvents = opts.batch || batchEvents;
  const dec = new PlayerDecoder(MAX_IDLE_MS);
  /**
   * `h`: the headless terminal, made once the terminal's size is known.
   * `posted`: the first batch went out.
   * @type {{bytes: number, firstBytesAt: number | null, started: number, headlessMs: number,
   *   h: ReturnType<typeof headless> | null, posted: boolean}}
   */
  const state = { bytes: 0, firstBytesAt: null, started: now(), headlessMs: 0, h: null, posted: false };
  let spacing = opts.spacing; // output bytes between snapshots (doubled when the page thins)
  let sinceSnapshot = 0;
  onThin = () => { spacing *= 2; };

  /**
   * Posts a batch to the page (its frames' arrays are transferred).
   * @param {Poll} b
   * @param {number} first the number of its first frame
   */
  function postBatch(b, first) {
    post({
      type: 'batch', frames: b.frames, first, events: b.events, initialSize: dec.initialSize,
      summary: dec.summary(), bytes: state.bytes, firstBytesAt: state.firstBytesAt, postedAt: now(),
    }, transferList(b.frames));
  }

  /** Posts everything the decoder has ready. */
  async function drain() {
    for (;;) {
      // The first batch is small and goes out before anything else is done (the headless
      // terminal is made and fed after it): the page shows output as early as it can.
      const firstBatch = !state.posted;
      /** @type {Poll} */
      const b = dec.poll(firstBatch ? Math.min(FIRST_BATCH, batchEvents) : batchEvents); // throws at damage, after the batch before it
      if (b.pulled === 0) return;
      const f = b.frames;
      const first = dec.frames - f.time.length;
      if (firstBatch) {
        state.posted = true;
        const kept = copyFrames(f);
        postBatch(b, first);
        if (!state.h && dec.initialSize) state.h = headless(dec.initialSize);
        if (state.h) follow(state.h, kept);
        sinceSnapshot += kept.data.length;
        continue;
      }
      if (!state.h && dec.initialSize) state.h = headless(dec.initialSize);
      const h = state.h;
      if (b.checkpoint) {
        const cp = dec.takeCheckpoint();
        if (cp && h && sinceSnapshot >= spacing) {
          const t0 = now();
          await h.written;
          const snapshot = h.ser.serialize({ scrollback: SCROLLBACK });
          state.headlessMs += now() - t0;
          checkpoints.set(first, cp);
          sinceSnapshot = 0;
          post({ type: 'checkpoint', frame: first, snapshot, cols: h.term.cols, rows: h.term.rows });
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
      postBatch(b, first);
    }
  }

  try {
    const reader = (await openStream(src)).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (state.firstBytesAt === null) state.firstBytesAt = now();
      state.bytes += value.length;
      for (let at = 0; at < value.length; at += PUSH_SLICE) {
        dec.push(value.subarray(at, at + PUSH_SLICE));
        await drain();
      }
    }
    dec.finish();
    await drain();
    post({
      type: 'done', summary: dec.summary(), stats: dec.stats(), bytes: state.bytes, frames: dec.frames,
      firstBytesAt: state.firstBytesAt, decodeMs: now() - (state.firstBytesAt ?? state.started),
      headlessMs: state.headlessMs,
    });
  } catch (e) {
    post({
      type: 'error', error: errorInfo(e), summary: dec.summary(), stats: dec.stats(), bytes: state.bytes,
      frames: dec.frames,
    });
  } finally {
    dec.free();
    state.h?.term.dispose();
  }
}

// ---- 2. replays from a checkpoint ---------------------------------------------------------

/**
 * Posts the frames from number `from` on, decoding from the checkpoint at frame `at` (0: the
 * start), `budget` bytes of output per round. Frames before `from` are dropped here.
 * @param {{gen: number, at: number, from: number, budget: number}} msg
 */
async function startReplay({ gen, at, from, budget }) {
  const src = source;
  if (!src) return;
  if (replay) replay.cancel();
  await ready;
  const cp = at > 0 ? checkpoints.get(at) ?? null : null;
  const dec = cp ? PlayerDecoder.resume(cp) : new PlayerDecoder(MAX_IDLE_MS);
  let cancelled = false;
  let allowance = budget;
  /** @type {(() => void) | null} */
  let wake = null;
  const me = {
    gen,
    cancel() { cancelled = true; if (wake) wake(); },
    /** @param {number} b */
    more(b) { allowance += b; if (wake) wake(); },
  };
  replay = me;
  const started = now();
  let reader = null;
  try {
    reader = (await openStream(src, cp ? cp.offset : 0)).getReader();
    let finished = false;
    while (!cancelled) {
      /** @type {Poll} */
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
      while (allowance <= 0 && !cancelled) await new Promise((r) => { wake = () => r(undefined); });
      wake = null;
      if (cancelled) break;
      allowance -= replayCost(f); // as the page counts its cache
      post({ type: 'replay', gen, first: start, frames: f, startedAt: started }, transferList(f));
    }
    if (!cancelled) post({ type: 'replay-end', gen });
  } catch (e) {
    if (!cancelled) post({ type: 'replay-end', gen, error: errorInfo(e) });
  } finally {
    if (reader) reader.cancel().catch(() => {});
    dec.free();
    if (replay === me) replay = null;
  }
}

/**
 * A copy of `f` (its arrays are transferred to the page when posted).
 * @param {Frames} f
 * @returns {Frames}
 */
function copyFrames(f) {
  return {
    time: f.time.slice(), idle: f.idle.slice(), index: f.index.slice(),
    cols: f.cols.slice(), rows: f.rows.slice(), end: f.end.slice(), data: f.data.slice(),
  };
}

/**
 * The frames of `f` from frame `k` on (a copy; `end` made relative to the new data).
 * @param {Frames} f
 * @param {number} k
 * @returns {Frames}
 */
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

/**
 * @param {Source} src
 * @param {import('./protocol.js').ExportFormat} format
 */
async function exportAs(src, format) {
  await ready;
  const x = new Exporter(format);
  // The output goes into a Blob every 8 MB: a Blob is the browser's (Chromium moves big ones
  // to disk), so the worker holds at most one round of chunks.
  const type = format === 'json' ? 'application/x-ndjson' : 'application/x-asciicast';
  let blob = new Blob([], { type });
  /** @type {BlobPart[]} */
  let parts = [];
  let held = 0;
  /** @param {Uint8Array} bytes tapelog-wasm's: a copy in an ArrayBuffer of its own */
  const add = (bytes) => {
    parts.push(/** @type {Uint8Array<ArrayBuffer>} */ (bytes)); held += bytes.length;
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
    post({ type: 'exported', format, blob: new Blob([blob, ...parts], { type }) });
  } catch (e) {
    post({ type: 'export-error', format, error: errorInfo(e) });
  } finally {
    x.free();
  }
}

/** @param {MessageEvent<ToWorker>} m */
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
      onThin?.();
      break;
  }
};
