// The tapelog player page. Decoding happens in worker.js (tapelog-wasm); this file plays the
// frames the worker sends (terminal output with its times, in typed arrays) in xterm.js: play,
// pause, speed, seek by time or on the timeline, skip idle gaps, resizes.
// Deep links: ?src=URL opens a recording, &t=SECONDS or &t=end shows that moment, paused.
//
// Memory is bounded whatever the recording's size (docs/browser.md): the page keeps
// - a cache of frames, a contiguous window of at most `cache` bytes of output (the start of the
//   recording after loading, then the frames around the player): batches behind the player
//   are dropped when room is needed;
// - checkpoints: the terminal as serialised by the worker at part boundaries (at most
//   MAX_CHECKPOINTS and SNAPSHOT_BUDGET bytes; every other one is dropped when over);
// - the first MAX_EVENTS non-print events and the first MAX_ROWS prints for the event list.
// Showing a moment that is not reachable from the cache restores the last checkpoint before
// it and asks the worker to decode again from there (`replay`), in rounds of half the cache.
// Tuning knobs (the tests use them to exercise a small recording like a big one):
// `&cache=BYTES`, `&spacing=BYTES` (output between checkpoints), `&batch=EVENTS`.
/* global Terminal */

const $ = (id) => document.getElementById(id);
const now = () => performance.timeOrigin + performance.now();
const params = new URLSearchParams(location.search);
const MAX_ROWS = 500;
const MAX_EVENTS = 5000;
const MAX_CHECKPOINTS = 64;
const SNAPSHOT_BUDGET = 16 << 20;
const SCROLLBACK = 1000; // as the worker's headless terminal
const numParam = (name, dflt, min) => {
  const v = Number(params.get(name));
  return params.has(name) && Number.isFinite(v) ? Math.max(min, v) : dflt;
};
const config = {
  cache: numParam('cache', 24 << 20, 1024), // bytes of frames kept
  spacing: numParam('spacing', 4 << 20, 0), // output bytes between checkpoints (at least)
  batch: numParam('batch', 4096, 1), // events per batch from the worker
};

const term = new Terminal({ cols: 80, rows: 24, convertEol: false, scrollback: SCROLLBACK, allowProposedApi: false });
term.open($('terminal'));

/** Everything known about the open recording. */
let rec;
let worker;
/**
 * Player state: position `pos` (ms on the active timeline) at wall time `anchorAt`; `next`:
 * number of the next frame to write (all before it are on the terminal); `last`: times of
 * the last frame written; `target`/`done`: a seek waiting for frames.
 */
const player = {
  playing: false, speed: 1, pos: 0, anchorAt: 0, next: 0, last: null, skipIdle: false, ended: false,
  stallAt: null, seekDone: null,
};
const metrics = {};
window.tapelog = {
  metrics, player, config, get recording() { return rec; }, screenText, open: (source, label) => open(source, label),
  /** What the page retains, in bytes (the memory test reads this). */
  retained,
};

function reset() {
  rec = {
    source: null, batches: [], cacheBytes: 0, frames: 0, end: { time: 0, idle: 0 },
    checkpoints: [{ frame: 0, time: 0, idle: 0, snapshot: null }], snapshotBytes: 0,
    replay: null, gen: 0, events: [], eventsDropped: 0, unresolved: [], printRows: [],
    summary: null, stats: null, initialSize: null, done: false, error: null, bytes: 0, deepLink: null,
  };
  Object.keys(metrics).forEach((k) => delete metrics[k]);
  metrics.cacheLimit = config.cache;
  metrics.cacheMax = 0;
  Object.assign(player, { playing: false, pos: 0, next: 0, last: null, ended: false, stallAt: null, seekDone: null });
  term.write('\x1bc');
  $('error').hidden = true;
  document.body.dataset.state = 'loading';
  delete document.body.dataset.seeked;
  document.body.dataset.playback = 'paused';
  $('events').tBodies[0].replaceChildren();
  $('filters').replaceChildren();
  $('summary').replaceChildren();
  for (const id of ['play', 'seek', 'export-json', 'export-cast']) $(id).disabled = true;
}

function retained() {
  return {
    cacheBytes: rec.cacheBytes, cacheLimit: config.cache, cacheMax: metrics.cacheMax,
    checkpoints: rec.checkpoints.length, snapshotBytes: rec.snapshotBytes,
    events: rec.events.length, printRows: rec.printRows.length, frames: rec.frames,
  };
}

// ---- opening ------------------------------------------------------------------------------

function open(source, label) {
  if (worker) worker.terminate();
  reset();
  rec.source = source;
  $('source').textContent = label;
  metrics.openedAt = now();
  worker = new Worker('worker.js', { type: 'module' });
  worker.onmessage = (m) => onWorker(m.data);
  worker.onerror = (e) => showError({ message: `the decoder failed to start: ${e.message}` });
  worker.postMessage({ type: 'open', source, spacing: config.spacing, batch: config.batch });
}

$('file').addEventListener('change', (e) => {
  const f = e.target.files[0];
  if (f) open({ file: f }, f.name);
});
document.addEventListener('dragover', (e) => { e.preventDefault(); document.body.classList.add('dragging'); });
document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  document.body.classList.remove('dragging');
  const f = e.dataTransfer.files[0];
  if (f) open({ file: f }, f.name);
});

// ---- worker messages ----------------------------------------------------------------------

function onWorker(msg) {
  switch (msg.type) {
    case 'batch': return onBatch(msg);
    case 'checkpoint': return onCheckpoint(msg);
    case 'replay': return onReplay(msg);
    case 'replay-end':
      if (rec.replay && rec.replay.gen === msg.gen) { rec.replay.ended = true; resume(); }
      return;
    case 'done':
      rec.done = true;
      rec.summary = msg.summary; rec.stats = msg.stats; rec.bytes = msg.bytes;
      metrics.doneAt = now(); metrics.decodeMs = msg.decodeMs; metrics.bytes = msg.bytes;
      metrics.headlessMs = msg.headlessMs;
      document.body.dataset.state = 'ready';
      finishLoading();
      return;
    case 'error':
      rec.done = true;
      rec.summary = msg.summary; rec.stats = msg.stats; rec.bytes = msg.bytes;
      showError(msg.error);
      finishLoading();
      return;
    case 'exported': return saveExport(msg);
    case 'export-error':
      $('export-status').textContent = `export stopped: ${msg.error.message}`;
      return;
  }
}

const batchBytes = (B) => B.data.byteLength + 8 * 3 * B.time.length + 8 * B.end.length;

/** Drops batches wholly behind the player until `need` more bytes fit in the cache. */
function makeRoom(need) {
  while (rec.batches.length > 0 && rec.cacheBytes + need > config.cache) {
    const B = rec.batches[0];
    if (B.first + B.time.length > player.next) return false; // the player still needs it
    rec.batches.shift();
    rec.cacheBytes -= batchBytes(B);
  }
  return rec.cacheBytes + need <= config.cache;
}

function cacheEnd() {
  const B = rec.batches[rec.batches.length - 1];
  return B ? B.first + B.time.length : null;
}

/** Adds a batch at the end of the cache if it continues it and fits. */
function cacheBatch(f, first) {
  if (f.time.length === 0) return true;
  const end = cacheEnd();
  if (end !== null ? end !== first : first !== player.next) return false;
  // A batch larger than the whole cache is taken only into an empty cache.
  if (!makeRoom(batchBytes(f)) && rec.batches.length > 0) return false;
  f.first = first;
  rec.batches.push(f);
  rec.cacheBytes += batchBytes(f);
  metrics.cacheMax = Math.max(metrics.cacheMax, rec.cacheBytes);
  return true;
}

function onBatch(msg) {
  if (metrics.firstBytesAt === undefined) metrics.firstBytesAt = msg.firstBytesAt;
  if (!rec.initialSize && msg.initialSize) {
    rec.initialSize = msg.initialSize;
    if (rec.frames === 0) term.resize(msg.initialSize.cols, msg.initialSize.rows);
  }
  const f = msg.frames;
  const n = f.time.length;
  if (n > 0) {
    rec.end = { time: f.time[n - 1], idle: f.idle[n - 1] };
    indexFrames(f, msg.first);
    rec.frames = msg.first + n;
    if (!rec.replay) cacheBatch(f, msg.first); // else the replay feeds the cache
  }
  for (const e of msg.events) {
    if (rec.events.length >= MAX_EVENTS) { rec.eventsDropped++; continue; }
    rec.events.push(e);
    rec.unresolved.push(e);
  }
  rec.summary = msg.summary;
  rec.bytes = msg.bytes;
  $('progress').textContent = `${(msg.bytes / 1e6).toFixed(1)} MB decoded`;
  $('play').disabled = false; $('seek').disabled = false;
  if (rec.deepLink === null && !player.playing && msg.first === 0 && n > 0) {
    play(); // start showing output at once
  } else if (player.playing || player.seekDone) {
    resume();
  }
  maybeDeepLink();
  renderSummary();
  renderTimeline();
  scheduleEventList();
}

/** Notes what the event list and the checkpoints need from a batch of the load pass. */
function indexFrames(f, first) {
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

function onCheckpoint(msg) {
  const cp = { frame: msg.frame, snapshot: msg.snapshot, cols: msg.cols, rows: msg.rows, time: undefined, idle: undefined };
  rec.checkpoints.push(cp);
  rec.snapshotBytes += 2 * msg.snapshot.length;
  if (rec.checkpoints.length > MAX_CHECKPOINTS || rec.snapshotBytes > SNAPSHOT_BUDGET) {
    // Thin out: keep the start and every other checkpoint; the worker spaces new ones wider.
    const dropped = [];
    rec.checkpoints = rec.checkpoints.filter((c, i) => {
      if (i === 0 || i % 2 === 0) return true;
      dropped.push(c.frame);
      rec.snapshotBytes -= 2 * c.snapshot.length;
      return false;
    });
    worker.postMessage({ type: 'thin', dropped });
  }
  metrics.checkpoints = rec.checkpoints.length;
  metrics.snapshotBytes = rec.snapshotBytes;
}

/** A round of frames from the worker's replay. */
function onReplay(msg) {
  const r = rec.replay;
  if (!r || r.gen !== msg.gen) return; // an older replay
  if (metrics.replayFirstAt === undefined) metrics.replayFirstAt = now();
  r.credit -= replayCost(msg.frames);
  r.last = msg.first + msg.frames.time.length;
  if (!cacheBatch(msg.frames, msg.first)) {
    // No room (the player is behind): stop; the player starts a replay again when it gets here.
    worker.postMessage({ type: 'cancel', gen: r.gen });
    rec.replay = null;
    metrics.replaysStopped = (metrics.replaysStopped || 0) + 1;
  }
  resume();
}

/** What a replayed batch counts against the replay's allowance (as worker.js counts it). */
const replayCost = (f) => f.data.length + 32 * f.time.length;

/** Keeps the replay going: asks for more when less than half the cache is ahead. */
function feed() {
  const r = rec.replay;
  if (!r || r.ended) return;
  let ahead = 0;
  for (const B of rec.batches) if (B.first + B.time.length > player.next) ahead += batchBytes(B);
  const want = config.cache / 2 - ahead - r.credit;
  if (want > config.cache / 8) {
    r.credit += want;
    worker.postMessage({ type: 'more', gen: r.gen, budget: want });
  }
}

/** Starts a replay from checkpoint `cp`, giving frames from `from` on. */
function startReplay(cp, from) {
  if (rec.replay) worker.postMessage({ type: 'cancel', gen: rec.replay.gen });
  const gen = ++rec.gen;
  const budget = config.cache / 2;
  if (cacheEnd() !== from) { rec.batches = []; rec.cacheBytes = 0; } // it would not continue it
  rec.replay = { gen, credit: budget, ended: false, from, last: from };
  metrics.replays = (metrics.replays || 0) + 1;
  worker.postMessage({ type: 'replay', gen, at: cp.frame, from, budget, batch: config.batch });
}

function finishLoading() {
  $('progress').textContent = `${(rec.bytes / 1e6).toFixed(1)} MB, ${rec.summary?.events ?? 0} events`;
  for (const id of ['export-json', 'export-cast']) $(id).disabled = false;
  $('play').disabled = false; $('seek').disabled = false;
  for (const cp of rec.checkpoints) if (cp.time === undefined) { cp.time = Infinity; cp.idle = Infinity; }
  for (const e of rec.unresolved) e.seekTo = { ...rec.end };
  rec.unresolved = [];
  if (player.playing || player.seekDone) resume();
  maybeDeepLink();
  renderSummary();
  renderTimeline();
  scheduleEventList();
}

function showError(error) {
  rec.error = error;
  document.body.dataset.state = 'error';
  const what = error.kind === 'EncryptedRecording'
    ? 'This recording is encrypted and cannot be played here.'
    : 'This recording is damaged; everything before the damage is shown.';
  $('error').textContent = `${what}\n${error.message}`;
  $('error').hidden = false;
}

// ---- the timeline -------------------------------------------------------------------------

const key = () => (player.skipIdle ? 'idle' : 'time');

/** End of the decoded timeline (ms). */
function decodedEnd() {
  return rec.end[key()];
}

function position() {
  if (!player.playing) return player.pos;
  return player.pos + (now() - player.anchorAt) * player.speed;
}

function anchor(pos) { player.pos = pos; player.anchorAt = now(); }

let pendingWrites = 0;
function write(data) {
  pendingWrites++;
  if (metrics.firstWriteAt === undefined) metrics.firstWriteAt = now();
  term.write(data, () => {
    pendingWrites--;
    if (metrics.firstOutputAt === undefined) metrics.firstOutputAt = now();
  });
}

/** The cached batch holding frame `n`, or null. */
function batchOf(n) {
  for (const B of rec.batches) if (n >= B.first && n < B.first + B.time.length) return B;
  return null;
}

/**
 * Writes every frame at or before `t` (ms on the active timeline) from `player.next` on.
 * Returns true when it got past `t` (or wrote every frame there is), false when it waits for
 * frames that are decoded but not cached (a replay is started or kept fed for them).
 */
function advance(t) {
  const k = key();
  for (;;) {
    const B = batchOf(player.next);
    if (!B) {
      const r = rec.replay;
      if (r && r.ended) rec.replay = null;
      // Nothing more decoded yet (or a replay ended there: the damage, or the end).
      if (player.next >= rec.frames || (r && r.ended && r.last <= player.next)) return true;
      if (!r || r.ended) startReplay(checkpointAtFrame(player.next), player.next);
      return false;
    }
    const times = B[k];
    let f = player.next - B.first;
    let a = f === 0 ? 0 : B.end[f - 1];
    let b = a;
    while (f < times.length && times[f] <= t) {
      if (B.cols[f] > 0) {
        if (b > a) write(B.data.subarray(a, b));
        const c = B.cols[f], r = B.rows[f];
        term.write(new Uint8Array(0), () => term.resize(c, r)); // in order with the output
        a = b = B.end[f];
      } else {
        b = B.end[f];
      }
      f++;
    }
    if (b > a) write(B.data.subarray(a, b));
    if (f > player.next - B.first) player.last = { time: B.time[f - 1], idle: B.idle[f - 1] };
    player.next = B.first + f;
    feed();
    if (f < times.length) return true;
  }
}

/** The last checkpoint at or before frame `n`. */
function checkpointAtFrame(n) {
  let best = rec.checkpoints[0];
  for (const cp of rec.checkpoints) if (cp.frame <= n && cp.frame >= best.frame) best = cp;
  return best;
}

/** The last checkpoint whose first frame is at or before `t` on the active timeline. */
function checkpointAtTime(t) {
  const k = key();
  let best = rec.checkpoints[0];
  for (const cp of rec.checkpoints) if (cp[k] !== undefined && cp[k] <= t && cp.frame >= best.frame) best = cp;
  return best;
}

/** Puts the terminal in the state of checkpoint `cp` (frames before `cp.frame` shown). */
function restore(cp) {
  term.write('\x1bc');
  const size = cp.snapshot ? cp : (rec.initialSize || { cols: 80, rows: 24 });
  term.write(new Uint8Array(0), () => term.resize(size.cols, size.rows));
  if (cp.snapshot) term.write(cp.snapshot);
  player.next = cp.frame;
  player.last = cp.frame > 0 ? { time: cp.time, idle: cp.idle } : null;
  if (!batchOf(cp.frame) && cp.frame < rec.frames) startReplay(cp, cp.frame); // decode again from there
}

/** Shows the terminal as it is at `t` ms; calls `done` once xterm has drawn it. */
function seek(t, done) {
  t = Math.max(0, t);
  metrics.seekStartedAt = now();
  const k = key();
  const cp = checkpointAtTime(t);
  // Forward from what is on the terminal when nothing is skipped that a checkpoint would skip.
  const forward = player.last !== null && player.last[k] <= t && cp.frame <= player.next;
  if (!forward) restore(cp);
  player.ended = false;
  player.stallAt = null;
  anchor(t);
  player.seekDone = done || (() => {});
  resume();
  renderClock();
}

/** Continues a seek or the playback after frames arrived. */
function resume() {
  if (player.seekDone) {
    if (!advance(player.pos) && !(rec.done && player.next >= rec.frames)) return;
    const done = player.seekDone;
    player.seekDone = null;
    term.write(new Uint8Array(0), () => { metrics.seekMs = now() - metrics.seekStartedAt; renderClock(); done(); });
    renderClock();
  }
}

function play() {
  if (player.playing) return;
  if (rec.done && position() >= decodedEnd()) seek(0);
  player.playing = true;
  anchor(player.pos);
  document.body.dataset.playback = 'playing';
  $('play').textContent = 'Pause';
  requestAnimationFrame(tick);
}

function pause() {
  if (!player.playing) return;
  anchor(position());
  player.playing = false;
  document.body.dataset.playback = player.ended ? 'ended' : 'paused';
  $('play').textContent = 'Play';
}

function tick() {
  if (!player.playing) return;
  let t = position();
  if (player.seekDone) { requestAnimationFrame(tick); return; } // a seek is waiting for frames
  if (!advance(t)) {
    // Waiting for frames from a replay: hold the clock where the output stops.
    player.stallAt ??= t;
    anchor(player.stallAt);
    t = player.stallAt;
  } else {
    player.stallAt = null;
  }
  renderClock();
  if (rec.done && t >= decodedEnd() && player.next >= rec.frames) {
    player.ended = true;
    anchor(decodedEnd());
    pause();
    return;
  }
  requestAnimationFrame(tick);
}

const fmt = (ms) => {
  const s = Math.max(0, ms) / 1000;
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, '0')}`;
};

function renderClock() {
  const end = decodedEnd();
  const t = Math.min(position(), end);
  $('clock').textContent = `${fmt(t)} / ${fmt(end)}${rec.done ? '' : '…'}`;
  $('timeline-pos').style.width = end > 0 ? `${(100 * t) / end}%` : '0';
}

function renderTimeline() {
  renderClock();
}

$('play').addEventListener('click', () => (player.playing ? pause() : play()));
$('speed').addEventListener('change', (e) => {
  anchor(position());
  player.speed = Number(e.target.value);
});
$('skip-idle').addEventListener('change', (e) => {
  // Keep the same frame on screen: the position becomes that frame's time on the other timeline.
  player.skipIdle = e.target.checked;
  anchor(player.last ? player.last[key()] : 0);
  renderClock();
});
$('seek').addEventListener('click', () => {
  const s = Number($('seek-time').value);
  if (Number.isFinite(s)) seek(s * 1000);
});
$('timeline').addEventListener('click', (e) => {
  const r = e.currentTarget.getBoundingClientRect();
  seek(((e.clientX - r.left) / r.width) * decodedEnd());
});

// ---- deep links ---------------------------------------------------------------------------

function maybeDeepLink() {
  const dl = rec.deepLink;
  if (!dl || dl.done) return;
  const reached = dl.t === 'end' ? rec.done : rec.done || decodedEnd() >= dl.t * 1000;
  if (!reached) return;
  dl.done = true;
  pause();
  const t = dl.t === 'end' ? decodedEnd() : dl.t * 1000;
  seek(t, () => { document.body.dataset.seeked = String(dl.t); });
}

/** The terminal's visible text (also in the DOM: xterm's DOM renderer, `.xterm-rows`). */
function screenText() {
  const buf = term.buffer.active;
  const lines = [];
  for (let i = 0; i < term.rows; i++) lines.push(buf.getLine(buf.viewportY + i)?.translateToString(true) ?? '');
  return lines.join('\n');
}

// ---- summary and events ---------------------------------------------------------------------

function renderSummary() {
  const s = rec.summary;
  if (!s) return;
  const st = rec.stats;
  const rows = [
    ['User', s.user], ['Login', s.login], ['Server', s.server], ['Cluster', s.cluster],
    ['Session', s.sid], ['Start', s.start], ['End', s.end + (s.ended ? '' : ' (no session.end)')],
    ['Duration', s.duration_ms === null ? '' : fmt(s.duration_ms)],
    ['Participants', s.participants.join(', ')], ['Events', String(s.events)],
    ['Output', `${s.output_bytes} bytes`],
  ];
  if (st) rows.push(['Decode', `${st.parts} parts, ${st.skipped} duplicates skipped, ${st.outOfOrder} out of order`]);
  const dl = $('summary');
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v ?? ''; dd.dataset.field = k.toLowerCase();
    dl.append(dt, dd);
  }
  renderFilters(s.counts);
}

const hidden = new Set();
function renderFilters(counts) {
  const box = $('filters');
  for (const [type, n] of Object.entries(counts)) {
    let label = box.querySelector(`label[data-type="${CSS.escape(type)}"]`);
    if (!label) {
      label = document.createElement('label');
      label.dataset.type = type;
      const cb = document.createElement('input');
      cb.type = 'checkbox'; cb.checked = !hidden.has(type); cb.value = type;
      cb.addEventListener('change', () => { cb.checked ? hidden.delete(type) : hidden.add(type); renderEventList(); });
      label.append(cb, document.createTextNode(''));
      box.append(label);
    }
    label.lastChild.textContent = ` ${type} (${n})`;
  }
}

/**
 * Events in index order: the non-print events kept (the first MAX_EVENTS) and the first
 * MAX_ROWS prints (noted during the load pass): enough for the first MAX_ROWS rows of any
 * filter. The rest is counted from the summary.
 */
function* eventRows() {
  const start = rec.summary?.start ? Date.parse(rec.summary.start) : 0;
  let i = 0, p = 0;
  for (;;) {
    const e = rec.events[i];
    const q = rec.printRows[p];
    if (!e && !q) return;
    if (q && (!e || q.ei < e.ei)) {
      yield { ei: q.ei, ms: q.ms, type: 'print', detail: `${q.bytes} bytes`, seekTo: q.seekTo };
      p++;
    } else {
      const ms = e.time ? Date.parse(e.time) - start : 0;
      yield { ei: e.ei, ms, type: e.event, detail: [e.code, e.user, e.size].filter(Boolean).join(' '), seekTo: e.seekTo };
      i++;
    }
  }
}

let listTimer = null;
function scheduleEventList() {
  if (listTimer) return;
  listTimer = setTimeout(() => { listTimer = null; renderEventList(); }, 200);
}

function renderEventList() {
  const body = $('events').tBodies[0];
  const rows = [];
  for (const r of eventRows()) {
    if (hidden.has(r.type)) continue;
    if (rows.length >= MAX_ROWS) break; // the rest is counted from the summary, not walked
    const tr = document.createElement('tr');
    tr.dataset.type = r.type;
    for (const v of [r.ei, fmt(r.ms), r.type, r.detail]) {
      const td = document.createElement('td'); td.textContent = v; tr.append(td);
    }
    tr.addEventListener('click', () => { pause(); seek(r.seekTo ? r.seekTo[key()] : decodedEnd()); });
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const counts = rec.summary?.counts ?? {};
  const shown = Object.entries(counts).reduce((n, [t, c]) => n + (hidden.has(t) ? 0 : c), 0);
  const more = Math.max(0, shown - rows.length);
  const kept = rec.eventsDropped ? ` (the list keeps the first ${MAX_EVENTS} events other than prints)` : '';
  $('events-more').textContent = more ? `… and ${more} more (use the filters)${kept}` : '';
}

// ---- exports ------------------------------------------------------------------------------

function requestExport(format) {
  $('export-status').textContent = 'exporting…';
  worker.postMessage({ type: 'export', source: rec.source, format });
}
$('export-json').addEventListener('click', () => requestExport('json'));
$('export-cast').addEventListener('click', () => requestExport('asciicast'));

function saveExport({ format, blob }) {
  const base = (rec.summary?.sid || 'recording');
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `${base}.${format === 'json' ? 'jsonl' : 'cast'}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  $('export-status').textContent = `${a.download}: ${blob.size} bytes`;
}

// ---- start --------------------------------------------------------------------------------

reset();
document.body.dataset.state = 'idle';
const src = params.get('src');
if (src) {
  const t = params.get('t');
  open({ url: new URL(src, location.href).href }, src);
  if (t !== null) rec.deepLink = { t: t === 'end' ? 'end' : Math.max(0, Number(t) || 0), done: false };
}
