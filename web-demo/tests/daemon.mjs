// The web player as `tapelog serve` serves it at `/`: the real binary serves web-demo/dist
// over a temporary data directory, a session of a real command is recorded through it with
// `tapelog record --server`, then in headless Chromium: the login URL serve prints
// (`URL/#token=…`) opens the page logged in (the fragment leaves the address bar, the
// sessions are listed without typing a token) and a session plays; and by the token form, the
// page lists the server's sessions (after a wrong token is refused), plays the one clicked,
// and its terminal shows the output. Prints `N passed, N failed` last.
//
// usage: node tests/daemon.mjs TAPELOG_BIN DIST SHOTS
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { CHROMIUM } from './serve.mjs';

const [bin, dist, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const data = mkdtempSync(join(tmpdir(), 'tapelog-daemon-'));
const results = [];

function assert(cond, msg) { if (!cond) throw new Error(msg); }

/**
 * Starts `tapelog serve`; resolves to `{ child, url, login }` once it has printed
 * `listening on URL` and `web player: LOGIN_URL`.
 */
function startServe() {
  const child = spawn(bin, ['serve', '--data-dir', data, '--listen', '127.0.0.1:0', '--web-dir', dist,
    '--completer-interval', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tapelog serve printed no address in 60 s')), 60000);
    const lines = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      if (lines.length !== 2) return;
      clearTimeout(timer);
      const [first, second] = lines;
      if (!first.startsWith('listening on ')) reject(new Error(`unexpected first line ${first}`));
      else if (!second.startsWith('web player: ')) reject(new Error(`unexpected second line ${second}`));
      else resolve({ child, url: first.slice('listening on '.length).trim(), login: second.slice('web player: '.length).trim() });
    });
    child.once('exit', (code) => reject(new Error(`tapelog serve exited with ${code}`)));
  });
}

const serve = await startServe();
const sid = '3e1f6a52-7d4b-4c1e-9a0b-5f6e7d8c9b0a';
const rec = spawnSync(bin, ['record', '--server', serve.url, '--data-dir', data, '--session-id', sid,
  '--cols', '80', '--rows', '24', '--', 'bash', '-c', 'for i in $(seq 1 50); do echo daemon line $i; done'],
{ stdio: ['ignore', 'ignore', 'pipe'], timeout: 120000 });
const browser = await chromium.launch(CHROMIUM);

const adminToken = readFileSync(join(data, 'admin.token'), 'utf8').trim();

async function test(name, fn) {
  const t = { offOrigin: [], pageErrors: [], tokenInUrl: [] };
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('request', (r) => {
    if (!r.url().startsWith(serve.url)) t.offOrigin.push(r.url());
    // What a request line carries: the URL without its fragment.
    if (r.url().split('#')[0].includes(adminToken)) t.tokenInUrl.push(r.url());
  });
  page.on('pageerror', (e) => t.pageErrors.push(String(e)));
  try {
    await fn(page);
    assert(t.offOrigin.length === 0, `requests off the page's origin: ${t.offOrigin.join(', ')}`);
    assert(t.tokenInUrl.length === 0, `the token sent in a request's URL: ${t.tokenInUrl.length} request(s)`);
    assert(t.pageErrors.length === 0, `page errors: ${t.pageErrors.join('; ')}`);
    results.push(true);
    console.log(`ok   ${name}`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    await page.screenshot({ path: join(shots, `daemon-${name.replace(/[^a-z0-9]+/gi, '-')}.png`) }).catch(() => {});
    await page.close();
  }
}

try {
  await test('the recording went through the server', async () => {
    assert(rec.status === 0, `tapelog record exited ${rec.status}: ${rec.stderr}`);
  });

  await test('the login URL lists the sessions at once, and one plays', async (page) => {
    assert(serve.login === `${serve.url}/#token=${adminToken}`,
      `the login URL is not the address with the admin token in its fragment: ${serve.login.replace(adminToken, 'TOKEN')}`);
    await page.goto(serve.login);
    await page.waitForSelector('#sessions-box:not([hidden])', { timeout: 20000 });
    const button = page.locator(`button.session[data-sid="${sid}"]`);
    await button.waitFor({ timeout: 20000 });
    const where = await page.evaluate(() => ({ href: location.href, hash: location.hash }));
    assert(where.hash === '' && where.href === `${serve.url}/`, `the fragment is still in the address: ${where.href.length} chars, hash ${where.hash.length}`);
    const kept = await page.evaluate(() => sessionStorage.getItem('tapelog-token'));
    assert(kept === adminToken, 'the token is not kept in the tab\'s sessionStorage');
    assert(await page.inputValue('#token') === adminToken, 'the token form does not show the token in use');
    await button.click();
    await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 30000 });
    await page.waitForFunction(
      () => /daemon line 50/.test(document.querySelector('.xterm-rows').innerText.replace(/\u00a0/g, ' ')),
      null, { timeout: 30000 });
    // A reload keeps the tab logged in: the token comes from sessionStorage, not the address.
    await page.reload();
    await page.locator(`button.session[data-sid="${sid}"]`).waitFor({ timeout: 20000 });
  });

  await test('sessions listed after a token, and one plays', async (page) => {
    await page.goto(`${serve.url}/`);
    await page.waitForSelector('#sessions-box:not([hidden])', { timeout: 20000 });
    await page.fill('#token', 'not-the-token-at-all-000000000000');
    await page.click('#token-form button[type=submit]');
    await page.waitForFunction(() => /401/.test(document.getElementById('sessions-status').textContent), null, { timeout: 20000 });
    await page.fill('#token', adminToken);
    await page.click('#token-form button[type=submit]');
    const button = page.locator(`button.session[data-sid="${sid}"]`);
    await button.waitFor({ timeout: 20000 });
    await button.click();
    await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 30000 });
    await page.waitForFunction(
      () => /daemon line 50/.test(document.querySelector('.xterm-rows').innerText.replace(/\u00a0/g, ' ')),
      null, { timeout: 30000 });
  });
} finally {
  await browser.close();
  serve.child.kill('SIGTERM');
  rmSync(data, { recursive: true, force: true });
}

const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(results.every(Boolean) ? 0 : 1);
