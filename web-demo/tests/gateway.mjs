// The web player on `tapelog serve --teleport`, a read-only gateway to a Teleport cluster:
// the Auth double runs as a process (`teleport-double`, tests/src/bin/teleport-double.rs:
// one session with print data), the real `tapelog serve --teleport ADDR --teleport-identity
// FILE` serves web-demo/dist in front of it, and in headless Chromium the login URL lists the
// cluster's session and plays it (the recording the gateway rebuilds from the cluster's typed
// events, decoded by the page's wasm): its terminal shows the session's last line. A write to
// the gateway is refused with `read_only`. Prints `N passed, N failed` last.
//
// usage: node tests/gateway.mjs TAPELOG_BIN TELEPORT_DOUBLE_BIN DIST SHOTS
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { CHROMIUM } from './serve.mjs';

const [bin, doubleBin, dist, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const data = mkdtempSync(join(tmpdir(), 'tapelog-gateway-'));
const results = [];

function assert(cond, msg) { if (!cond) throw new Error(msg); }

/** Starts `cmd args`; resolves to `{ child, lines }` once it has printed `count` lines. */
function start(cmd, args, count, what) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} printed nothing in 60 s`)), 60000);
    const lines = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      if (lines.length !== count) return;
      clearTimeout(timer);
      resolve({ child, lines });
    });
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}`)));
  });
}

const cluster = await start(doubleBin, ['80'], 1, 'teleport-double');
const hello = JSON.parse(cluster.lines[0]);
let serve;
try {
  const s = await start(bin, ['serve', '--data-dir', data, '--listen', '127.0.0.1:0', '--web-dir', dist,
    '--teleport', hello.addr, '--teleport-identity', hello.identity], 2, 'tapelog serve --teleport');
  const [first, second] = s.lines;
  assert(first.startsWith('listening on '), `unexpected first line ${first}`);
  assert(second.startsWith('web player: '), `unexpected second line ${second}`);
  serve = { child: s.child, url: first.slice('listening on '.length).trim(), login: second.slice('web player: '.length).trim() };
} catch (e) {
  cluster.child.kill('SIGTERM');
  throw e;
}
const adminToken = readFileSync(join(data, 'admin.token'), 'utf8').trim();
const browser = await chromium.launch(CHROMIUM);

async function test(name, fn) {
  const t = { offOrigin: [], pageErrors: [] };
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('request', (r) => { if (!r.url().startsWith(serve.url)) t.offOrigin.push(r.url()); });
  page.on('pageerror', (e) => t.pageErrors.push(String(e)));
  try {
    await fn(page);
    assert(t.offOrigin.length === 0, `requests off the page's origin: ${t.offOrigin.join(', ')}`);
    assert(t.pageErrors.length === 0, `page errors: ${t.pageErrors.join('; ')}`);
    results.push(true);
    console.log(`ok   ${name}`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    await page.screenshot({ path: join(shots, `gateway-${name.replace(/[^a-z0-9]+/gi, '-')}.png`) }).catch(() => {});
    await page.close();
  }
}

try {
  await test('the cluster\'s session is listed and plays through the gateway', async (page) => {
    await page.goto(serve.login);
    await page.waitForSelector('#sessions-box:not([hidden])', { timeout: 20000 });
    const button = page.locator(`button.session[data-sid="${hello.session_id}"]`);
    await button.waitFor({ timeout: 20000 });
    await button.click();
    await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 30000 });
    await page.waitForFunction(
      (last) => document.querySelector('.xterm-rows').innerText.replace(/\u00a0/g, ' ').includes(last),
      hello.last_line, { timeout: 30000 });
  });

  await test('a write to the gateway is refused as read-only', async () => {
    const r = await fetch(`${serve.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: '{"event":"user.login","code":"T1000I"}',
    });
    assert(r.status === 405, `POST /v1/events answered ${r.status}`);
    const body = await r.json();
    assert(body.error.code === 'read_only', `error code ${body.error.code}`);
  });
} finally {
  await browser.close();
  serve.child.kill('SIGTERM');
  cluster.child.kill('SIGTERM');
  rmSync(data, { recursive: true, force: true });
}

const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(results.every(Boolean) ? 0 : 1);
