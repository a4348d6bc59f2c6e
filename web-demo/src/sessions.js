// Served by `tapelog serve`, the page also lists the server's recent sessions
// (`GET /v1/sessions`, newest first) and plays one on a click: its recording
// (`GET /v1/sessions/SID/recording`) is decoded by the worker as it streams in, like `?src=`.
// The API wants a token with the auditor (or admin) role: the page asks for it once, keeps it
// in this tab's sessionStorage, and sends it only to its own origin, as `Authorization: Bearer`.
// Served by any other static server (no `/healthz` answering `ok`), this box stays hidden.
const $ = (id) => document.getElementById(id);
const KEY = 'tapelog-token';

const token = () => sessionStorage.getItem(KEY) || '';

function say(text) { $('sessions-status').textContent = text; }

/** `/healthz` answers `ok`: the page comes from `tapelog serve`. */
async function servedByTapelog() {
  try {
    const r = await fetch('/healthz');
    return r.ok && (await r.text()).trim() === 'ok';
  } catch {
    return false;
  }
}

function duration(e) {
  const a = Date.parse(e.session_start), b = Date.parse(e.session_stop);
  if (!(a > 0 && b >= a)) return '';
  const s = Math.round((b - a) / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

async function listSessions() {
  const t = token();
  $('sessions').replaceChildren();
  if (!t) {
    say('Give a token with the auditor or admin role (with no tokens configured, tapelog serve keeps an admin token in DATA_DIR/admin.token).');
    return;
  }
  say('loading…');
  let resp;
  try {
    resp = await fetch('/v1/sessions?order=desc&limit=50', { headers: { Authorization: `Bearer ${t}` } });
  } catch (e) {
    say(`the server did not answer: ${e.message}`);
    return;
  }
  if (!resp.ok) {
    let msg = `HTTP ${resp.status}`;
    try { msg = `${msg}: ${(await resp.json()).error.message}`; } catch { /* not JSON */ }
    say(msg);
    return;
  }
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
      window.tapelog.open({ url: `/v1/sessions/${encodeURIComponent(e.sid)}/recording`, token: t }, `session ${e.sid}`);
    });
    li.append(b);
    $('sessions').append(li);
  }
  say(page.events.length ? '' : 'no completed sessions yet: record one with `tapelog record --server URL -- bash`');
}

if (await servedByTapelog()) {
  $('sessions-box').hidden = false;
  $('token').value = token();
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $('token').value.trim());
    listSessions();
  });
  $('sessions-refresh').addEventListener('click', listSessions);
  listSessions();
}
