// Where the frames come from: the decoding worker (worker.js) reading the recording (a file,
// a URL, a session of `tapelog serve`), and what the page keeps of it, within bounds
// (docs/browser.md):
// - a cache of frames, a contiguous window of at most `config.cache` bytes of output (the start
//   of the recording after loading, then the frames around the player): batches behind the
//   player are dropped when room is needed;
// - checkpoints: the terminal as serialised by the worker at part boundaries (at most
//   MAX_CHECKPOINTS and SNAPSHOT_BUDGET bytes; every other one is dropped when over);
// - the first MAX_EVENTS non-print events and the first MAX_ROWS prints for the event list.
// Frames that are not in the cache are decoded again from the checkpoint before them (a
// replay), in rounds of half the cache. All the state is in a `Recording`; what the player and
// the page do when something arrives is in its `hooks`.
import { replayCost } from './protocol.js';

/** Rows of the event list (and prints noted for it). */
export const MAX_ROWS = 500;
/** Non-print events kept for the event list. */
export const MAX_EVENTS = 5000;
const MAX_CHECKPOINTS = 64;
const SNAPSHOT_BUDGET = 8 << 20;

/** Epoch milliseconds (comparable with the worker's times). */
export const now = () => performance.timeOrigin + performance.now();

/** @typedef {import('./protocol.js').Frames} Frames */
/** @typedef {import('./protocol.js').Times} Times */
/** @typedef {import('./protocol.js').Source} Source */
/** @typedef {import('./protocol.js').EventObject} EventObject */
/** @typedef {import('./protocol.js').ErrorInfo} ErrorInfo */
/** @typedef {import('./protocol.js').FromWorker} FromWorker */
/** @typedef {import('./protocol.js').ToWorker} ToWorker */

/**
 * Tuning knobs (`&cache=`, `&spacing=`, `&batch=`: the tests exercise a small recording like
 * a big one with them).
 * @typedef {object} Config
 * @property {number} cache bytes of frames kept
 * @property {number} spacing output bytes between checkpoints (at least)
 * @property {number} batch events per batch from the worker
 */

/**
 * Timings and counters for the tests and the benchmark (epoch ms and ms).
 * @typedef {object} Metrics
 * @property {number} [cacheLimit]
 * @property {number} [cacheMax]
 * @property {number} [openedAt]
 * @property {number | null} [firstBytesAt]
 * @property {number} [firstPostedAt] the worker posted the first batch
 * @property {number} [firstBatchAt] the page took the first batch
 * @property {number} [doneAt]
 * @property {number} [decodeMs]
 * @property {number} [bytes]
 * @property {number} [headlessMs]
 * @property {number} [checkpoints]
 * @property {number} [snapshotBytes]
 * @property {number} [replays]
 * @property {number} [replaysStopped]
 * @property {number} [replayFirstAt]
 * @property {number} [firstWriteAt]
 * @property {number} [firstOutputAt]
 * @property {number} [seekStartedAt]
 * @property {number} [seekMs]
 */

/** @typedef {Frames & {first: number}} Batch A cached batch: its frames from number `first` on. */

/**
 * The terminal at a part boundary: frames before `frame` are in `snapshot` (null: the start).
 * `time`/`idle` are the times of its first frame, undefined until that frame is decoded.
 * @typedef {object} Checkpoint
 * @property {number} frame
 * @property {string | null} snapshot
 * @property {number} [cols]
 * @property {number} [rows]
 * @property {number} [time]
 * @property {number} [idle]
 */

/**
 * A replay running in the worker: `credit` bytes asked for and not yet received; `last`: the
 * number after the last frame received.
 * @typedef {{gen: number, credit: number, ended: boolean, from: number, last: number}} Replay
 */

/** @typedef {{ei: number, ms: number, seekTo: Times, bytes: number}} PrintRow */

/**
 * What happens elsewhere when something arrives from the worker.
 * @typedef {object} Hooks
 * @property {() => number} next the next frame the player writes (the cache keeps it)
 * @property {(size: import('./protocol.js').Size) => void} initialSize the size at the start, before any frame
 * @property {(first: number, n: number) => void} batch a batch of the load pass was taken in
 * @property {() => void} frames replayed frames arrived, or a replay ended
 * @property {() => void} loaded the load pass ended (`rec.error` says whether at damage)
 * @property {(error: ErrorInfo) => void} failed the worker did not start
 * @property {(format: import('./protocol.js').ExportFormat, blob: Blob) => void} exported
 * @property {(error: ErrorInfo) => void} exportFailed
 */

/**
 * Everything known about the open recording.
 * @typedef {object} Recording
 * @property {Source} source
 * @property {Config} config
 * @property {Metrics} metrics
 * @property {Hooks} hooks
 * @property {Worker} worker
 * @property {boolean} closed
 * @property {Batch[]} batches the cache: contiguous frames
 * @property {number} cacheBytes
 * @property {number} frames frames decoded by the load pass
 * @property {Times} end times of the last frame decoded
 * @property {Checkpoint[]} checkpoints
 * @property {number} snapshotBytes
 * @property {Replay | null} replay
 * @property {number} gen the last replay's number
 * @property {EventObject[]} events
 * @property {number} eventsDropped
 * @property {EventObject[]} unresolved events whose first frame after is not decoded yet
 * @property {PrintRow[]} printRows
 * @property {import('./protocol.js').Summary | null} summary
 * @property {import('./protocol.js').Stats | null} stats
 * @property {import('./protocol.js').Size | null} initialSize
 * @property {boolean} done
 * @property {ErrorInfo | null} error
 * @property {number} bytes bytes of the recording read
 */

/**
 * Starts decoding `source` in a new worker.
 * @param {Source} source
 * @param {Config} config
 * @param {Metrics} metrics
 * @param {Hooks} hooks
 * @returns {Recording}
 */
export function openRecording(source, config, metrics, hooks) {
  metrics.openedAt = now();
  const worker = new Worker('worker.js', { type: 'module' });
  /** @type {Recording} */
  const rec = {
    source, config, metrics, hooks, worker, closed: false,
    batches: [], cacheBytes: 0, frames: 0, end: { time: 0, idle: 0 },
    checkpoints: [{ frame: 0, time: 0, idle: 0, snapshot: null }], snapshotBytes: 0,
    replay: null, gen: 0, events: [], eventsDropped: 0, unresolved: [], printRows: [],
    summary: null, stats: null, initialSize: null, done: false, error: null, bytes: 0,
  };
  worker.onmessage = (m) => { if (!rec.closed) onWorker(rec, m.data); };
  worker.onerror = (e) => {
    if (rec.closed) return;
    rec.error = { message: `the decoder failed to start: ${e.message}`, kind: null, offset: null };
    hooks.failed(rec.error);
  };
  post(rec, { type: 'open', source, spacing: config.spacing, batch: config.batch });
  return rec;
}

/**
 * Stops the worker; nothing more arrives.
 * @param {Recording} rec
 */
export function closeRecording(rec) {
  rec.closed = true;
  rec.worker.terminate();
}

/**
 * @param {Recording} rec
 * @param {ToWorker} msg
 */
function post(rec, msg) {
  rec.worker.postMessage(msg);
}

/**
 * @param {Recording} rec
 * @param {FromWorker} msg
 */
function onWorker(rec, msg) {
  const { metrics } = rec;
  switch (msg.type) {
    case 'batch': return onBatch(rec, msg);
    case 'checkpoint': return onCheckpoint(rec, msg);
    case 'replay': return onReplay(rec, msg);
    case 'replay-end':
      if (rec.replay && rec.replay.gen === msg.gen) { rec.replay.ended = true; rec.hooks.frames(); }
      return;
    case 'done':
      rec.done = true;
      rec.summary = msg.summary; rec.stats = msg.stats; rec.bytes = msg.bytes;
      metrics.doneAt = now(); metrics.decodeMs = msg.decodeMs; metrics.bytes = msg.bytes;
      metrics.headlessMs = msg.headlessMs;
      finishLoading(rec);
      return;
    case 'error':
      rec.done = true;
      rec.summary = msg.summary; rec.stats = msg.stats; rec.bytes = msg.bytes;
      rec.error = msg.error;
      finishLoading(rec);
      return;
    case 'exported': return rec.hooks.exported(msg.format, msg.blob);
    case 'export-error': return rec.hooks.exportFailed(msg.error);
  }
}

/**
 * Asks the worker for an export of the whole recording (`hooks.exported` gets it).
 * @param {Recording} rec
 * @param {import('./protocol.js').ExportFormat} format
 */
export function requestExport(rec, format) {
  post(rec, { type: 'export', source: rec.source, format });
}

/** @param {Frames} B */
const batchBytes = (B) => B.data.byteLength + 8 * 3 * B.time.length + 8 * B.end.length;

/**
 * Drops batches wholly behind the player until `need` more bytes fit in the cache.
 * @param {Recording} rec
 * @param {number} need
 */
function makeRoom(rec, need) {
  const next = rec.hooks.next();
  while (rec.batches.length > 0 && rec.cacheBytes + need > rec.config.cache) {
    const B = rec.batches[0];
    if (B.first + B.time.length > next) return false; // the player still needs it
    rec.batches.shift();
    rec.cacheBytes -= batchBytes(B);
  }
  return rec.cacheBytes + need <= rec.config.cache;
}

/**
 * The number after the last cached frame, or null when the cache is empty.
 * @param {Recording} rec
 */
function cacheEnd(rec) {
  const B = rec.batches[rec.batches.length - 1];
  return B ? B.first + B.time.length : null;
}

/**
 * Adds a batch at the end of the cache if it continues it and fits.
 * @param {Recording} rec
 * @param {Frames} f
 * @param {number} first
 */
function cacheBatch(rec, f, first) {
  if (f.time.length === 0) return true;
  const end = cacheEnd(rec);
  if (end !== null ? end !== first : first !== rec.hooks.next()) return false;
  // A batch larger than the whole cache is taken only into an empty cache.
  if (!makeRoom(rec, batchBytes(f)) && rec.batches.length > 0) return false;
  /** @type {Batch} */
  const B = Object.assign(f, { first });
  rec.batches.push(B);
  rec.cacheBytes += batchBytes(B);
  rec.metrics.cacheMax = Math.max(rec.metrics.cacheMax ?? 0, rec.cacheBytes);
  return true;
}

/**
 * The cached batch holding frame `n`, or null.
 * @param {Recording} rec
 * @param {number} n
 */
export function batchOf(rec, n) {
  for (const B of rec.batches) if (n >= B.first && n < B.first + B.time.length) return B;
  return null;
}

/**
 * @param {Recording} rec
 * @param {Extract<FromWorker, {type: 'batch'}>} msg
 */
function onBatch(rec, msg) {
  if (rec.metrics.firstBytesAt === undefined) {
    rec.metrics.firstBytesAt = msg.firstBytesAt;
    rec.metrics.firstPostedAt = msg.postedAt;
    rec.metrics.firstBatchAt = now();
  }
  if (!rec.initialSize && msg.initialSize) {
    rec.initialSize = msg.initialSize;
    if (rec.frames === 0) rec.hooks.initialSize(msg.initialSize);
  }
  const f = msg.frames;
  const n = f.time.length;
  if (n > 0) {
    rec.end = { time: f.time[n - 1], idle: f.idle[n - 1] };
    indexFrames(rec, f, msg.first);
    rec.frames = msg.first + n;
    if (!rec.replay) cacheBatch(rec, f, msg.first); // else the replay feeds the cache
  }
  for (const e of msg.events) {
    if (rec.events.length >= MAX_EVENTS) { rec.eventsDropped++; continue; }
    rec.events.push(e);
    rec.unresolved.push(e);
  }
  rec.summary = msg.summary;
  rec.bytes = msg.bytes;
  rec.hooks.batch(msg.first, n);
}

/**
 * Notes what the event list and the checkpoints need from a batch of the load pass.
 * @param {Recording} rec
 * @param {Frames} f
 * @param {number} first
 */
function indexFrames(rec, f, first) {
  for (const cp of rec.checkpoints) {
    if (cp.time === undefined && cp.frame >= first && cp.frame < first + f.time.length) {
      cp.time = f.time[cp.frame - first]; cp.idle = f.idle[cp.frame - first];
    }
  }
  let u = 0;
  for (let i = 0; i < f.time.length; i++) {
    // A non-print event's row seeks to the first frame at or after it.
    while (u < rec.unresolved.length && rec.unresolved[u].ei <= f.index[i]) {
      rec.unresolved[u].seekTo = { time: f.time[i], idle: f.idle[i] };
      u++;
    }
    if (f.cols[i] === 0 && rec.printRows.length < MAX_ROWS) {
      const bytes = f.end[i] - (i > 0 ? f.end[i - 1] : 0);
      rec.printRows.push({ ei: f.index[i], ms: f.time[i], seekTo: { time: f.time[i], idle: f.idle[i] }, bytes });
    }
  }
  rec.unresolved.splice(0, u);
}

/**
 * @param {Recording} rec
 * @param {Extract<FromWorker, {type: 'checkpoint'}>} msg
 */
function onCheckpoint(rec, msg) {
  /** @type {Checkpoint} */
  const cp = { frame: msg.frame, snapshot: msg.snapshot, cols: msg.cols, rows: msg.rows, time: undefined, idle: undefined };
  rec.checkpoints.push(cp);
  rec.snapshotBytes += 2 * msg.snapshot.length;
  if (rec.checkpoints.length > MAX_CHECKPOINTS || rec.snapshotBytes > SNAPSHOT_BUDGET) {
    // Thin out: keep the start and every other checkpoint; the worker spaces new ones wider.
    /** @type {number[]} */
    const dropped = [];
    rec.checkpoints = rec.checkpoints.filter((c, i) => {
      if (i === 0 || i % 2 === 0) return true;
      dropped.push(c.frame);
      rec.snapshotBytes -= 2 * (c.snapshot?.length ?? 0);
      return false;
    });
    post(rec, { type: 'thin', dropped });
  }
  rec.metrics.checkpoints = rec.checkpoints.length;
  rec.metrics.snapshotBytes = rec.snapshotBytes;
}

/**
 * A round of frames from the worker's replay.
 * @param {Recording} rec
 * @param {Extract<FromWorker, {type: 'replay'}>} msg
 */
function onReplay(rec, msg) {
  const r = rec.replay;
  if (!r || r.gen !== msg.gen) return; // an older replay
  if (rec.metrics.replayFirstAt === undefined) rec.metrics.replayFirstAt = now();
  r.credit -= replayCost(msg.frames);
  r.last = msg.first + msg.frames.time.length;
  if (!cacheBatch(rec, msg.frames, msg.first)) {
    // No room (the player is behind): stop; the player starts a replay again when it gets here.
    post(rec, { type: 'cancel', gen: r.gen });
    rec.replay = null;
    rec.metrics.replaysStopped = (rec.metrics.replaysStopped || 0) + 1;
  }
  rec.hooks.frames();
}

/**
 * Keeps the replay going: asks for more when less than half the cache is ahead of frame
 * `next` (the player's).
 * @param {Recording} rec
 * @param {number} next
 */
export function feed(rec, next) {
  const r = rec.replay;
  if (!r || r.ended) return;
  let ahead = 0;
  for (const B of rec.batches) if (B.first + B.time.length > next) ahead += batchBytes(B);
  const want = rec.config.cache / 2 - ahead - r.credit;
  if (want > rec.config.cache / 8) {
    r.credit += want;
    post(rec, { type: 'more', gen: r.gen, budget: want });
  }
}

/**
 * Starts a replay from checkpoint `cp`, giving frames from `from` on.
 * @param {Recording} rec
 * @param {Checkpoint} cp
 * @param {number} from
 */
export function startReplay(rec, cp, from) {
  if (rec.replay) post(rec, { type: 'cancel', gen: rec.replay.gen });
  const gen = ++rec.gen;
  const budget = rec.config.cache / 2;
  if (cacheEnd(rec) !== from) { rec.batches = []; rec.cacheBytes = 0; } // it would not continue it
  rec.replay = { gen, credit: budget, ended: false, from, last: from };
  rec.metrics.replays = (rec.metrics.replays || 0) + 1;
  post(rec, { type: 'replay', gen, at: cp.frame, from, budget, batch: rec.config.batch });
}

/**
 * The end of the load pass: what is still unknown will not come.
 * @param {Recording} rec
 */
function finishLoading(rec) {
  for (const cp of rec.checkpoints) if (cp.time === undefined) { cp.time = Infinity; cp.idle = Infinity; }
  for (const e of rec.unresolved) e.seekTo = { ...rec.end };
  rec.unresolved = [];
  rec.hooks.loaded();
}

/**
 * The last checkpoint at or before frame `n`.
 * @param {Recording} rec
 * @param {number} n
 */
export function checkpointAtFrame(rec, n) {
  let best = rec.checkpoints[0];
  for (const cp of rec.checkpoints) if (cp.frame <= n && cp.frame >= best.frame) best = cp;
  return best;
}

/**
 * The last checkpoint whose first frame is at or before `t` on timeline `k`.
 * @param {Recording} rec
 * @param {number} t
 * @param {'time' | 'idle'} k
 */
export function checkpointAtTime(rec, t, k) {
  let best = rec.checkpoints[0];
  for (const cp of rec.checkpoints) {
    const at = cp[k];
    if (at !== undefined && at <= t && cp.frame >= best.frame) best = cp;
  }
  return best;
}

/**
 * What the page retains of the recording, in bytes and counts (the memory test reads this).
 * @param {Recording | null} rec
 * @param {Config} config
 * @param {Metrics} metrics
 */
export function retained(rec, config, metrics) {
  return {
    cacheBytes: rec?.cacheBytes ?? 0, cacheLimit: config.cache, cacheMax: metrics.cacheMax,
    checkpoints: rec?.checkpoints.length ?? 0, snapshotBytes: rec?.snapshotBytes ?? 0,
    events: rec?.events.length ?? 0, printRows: rec?.printRows.length ?? 0, frames: rec?.frames ?? 0,
  };
}
