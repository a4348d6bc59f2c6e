// The tapelog player page. Decoding happens in worker.js (tapelog-wasm); this file keeps the
// frames the worker sends (terminal output with its times, in typed arrays) and plays them
// in xterm.js: play, pause, speed, seek by time or on the timeline, skip idle gaps, resizes.
// Deep links: ?src=URL opens a recording, &t=SECONDS or &t=end shows that moment, paused.
/* global Terminal */

const $ = (id) => document.getElementById(id);
const now = () => performance.timeOrigin + performance.now();
const MAX_ROWS = 500;

const term = new Terminal({ cols: 80, rows: 24, convertEol: false, scrollback: 1000, allowProposedApi: false });
term.open($('terminal'));

/** Everything known about the open recording. */
let rec;
let worker;
/** Player state: position `pos` (ms on the active timeline) at wall time `anchorAt`. */
const player = { playing: false, speed: 1, pos: 0, anchorAt: 0, cur: { b: 0, f: 0 }, skipIdle: false, ended: false };
const metrics = {};
window.tapelog = { metrics, player, get recording() { return rec; }, screenText, open: (source, label) => open(source, label) };

function reset() {
  rec = {
    source: null, batches: [], frames: 0, events: [], types: new Map(), summary: null, stats: null,
    initialSize: null, done: false, error: null, bytes: 0, deepLink: null,
  };
  Object.keys(metrics).forEach((k) => delete metrics[k]);
  player.playing = false; player.pos = 0; player.cur = { b: 0, f: 0 }; player.ended = false;
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
  worker.postMessage({ type: 'open', source });
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
    case 'done':
      rec.done = true;
      rec.summary = msg.summary; rec.stats = msg.stats; rec.bytes = msg.bytes;
      metrics.doneAt = now(); metrics.decodeMs = msg.decodeMs; metrics.bytes = msg.bytes;
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

function onBatch(msg) {
  if (metrics.firstBytesAt === undefined) metrics.firstBytesAt = msg.firstBytesAt;
  if (!rec.initialSize && msg.initialSize) {
    rec.initialSize = msg.initialSize;
    if (rec.frames === 0) term.resize(msg.initialSize.cols, msg.initialSize.rows);
  }
  const f = msg.frames;
  if (f.time.length > 0) {
    f.first = rec.frames;
    rec.batches.push(f);
    rec.frames += f.time.length;
  }
  for (const e of msg.events) rec.events.push(e);
  rec.summary = msg.summary;
  rec.bytes = msg.bytes;
  $('progress').textContent = `${(msg.bytes / 1e6).toFixed(1)} MB decoded`;
  $('play').disabled = false; $('seek').disabled = false;
  if (rec.deepLink === null && rec.batches.length === 1 && f.time.length > 0) {
    play(); // start showing output at once
  }
  maybeDeepLink();
  renderSummary();
  renderTimeline();
  scheduleEventList();
}

function finishLoading() {
  $('progress').textContent = `${(rec.bytes / 1e6).toFixed(1)} MB, ${rec.summary?.events ?? 0} events`;
  for (const id of ['export-json', 'export-cast']) $(id).disabled = false;
  $('play').disabled = false; $('seek').disabled = false;
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
  const b = rec.batches[rec.batches.length - 1];
  return b ? b[key()][b[key()].length - 1] : 0;
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

/** Writes every frame at or before `t` (ms on the active timeline) after the cursor. */
function advance(t) {
  const k = key();
  while (player.cur.b < rec.batches.length) {
    const B = rec.batches[player.cur.b];
    const times = B[k];
    let f = player.cur.f;
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
    player.cur.f = f;
    if (f < times.length) return;
    player.cur.b++;
    player.cur.f = 0;
  }
}

/** Shows the terminal as it is at `t` ms; calls `done` once xterm has drawn it. */
function seek(t, done) {
  t = Math.max(0, t);
  term.write('\x1bc');
  const size = rec.initialSize || { cols: 80, rows: 24 };
  term.write(new Uint8Array(0), () => term.resize(size.cols, size.rows));
  player.cur = { b: 0, f: 0 };
  player.ended = false;
  advance(t);
  anchor(t);
  term.write(new Uint8Array(0), () => { renderClock(); if (done) done(); });
  renderClock();
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
  const t = position();
  advance(t);
  renderClock();
  if (rec.done && t >= decodedEnd()) {
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
  const { b, f } = player.cur;
  const last = f > 0 ? [b, f - 1] : b > 0 ? [b - 1, rec.batches[b - 1].time.length - 1] : null;
  player.skipIdle = e.target.checked;
  const pos = last ? rec.batches[last[0]][key()][last[1]] : 0;
  anchor(pos);
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

/** Events in index order: the objects, and print events as rows made from the frames. */
function* eventRows() {
  const start = rec.summary?.start ? Date.parse(rec.summary.start) : 0;
  let i = 0;
  let b = 0, f = 0;
  const nextPrint = () => {
    while (b < rec.batches.length) {
      const B = rec.batches[b];
      if (f >= B.time.length) { b++; f = 0; continue; }
      if (B.cols[f] > 0) { f++; continue; }
      return { B, f };
    }
    return null;
  };
  for (;;) {
    const e = rec.events[i];
    const p = nextPrint();
    if (!e && !p) return;
    if (p && (!e || p.B.index[p.f] < e.ei)) {
      const bytes = p.B.end[p.f] - (p.f > 0 ? p.B.end[p.f - 1] : 0);
      yield { ei: p.B.index[p.f], ms: p.B.time[p.f], type: 'print', detail: `${bytes} bytes` };
      f++;
    } else {
      const ms = e.time ? Date.parse(e.time) - start : 0;
      yield { ei: e.ei, ms, type: e.event, detail: [e.code, e.user, e.size].filter(Boolean).join(' ') };
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
    tr.addEventListener('click', () => seekToIndex(r.ei));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const counts = rec.summary?.counts ?? {};
  const shown = Object.entries(counts).reduce((n, [t, c]) => n + (hidden.has(t) ? 0 : c), 0);
  const more = Math.max(0, shown - rows.length);
  $('events-more').textContent = more ? `… and ${more} more (use the filters)` : '';
}

/** Seeks to the first frame at or after event index `ei`. */
function seekToIndex(ei) {
  for (const B of rec.batches) {
    for (let f = 0; f < B.index.length; f++) {
      if (B.index[f] >= ei) { pause(); seek(B[key()][f]); return; }
    }
  }
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
const params = new URLSearchParams(location.search);
const src = params.get('src');
if (src) {
  const t = params.get('t');
  open({ url: new URL(src, location.href).href }, src);
  if (t !== null) rec.deepLink = { t: t === 'end' ? 'end' : Math.max(0, Number(t) || 0), done: false };
}
