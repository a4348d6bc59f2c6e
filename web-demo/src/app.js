// The tapelog player page: the terminal, the state of the open recording, and the wiring of
// the three parts (docs/browser.md):
// - source.js: where the frames come from (the decoding worker over a file, a URL or a
//   session of `tapelog serve`) and the bounded cache of frames and checkpoints;
// - player.js: frames to the terminal in time, on tapelog-wasm's PlayClock;
// - ui.js: the controls, the clock, the summary and the event list; sessions.js: the session
//   list of `tapelog serve`.
// State is passed explicitly: the `App` below holds the open `Session` (recording + player)
// and the page's state; nothing else keeps any.
// Deep links: ?src=URL opens a recording, &t=SECONDS or &t=end shows that moment, paused.
// Tuning knobs (the tests use them to exercise a small recording like a big one):
// `&cache=BYTES`, `&spacing=BYTES` (output between checkpoints), `&batch=EVENTS`.
import init from './pkg/tapelog_wasm.js';
import { SCROLLBACK } from './protocol.js';
import { closeRecording, openRecording, requestExport, retained } from './source.js';
import { closePlayer, createPlayer, framesArrived, loaded, resume, screenText } from './player.js';
import {
  bindControls, controls, createUi, exportStatus, renderClock, renderSummary, resetView,
  saveExport, scheduleEventList, showError, showSeeked, showLoaded, showPlayback, showProgress,
} from './ui.js';
import { startSessionList } from './sessions.js';

/** @typedef {import('./source.js').Config} Config */
/** @typedef {import('./source.js').Metrics} Metrics */
/** @typedef {import('./ui.js').Session} Session */
/** @typedef {import('./protocol.js').Source} Source */

/**
 * @typedef {object} App
 * @property {Config} config
 * @property {Metrics} metrics
 * @property {Terminal} term
 * @property {import('./ui.js').Ui} ui
 * @property {Promise<unknown>} wasm tapelog-wasm ready in the page (for the clock)
 * @property {Session | null} session the open recording
 * @property {number} opening the number of the last `open` (a later one wins)
 */

/**
 * @param {URLSearchParams} params
 * @param {string} name
 * @param {number} dflt
 * @param {number} min
 */
const numParam = (params, name, dflt, min) => {
  const v = Number(params.get(name));
  return params.has(name) && Number.isFinite(v) ? Math.max(min, v) : dflt;
};

/**
 * Opens `source`: a new worker decodes it, a new player plays it.
 * @param {App} app
 * @param {Source} source
 * @param {string} label
 * @param {import('./player.js').DeepLink | null} [deepLink]
 */
async function open(app, source, label, deepLink = null) {
  const opening = ++app.opening;
  try {
    await app.wasm;
  } catch (e) {
    showError({ message: `the player failed to start: ${e instanceof Error ? e.message : e}`, kind: null, offset: null });
    return;
  }
  if (opening !== app.opening) return; // another recording was opened meanwhile
  close(app);
  const { metrics, config, term, ui } = app;
  for (const k of /** @type {(keyof Metrics)[]} */ (Object.keys(metrics))) delete metrics[k];
  metrics.cacheLimit = config.cache;
  metrics.cacheMax = 0;
  term.write('\x1bc');
  resetView(label);
  /** @type {Session | null} */
  let s = null;
  const current = () => (s !== null && app.session === s ? s : null);
  const rec = openRecording(source, config, metrics, {
    next: () => s?.player.next ?? 0,
    initialSize: (size) => term.resize(size.cols, size.rows),
    batch: (first, n) => {
      const c = current();
      if (!c) return;
      showProgress(c.rec);
      framesArrived(c.player, first, n);
      renderSummary(ui, c);
      renderClock(c.player);
      scheduleEventList(ui, c);
    },
    frames: () => { const c = current(); if (c) resume(c.player); },
    loaded: () => {
      const c = current();
      if (!c) return;
      showLoaded(c.rec);
      loaded(c.player);
      renderSummary(ui, c);
      renderClock(c.player);
      scheduleEventList(ui, c);
    },
    failed: (error) => showError(error),
    exported: (format, blob) => { const c = current(); if (c) saveExport(c.rec, format, blob); },
    exportFailed: (error) => exportStatus(`export stopped: ${error.message}`),
  });
  const player = createPlayer({
    term, rec, metrics, deepLink, ...controls(),
    view: { clock: () => renderClock(player), playback: showPlayback },
  });
  s = { rec, player };
  app.session = s;
}

/**
 * Stops the open recording's worker and player.
 * @param {App} app
 */
function close(app) {
  const s = app.session;
  if (!s) return;
  app.session = null;
  closeRecording(s.rec);
  closePlayer(s.player);
}

/** The page: starts tapelog-wasm, binds the controls, opens `?src=`. */
function main() {
  const params = new URLSearchParams(location.search);
  const term = new Terminal({ cols: 80, rows: 24, convertEol: false, scrollback: SCROLLBACK, allowProposedApi: false });
  term.open(document.getElementById('terminal') ?? document.body);
  /** @type {App} */
  const app = {
    config: {
      cache: numParam(params, 'cache', 8 << 20, 1024),
      spacing: numParam(params, 'spacing', 4 << 20, 0),
      batch: numParam(params, 'batch', 4096, 1),
    },
    metrics: {},
    term,
    ui: createUi(),
    wasm: init(),
    session: null,
    opening: 0,
  };
  app.wasm.catch(() => {}); // reported by `open`
  /** @type {(source: Source, label: string) => Promise<void>} */
  const openSource = (source, label) => open(app, source, label);
  // For the tests and the benchmark.
  Object.assign(window, {
    tapelog: {
      metrics: app.metrics,
      config: app.config,
      get player() { return app.session?.player ?? null; },
      get recording() { return app.session?.rec ?? null; },
      screenText: () => screenText(term),
      open: openSource,
      /** What the page retains, in bytes (the memory test reads this). */
      retained: () => retained(app.session?.rec ?? null, app.config, app.metrics),
    },
  });
  bindControls({
    session: () => app.session,
    open: (file) => openSource({ file }, file.name),
    exportAs: (format) => {
      if (!app.session) return;
      exportStatus('exporting…');
      requestExport(app.session.rec, format);
    },
  });
  document.body.dataset.state = 'idle';
  const src = params.get('src');
  if (src) {
    const t = params.get('t');
    /** @type {import('./player.js').DeepLink | null} */
    const deepLink = t === null ? null : {
      t: t === 'end' ? 'end' : Math.max(0, Number(t) || 0),
      done: false,
      shown: showSeeked,
    };
    open(app, { url: new URL(src, location.href).href }, src, deepLink);
  }
  startSessionList(openSource);
}

main();
