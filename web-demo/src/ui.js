// The page around the terminal: the controls (open, play, speed, skip idle, seek, the
// timeline, exports), the clock, the error view, the session summary and the event list with
// its filters. It reads the recording and the player and calls the player; its own state (the
// filters, the event list's timer) is in a `Ui`.
import { MAX_EVENTS, MAX_ROWS } from './source.js';
import { decodedEnd, key, pause, play, playing, position, seek, setSkipIdle, setSpeed } from './player.js';

/** @typedef {import('./source.js').Recording} Recording */
/** @typedef {import('./player.js').Player} Player */
/** @typedef {{rec: Recording, player: Player}} Session */

/**
 * @typedef {object} Ui
 * @property {Set<string>} hidden event types filtered out of the list
 * @property {ReturnType<typeof setTimeout> | null} listTimer a pending redraw of the list
 */

/**
 * The element with id `id` (the page has every id this file uses).
 * @param {string} id
 */
export function $(id) {
  return $as(id, HTMLElement);
}

/**
 * The element with id `id`, of type `type`.
 * @template {HTMLElement} E
 * @param {string} id
 * @param {{new (): E}} type
 * @returns {E}
 */
function $as(id, type) {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`the page has no ${type.name} #${id}`);
  return el;
}

/** @param {string} id */
const button = (id) => $as(id, HTMLButtonElement);
/** @param {string} id */
const input = (id) => $as(id, HTMLInputElement);

/** @returns {Ui} */
export function createUi() {
  return { hidden: new Set(), listTimer: null };
}

/** The values of the speed and skip-idle controls, for a new player. */
export function controls() {
  return { speed: Number($as('speed', HTMLSelectElement).value), skipIdle: input('skip-idle').checked };
}

/**
 * The page for a recording being opened.
 * @param {string} label
 */
export function resetView(label) {
  $('source').textContent = label;
  $('error').hidden = true;
  document.body.dataset.state = 'loading';
  delete document.body.dataset.seeked;
  document.body.dataset.playback = 'paused';
  $as('events', HTMLTableElement).tBodies[0].replaceChildren();
  $('filters').replaceChildren();
  $('summary').replaceChildren();
  for (const id of ['play', 'seek', 'export-json', 'export-cast']) button(id).disabled = true;
}

/**
 * @param {import('./protocol.js').ErrorInfo} error
 */
export function showError(error) {
  document.body.dataset.state = 'error';
  const what = error.kind === 'EncryptedRecording'
    ? 'This recording is encrypted and cannot be played here.'
    : 'This recording is damaged; everything before the damage is shown.';
  $('error').textContent = `${what}\n${error.message}`;
  $('error').hidden = false;
}

/**
 * After a batch of the load pass.
 * @param {Recording} rec
 */
export function showProgress(rec) {
  $('progress').textContent = `${(rec.bytes / 1e6).toFixed(1)} MB decoded`;
  button('play').disabled = false; button('seek').disabled = false;
}

/**
 * After the load pass.
 * @param {Recording} rec
 */
export function showLoaded(rec) {
  if (rec.error) showError(rec.error);
  else document.body.dataset.state = 'ready';
  $('progress').textContent = `${(rec.bytes / 1e6).toFixed(1)} MB, ${rec.summary?.events ?? 0} events`;
  for (const id of ['export-json', 'export-cast']) button(id).disabled = false;
  button('play').disabled = false; button('seek').disabled = false;
}

/**
 * `playing`, `paused` or `ended`, on the page (`body[data-playback]`) and the play button.
 * @param {'playing' | 'paused' | 'ended'} state
 */
export function showPlayback(state) {
  document.body.dataset.playback = state;
  $('play').textContent = state === 'playing' ? 'Pause' : 'Play';
}

/**
 * A deep link's moment is on the screen (`body[data-seeked]`, the tests wait for it).
 * @param {number | 'end'} t
 */
export function showSeeked(t) {
  document.body.dataset.seeked = String(t);
}

/** @param {number} ms */
export const fmt = (ms) => {
  const s = Math.max(0, ms) / 1000;
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, '0')}`;
};

/**
 * The clock and the timeline's position.
 * @param {Player} p
 */
export function renderClock(p) {
  const end = decodedEnd(p);
  const t = Math.min(position(p), end);
  $('clock').textContent = `${fmt(t)} / ${fmt(end)}${p.rec.done ? '' : '…'}`;
  $('timeline-pos').style.width = end > 0 ? `${(100 * t) / end}%` : '0';
}

/**
 * Binds the controls. `session()` is the open recording (null before the first);
 * `open` opens a file.
 * @param {{session: () => Session | null, open: (file: File) => void,
 *   exportAs: (format: import('./protocol.js').ExportFormat) => void}} app
 */
export function bindControls(app) {
  const player = () => app.session()?.player ?? null;
  input('file').addEventListener('change', () => {
    const f = input('file').files?.[0];
    if (f) app.open(f);
  });
  document.addEventListener('dragover', (e) => { e.preventDefault(); document.body.classList.add('dragging'); });
  document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    document.body.classList.remove('dragging');
    const f = e.dataTransfer?.files[0];
    if (f) app.open(f);
  });
  $('play').addEventListener('click', () => {
    const p = player();
    if (p) playing(p) ? pause(p) : play(p);
  });
  $('speed').addEventListener('change', () => {
    const p = player();
    if (p) setSpeed(p, controls().speed);
  });
  $('skip-idle').addEventListener('change', () => {
    const p = player();
    if (p) setSkipIdle(p, controls().skipIdle);
  });
  $('seek').addEventListener('click', () => {
    const p = player();
    const s = Number(input('seek-time').value);
    if (p && Number.isFinite(s)) seek(p, s * 1000);
  });
  $('timeline').addEventListener('click', (e) => {
    const p = player();
    if (!p || !(e.currentTarget instanceof HTMLElement)) return;
    const r = e.currentTarget.getBoundingClientRect();
    seek(p, ((e.clientX - r.left) / r.width) * decodedEnd(p));
  });
  $('export-json').addEventListener('click', () => app.exportAs('json'));
  $('export-cast').addEventListener('click', () => app.exportAs('asciicast'));
}

/** @param {string} text */
export function exportStatus(text) {
  $('export-status').textContent = text;
}

/**
 * Saves an export as a download.
 * @param {Recording} rec
 * @param {import('./protocol.js').ExportFormat} format
 * @param {Blob} blob
 */
export function saveExport(rec, format, blob) {
  const base = (rec.summary?.sid || 'recording');
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `${base}.${format === 'json' ? 'jsonl' : 'cast'}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  exportStatus(`${a.download}: ${blob.size} bytes`);
}

// ---- summary and events -------------------------------------------------------------------

/**
 * The session summary and the filters of the event list.
 * @param {Ui} ui
 * @param {Session} s
 */
export function renderSummary(ui, s) {
  const { rec } = s;
  const sum = rec.summary;
  if (!sum) return;
  const st = rec.stats;
  const rows = [
    ['User', sum.user], ['Login', sum.login], ['Server', sum.server], ['Cluster', sum.cluster],
    ['Session', sum.sid], ['Start', sum.start], ['End', sum.end + (sum.ended ? '' : ' (no session.end)')],
    ['Duration', sum.duration_ms === null ? '' : fmt(sum.duration_ms)],
    ['Participants', sum.participants.join(', ')], ['Events', String(sum.events)],
    ['Output', `${sum.output_bytes} bytes`],
  ];
  if (st) rows.push(['Decode', `${st.parts} parts, ${st.skipped} duplicates skipped, ${st.outOfOrder} out of order`]);
  const dl = $('summary');
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'); dt.textContent = k ?? '';
    const dd = document.createElement('dd'); dd.textContent = v ?? ''; dd.dataset.field = (k ?? '').toLowerCase();
    dl.append(dt, dd);
  }
  renderFilters(ui, s, sum.counts);
}

/**
 * @param {Ui} ui
 * @param {Session} s
 * @param {Record<string, number>} counts
 */
function renderFilters(ui, s, counts) {
  const box = $('filters');
  for (const [type, n] of Object.entries(counts)) {
    /** @type {HTMLElement | null} */
    let label = box.querySelector(`label[data-type="${CSS.escape(type)}"]`);
    if (!label) {
      label = document.createElement('label');
      label.dataset.type = type;
      const cb = document.createElement('input');
      cb.type = 'checkbox'; cb.checked = !ui.hidden.has(type); cb.value = type;
      cb.addEventListener('change', () => { cb.checked ? ui.hidden.delete(type) : ui.hidden.add(type); renderEventList(ui, s); });
      label.append(cb, document.createTextNode(''));
      box.append(label);
    }
    if (label.lastChild) label.lastChild.textContent = ` ${type} (${n})`;
  }
}

/**
 * Events in index order: the non-print events kept (the first MAX_EVENTS) and the first
 * MAX_ROWS prints (noted during the load pass): enough for the first MAX_ROWS rows of any
 * filter. The rest is counted from the summary.
 * @param {Recording} rec
 * @returns {Generator<{ei: number, ms: number, type: string, detail: string,
 *   seekTo: import('./protocol.js').Times | undefined}>}
 */
function* eventRows(rec) {
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

/**
 * Redraws the event list soon (at most every 200 ms while loading).
 * @param {Ui} ui
 * @param {Session} s
 */
export function scheduleEventList(ui, s) {
  if (ui.listTimer) return;
  ui.listTimer = setTimeout(() => { ui.listTimer = null; renderEventList(ui, s); }, 200);
}

/**
 * @param {Ui} ui
 * @param {Session} s
 */
function renderEventList(ui, s) {
  const { rec, player } = s;
  const body = $as('events', HTMLTableElement).tBodies[0];
  const rows = [];
  for (const r of eventRows(rec)) {
    if (ui.hidden.has(r.type)) continue;
    if (rows.length >= MAX_ROWS) break; // the rest is counted from the summary, not walked
    const tr = document.createElement('tr');
    tr.dataset.type = r.type;
    for (const v of [String(r.ei), fmt(r.ms), r.type, r.detail]) {
      const td = document.createElement('td'); td.textContent = v; tr.append(td);
    }
    tr.addEventListener('click', () => { pause(player); seek(player, r.seekTo ? r.seekTo[key(player)] : decodedEnd(player)); });
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const counts = rec.summary?.counts ?? {};
  const shown = Object.entries(counts).reduce((n, [t, c]) => n + (ui.hidden.has(t) ? 0 : c), 0);
  const more = Math.max(0, shown - rows.length);
  const kept = rec.eventsDropped ? ` (the list keeps the first ${MAX_EVENTS} events other than prints)` : '';
  $('events-more').textContent = more ? `… and ${more} more (use the filters)${kept}` : '';
}
