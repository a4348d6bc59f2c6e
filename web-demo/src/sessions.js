// Served by `tapelog serve`, the page also lists the server's recent sessions
// (`GET /v1/sessions`, newest first) and plays one on a click: its recording
// (`GET /v1/sessions/SID/recording`) is decoded by the worker as it streams in, like `?src=`.
// The API wants a token with the auditor (or admin) role. `tapelog serve` prints a login URL,
// `URL/#token=TOKEN`: the page takes the token from the fragment (which the browser never
// sends to the server), clears the fragment from the address bar at once, and lists the
// sessions without asking. Otherwise it asks for a token in its form. Either way the token is
// kept in this tab's sessionStorage and sent only to its own origin, as `Authorization: Bearer`.
// Served by any other static server (no `/healthz` answering `ok`), this box stays hidden.
import { $ } from './ui.js';

const KEY = 'tapelog-token';

/** @typedef {(source: import('./protocol.js').Source, label: string) => void} Open */

/** Moves `#token=…` from the address into the tab's storage; other fragment keys stay. */
function takeTokenFromFragment() {
  if (!location.hash.includes('token=')) return;
  const params = new URLSearchParams(location.hash.slice(1));
  const t = (params.get('token') || '').trim();
  params.delete('token');
  const rest = params.toString();
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  if (t) sessionStorage.setItem(KEY, t);
}
const token = () => sessionStorage.getItem(KEY) || '';

/** @param {string} text */
function say(text) { $('sessions-status').textContent = text; }

/** `/healthz` answers `ok` (a gateway adds its cluster on a second line): the page comes from `tapelog serve`. */
async function servedByTapelog() {
  try {
    const r = await fetch('/healthz');
    return r.ok && (await r.text()).split('\n')[0].trim() === 'ok';
  } catch {
    return false;
  }
}

/**
 * @param {{session_start?: string, session_stop?: string}} e
 */
function duration(e) {
  const a = Date.parse(e.session_start ?? ''), b = Date.parse(e.session_stop ?? '');
  if (!(a > 0 && b >= a)) return '';
  const s = Math.round((b - a) / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/**
 * A session of the list (`session.end` events of `GET /v1/sessions`).
 * @typedef {{sid: string, time?: string, user?: string, server_hostname?: string,
 *   server_id?: string, session_start?: string, session_stop?: string}} SessionEnd
 */

/** @param {Open} open */
async function listSessions(open) {
  const t = token();
  $('sessions').replaceChildren();
  if (!t) {
    say('Give a token with the auditor or admin role, or open the login URL that tapelog serve printed (with no tokens configured it carries the admin token of DATA_DIR/admin.token).');
    return;
  }
  say('loading…');
  let resp;
  try {
    resp = await fetch('/v1/sessions?order=desc&limit=50', { headers: { Authorization: `Bearer ${t}` } });
  } catch (e) {
    say(`the server did not answer: ${e instanceof Error ? e.message : e}`);
    return;
  }
  if (!resp.ok) {
    let msg = `HTTP ${resp.status}`;
    try { msg = `${msg}: ${(await resp.json()).error.message}`; } catch { /* not JSON */ }
    say(msg);
    return;
  }
  /** @type {{events: SessionEnd[]}} */
  const page = await resp.json();
  for (const e of page.events) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'session';
    b.dataset.sid = e.sid;
    b.textContent = `${(e.time || '').replace('T', ' ').slice(0, 19)}  ${e.user || '?'}@${e.server_hostname || e.server_id || '?'}  ${duration(e)}`;
    b.title = `session ${e.sid}`;
    b.addEventListener('click', () => {
      open({ url: `/v1/sessions/${encodeURIComponent(e.sid)}/recording`, token: t }, `session ${e.sid}`);
    });
    li.append(b);
    $('sessions').append(li);
  }
  say(page.events.length ? '' : 'no completed sessions yet: record one with `tapelog record --server URL -- bash`');
}

/**
 * Shows the session list when the page comes from `tapelog serve`; `open` plays a session.
 * @param {Open} open
 */
export async function startSessionList(open) {
  takeTokenFromFragment();
  if (!(await servedByTapelog())) return;
  const tokenBox = /** @type {HTMLInputElement} */ ($('token'));
  $('sessions-box').hidden = false;
  tokenBox.value = token();
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, tokenBox.value.trim());
    listSessions(open);
  });
  $('sessions-refresh').addEventListener('click', () => listSessions(open));
  listSessions(open);
}
