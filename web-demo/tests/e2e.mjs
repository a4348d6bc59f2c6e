// End-to-end tests of the web player in headless Chromium (Playwright): the recordings of
// `write-web-fixtures` (multi-part, padded, replayed, unknown event, damaged, encrypted,
// legacy) loaded by URL, file picker and drag and drop; the terminal text after playing and
// after seeking (deep links, the timeline, the time box); the error view; the event list and
// its filters; the exports. Screenshots go to SHOTS. Prints `N passed, N failed` last.
//
// usage: node tests/e2e.mjs DIST FIXTURES SHOTS
import { readFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { serve, CHROMIUM, ranges } from './serve.mjs';

const [dist, fixtures, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const manifest = JSON.parse(readFileSync(join(fixtures, 'manifest.json'), 'utf8'));
const fx = Object.fromEntries(manifest.fixtures.map((f) => [f.file.replace(/\.\w+$/, ''), f]));

const server = await serve(dist, fixtures);
const browser = await chromium.launch(CHROMIUM);
const results = [];

function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`); }

/** A fresh page; every request must stay on the page's origin. */
async function newPage(t) {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 }, acceptDownloads: true });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(server.origin) && !u.startsWith('blob:') && !u.startsWith('data:')) t.offOrigin.push(u);
  });
  page.on('pageerror', (e) => t.pageErrors.push(String(e)));
  return page;
}

/** The terminal's visible text as the DOM has it (xterm's DOM renderer). */
async function domText(page) {
  return (await page.locator('.xterm-rows').innerText()).replace(/\u00a0/g, ' ');
}

async function test(name, fn) {
  const t = { offOrigin: [], pageErrors: [] };
  let page;
  try {
    page = await newPage(t);
    await fn(page);
    assert(t.offOrigin.length === 0, `requests off the page's origin: ${t.offOrigin.join(', ')}`);
    assert(t.pageErrors.length === 0, `page errors: ${t.pageErrors.join('; ')}`);
    results.push({ name, ok: true });
    console.log(`ok   ${name}`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    if (page) {
      await page.screenshot({ path: join(shots, `${name.replace(/[^a-z0-9]+/gi, '-')}.png`) }).catch(() => {});
      await page.close();
    }
  }
}

const url = (file, t) => `${server.origin}/?src=/fixtures/${file}${t === undefined ? '' : `&t=${t}`}`;

async function openAt(page, file, t) {
  await page.goto(url(file, t));
  await page.waitForSelector(`body[data-seeked="${t}"]`, { timeout: 20_000 });
}

async function summaryField(page, field) {
  return page.locator(`#summary dd[data-field="${field}"]`).innerText();
}

// ---- the recordings, at the end and after seeking ----------------------------------------

for (const name of ['multi-part', 'padded', 'replayed', 'unknown-event', 'legacy']) {
  const f = fx[name];
  await test(`${name}: t=end shows the last output`, async (page) => {
    await openAt(page, f.file, 'end');
    const text = await domText(page);
    assert(text.includes(f.end_line), `screen lacks ${JSON.stringify(f.end_line)}:\n${text}`);
    eq(await page.evaluate(() => document.body.dataset.state), 'ready', 'state');
    eq(await summaryField(page, 'events'), String(f.events), 'events in the summary');
    eq(await summaryField(page, 'user'), 'joe', 'user');
    eq(await summaryField(page, 'server'), 'localhost', 'server');
    assert(await page.locator('#error').isHidden(), 'no error view');
  });
}

for (const name of ['multi-part', 'replayed']) {
  const f = fx[name];
  await test(`${name}: t=${f.seek.t} shows the terminal at that moment`, async (page) => {
    await openAt(page, f.file, f.seek.t);
    const text = await domText(page);
    assert(text.includes(f.seek.line), `screen lacks ${JSON.stringify(f.seek.line)}:\n${text}`);
    assert(!text.includes(f.seek.next), `screen already shows ${JSON.stringify(f.seek.next)}`);
  });
}

await test('idle-gap: skip idle gaps shortens the timeline and keeps the screen', async (page) => {
  await openAt(page, fx['idle-gap'].file, 'end');
  const clock = () => page.locator('#clock').innerText();
  assert((await clock()).endsWith('/ 0:10.2'), `clock before: ${await clock()}`);
  const before = await page.evaluate(() => window.tapelog.screenText());
  await page.check('#skip-idle');
  // The 10 s gap is cut to 1 s (MAX_IDLE_MS in worker.js).
  assert((await clock()).endsWith('/ 0:01.2'), `clock with idle gaps skipped: ${await clock()}`);
  eq(await page.evaluate(() => window.tapelog.screenText()), before, 'screen after the switch');
  await page.fill('#seek-time', '0.5');
  await page.click('#seek');
  // The seek first resets the screen and then replays up to 0.5 s; the DOM renderer draws a
  // frame later than the model. Wait until the drawn screen is the settled one.
  const settled = await page.waitForFunction(() => {
    const text = document.querySelector('.xterm-rows').innerText.replace(/\u00a0/g, ' ');
    return text.includes('line 4:') && !text.includes('line 5:');
  }, null, { timeout: 5000 }).then(() => true, () => false);
  assert(settled, `line 4 is shown before the gap, line 5 is not:\n${await domText(page)}`);
});

await test('unknown-event: listed with its type', async (page) => {
  await openAt(page, fx['unknown-event'].file, 'end');
  await page.waitForSelector('#events tbody tr[data-type="future.event"]');
});

await test('multi-part: playing at 16x ends on the last output', async (page) => {
  const f = fx['multi-part'];
  await page.goto(url(f.file));
  await page.selectOption('#speed', '16');
  await page.waitForSelector('body[data-playback="ended"]', { timeout: 30_000 });
  await page.waitForFunction((line) => document.querySelector('.xterm-rows').innerText.replace(/\u00a0/g, ' ').includes(line), f.end_line, { timeout: 5000 });
});

await test('multi-part: pause stops the output, play resumes it', async (page) => {
  const f = fx['multi-part'];
  await page.goto(url(f.file));
  await page.waitForSelector('body[data-playback="playing"]');
  await page.waitForFunction(() => window.tapelog.player.next > 10);
  await page.click('#play');
  eq(await page.evaluate(() => document.body.dataset.playback), 'paused', 'paused');
  await page.waitForTimeout(200); // output written before the pause is drawn
  const a = await page.evaluate(() => window.tapelog.screenText());
  await page.waitForTimeout(500);
  eq(await page.evaluate(() => window.tapelog.screenText()), a, 'screen while paused');
  await page.click('#play');
  await page.waitForFunction((before) => window.tapelog.screenText() !== before, a, { timeout: 5000 });
});

await test('multi-part: the clock runs at the speed chosen, stops on pause, and seeks', async (page) => {
  const f = fx['multi-part'];
  await openAt(page, f.file, 0); // paused at 0
  await page.selectOption('#speed', '4');
  // Clicks and speed changes inside the page, timed with the clock the player is given.
  const r = await page.evaluate(async () => {
    const p = window.tapelog.player;
    const play = document.getElementById('play');
    const speed = document.getElementById('speed');
    const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
    play.click();
    const t0 = performance.now();
    await sleep(300);
    speed.value = '1';
    speed.dispatchEvent(new Event('change'));
    const t1 = performance.now();
    await sleep(300);
    play.click();
    const t2 = performance.now();
    const at = p.clock.position(performance.now());
    await sleep(200);
    return { fast: t1 - t0, slow: t2 - t1, at, later: p.clock.position(performance.now()), state: document.body.dataset.playback };
  });
  const want = 4 * r.fast + r.slow;
  assert(Math.abs(r.at - want) < 40, `position ${r.at} ms after ${r.fast} ms at 4x and ${r.slow} ms at 1x, want ${want}`);
  eq(r.state, 'paused', 'paused');
  eq(r.later, r.at, 'the position while paused');
  await page.fill('#seek-time', '3');
  await page.evaluate(() => { window.tapelog.metrics.seekMs = undefined; });
  await page.click('#seek');
  await page.waitForFunction(() => window.tapelog.metrics.seekMs !== undefined, null, { timeout: 5000 });
  assert((await page.locator('#clock').innerText()).startsWith('0:03.0 / '), `clock after the seek: ${await page.locator('#clock').innerText()}`);
  eq(await page.evaluate(() => window.tapelog.player.clock.position(performance.now())), 3000, 'position after the seek');
  const text = await page.evaluate(() => window.tapelog.screenText());
  const shown = [...text.matchAll(/line (\d+):/g)].map((m) => Number(m[1]));
  eq(Math.max(...shown), Math.floor((3000 - 100) / 7), 'the last line shown at 3 s'); // print i is at 100 + 7 i ms
});

await test('multi-part: the time box and a click on the timeline seek', async (page) => {
  const f = fx['multi-part'];
  await openAt(page, f.file, 'end');
  await page.fill('#seek-time', String(f.seek.t));
  await page.click('#seek');
  await page.waitForFunction((line) => window.tapelog.screenText().includes(line), f.seek.line, { timeout: 5000 });
  assert(!(await page.evaluate(() => window.tapelog.screenText())).includes(f.seek.next), 'seek went too far');
  // Click at 50% of the timeline: the last line shown is the one printed at half the duration.
  const box = await page.locator('#timeline').boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForTimeout(300);
  const end = await page.evaluate(() => window.tapelog.recording.end.time);
  const text = await domText(page);
  const shown = [...text.matchAll(/line (\d+):/g)].map((m) => Number(m[1]));
  const last = Math.max(...shown);
  const want = Math.floor((end / 2 - 100) / 7); // print i is at 100 + 7 i ms
  assert(Math.abs(last - want) <= 3, `after the click the last line is ${last}, want about ${want}`);
});

await test('damaged: error view, and what came before the damage stays viewable', async (page) => {
  const f = fx.damaged;
  await page.goto(url(f.file, 'end'));
  await page.waitForSelector('body[data-state="error"]', { timeout: 20_000 });
  await page.waitForSelector('body[data-seeked="end"]', { timeout: 20_000 });
  const err = await page.locator('#error').innerText();
  assert(err.includes('damaged'), `error view: ${err}`);
  assert(err.includes(f.error), `error view lacks the decoder's message ${JSON.stringify(f.error)}: ${err}`);
  const text = await domText(page);
  assert(text.includes(f.end_line), `screen lacks ${JSON.stringify(f.end_line)}:\n${text}`);
  eq(await summaryField(page, 'events'), String(f.events), 'events before the damage');
  // Still playable from the start.
  await page.fill('#seek-time', '0.1');
  await page.click('#seek');
  await page.waitForFunction(() => window.tapelog.screenText().includes('line 0:'), null, { timeout: 5000 });
});

await test('encrypted: a clear error', async (page) => {
  await page.goto(url(fx.encrypted.file));
  await page.waitForSelector('body[data-state="error"]', { timeout: 20_000 });
  const err = await page.locator('#error').innerText();
  assert(err.includes('encrypted'), `error view: ${err}`);
  assert(err.includes(fx.encrypted.error), `error view lacks ${fx.encrypted.error}`);
});

await test('a missing URL: a clear error', async (page) => {
  await page.goto(url('no-such-file.tlog'));
  await page.waitForSelector('body[data-state="error"]', { timeout: 20_000 });
  assert((await page.locator('#error').innerText()).includes('HTTP 404'), 'error names the HTTP status');
});

await test('file picker opens a recording', async (page) => {
  const f = fx.padded;
  await page.goto(server.origin);
  await page.setInputFiles('#file', join(fixtures, f.file));
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20_000 });
  await page.selectOption('#speed', '16');
  await page.waitForSelector('body[data-playback="ended"]', { timeout: 20_000 });
  await page.waitForFunction((line) => window.tapelog.screenText().includes(line), f.end_line, { timeout: 5000 });
});

await test('drag and drop opens a recording', async (page) => {
  const f = fx.replayed;
  await page.goto(server.origin);
  await page.evaluate(async (path) => {
    const bytes = await (await fetch(path)).arrayBuffer();
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], 'dropped.tlog'));
    document.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, `/fixtures/${f.file}`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20_000 });
  eq(await page.locator('#source').innerText(), 'dropped.tlog', 'source label');
  eq(await summaryField(page, 'events'), String(f.events), 'events');
});

await test('event list: type filters', async (page) => {
  await openAt(page, fx.padded.file, 'end');
  await page.waitForSelector('#events tbody tr[data-type="print"]');
  await page.uncheck('#filters input[value="print"]');
  await page.waitForFunction(() => !document.querySelector('#events tbody tr[data-type="print"]'));
  const types = await page.locator('#events tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.type));
  eq(types.join(','), 'session.start,resize,session.end', 'rows without prints');
});

await test('exports: JSON lines and asciicast', async (page) => {
  const f = fx.replayed;
  await openAt(page, f.file, 'end');
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  const json = readFileSync(await dl.path(), 'utf8').trim().split('\n');
  eq(json.length, f.events, 'JSON lines');
  eq(JSON.parse(json[0]).event, 'session.start', 'first line');
  const [dl2] = await Promise.all([page.waitForEvent('download'), page.click('#export-cast')]);
  const cast = readFileSync(await dl2.path(), 'utf8').trim().split('\n');
  const header = JSON.parse(cast[0]);
  eq(header.version, 2, 'asciicast version');
  eq(header.width, 80, 'asciicast width');
  assert(cast.slice(1).some((l) => JSON.parse(l)[1] === 'o'), 'output events');
});

// ---- bounded memory: a small cache and checkpoints make a small recording act like a big one

const SMALL = '&cache=16384&spacing=0&batch=64'; // 16 KiB of frames, a checkpoint per part
const screen = (page) => page.evaluate(() => window.tapelog.screenText());

/** The screen at `t` with everything cached (the reference: no checkpoint, no replay). */
async function reference(file, t) {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  try {
    await openAt(page, file, t);
    return await screen(page);
  } finally {
    await page.close();
  }
}

{
  const f = fx['multi-part'];
  const want = await reference(f.file, f.seek.t);
  const wantEarly = await reference(f.file, 0.5);

  await test('small cache: seeking back far (beyond the cache) shows the exact terminal', async (page) => {
    const before = ranges.count;
    await page.goto(`${url(f.file, 'end')}${SMALL}`);
    await page.waitForSelector('body[data-seeked="end"]', { timeout: 20_000 });
    const r = await page.evaluate(() => window.tapelog.retained());
    assert(r.checkpoints > 3, `checkpoints: ${r.checkpoints}`);
    assert(r.cacheMax <= r.cacheLimit, `cache peaked at ${r.cacheMax} > ${r.cacheLimit}`);
    assert((await screen(page)).includes(f.end_line), 'end line');
    for (const [t, expect] of [[f.seek.t, want], [0.5, wantEarly], [f.seek.t, want]]) {
      await page.fill('#seek-time', String(t));
      await page.evaluate(() => { window.tapelog.metrics.seekMs = undefined; });
      await page.click('#seek');
      await page.waitForFunction(() => window.tapelog.metrics.seekMs !== undefined, null, { timeout: 10_000 });
      eq(await screen(page), expect, `screen after seeking back to ${t} s`);
    }
    const m = await page.evaluate(() => window.tapelog.metrics);
    assert(m.replays > 0, 'the seeks decoded again from a checkpoint');
    assert(ranges.count > before, 'the replays used HTTP Range requests');
  });

  await test('small cache: deep link into the middle shows the exact terminal', async (page) => {
    await page.goto(`${url(f.file, f.seek.t)}${SMALL}`);
    await page.waitForSelector(`body[data-seeked="${f.seek.t}"]`, { timeout: 20_000 });
    eq(await screen(page), want, 'screen at the deep link');
    // Playing on from there at 16x reaches the end.
    await page.selectOption('#speed', '16');
    await page.click('#play');
    await page.waitForSelector('body[data-playback="ended"]', { timeout: 30_000 });
    await page.waitForFunction((line) => window.tapelog.screenText().includes(line), f.end_line, { timeout: 5000 });
  });

  await test('small cache, server without Range: replays skip to the offset', async (page) => {
    await page.goto(`${server.origin}/?src=/fixtures/${f.file}%3Fnorange&t=end${SMALL}`);
    await page.waitForSelector('body[data-seeked="end"]', { timeout: 20_000 });
    await page.fill('#seek-time', String(f.seek.t));
    await page.click('#seek');
    await page.waitForFunction((w) => window.tapelog.screenText() === w, want, { timeout: 10_000 });
  });

  await test('small cache, file picker: replays read File slices', async (page) => {
    await page.goto(`${server.origin}/?${SMALL.slice(1)}`);
    await page.setInputFiles('#file', join(fixtures, f.file));
    await page.waitForSelector('body[data-state="ready"]', { timeout: 20_000 });
    await page.evaluate(() => document.body.dataset.playback === 'playing' && document.getElementById('play').click());
    await page.fill('#seek-time', '100');
    await page.click('#seek');
    await page.waitForFunction((line) => window.tapelog.screenText().includes(line), f.end_line, { timeout: 10_000 });
    await page.fill('#seek-time', String(f.seek.t));
    await page.click('#seek');
    await page.waitForFunction((w) => window.tapelog.screenText() === w, want, { timeout: 10_000 });
  });
}

if (existsSync(join(fixtures, 'big.tlog'))) {
  await test('big recording: what the page keeps stays within its bounds', async (page) => {
    const cache = 4 << 20;
    await page.goto(`${server.origin}/?src=/fixtures/big.tlog&t=end&cache=${cache}`);
    await page.waitForSelector('body[data-seeked="end"]', { timeout: 120_000 });
    const r = await page.evaluate(() => window.tapelog.retained());
    const output = Number(await summaryField(page, 'output').then((s) => s.split(' ')[0]));
    assert(output > 2 * cache, `the recording has ${output} bytes of output, want more than twice the cache`);
    eq(r.cacheLimit, cache, 'cache limit');
    assert(r.cacheMax <= r.cacheLimit, `cache peaked at ${r.cacheMax} > ${r.cacheLimit}`);
    assert(r.checkpoints <= 64 && r.snapshotBytes <= 8 << 20, `checkpoints: ${JSON.stringify(r)}`);
    assert(r.events <= 5000 && r.printRows <= 500, `event list: ${JSON.stringify(r)}`);
    // Print i (a 120-byte line starting with i right-aligned in 9 columns) is at 2 i ms.
    for (const t of [10, 0.5]) {
      await page.fill('#seek-time', String(t));
      await page.evaluate(() => { window.tapelog.metrics.seekMs = undefined; });
      await page.click('#seek');
      await page.waitForFunction(() => window.tapelog.metrics.seekMs !== undefined, null, { timeout: 20_000 });
      const text = await screen(page);
      const i = t * 500;
      assert(text.includes(`${String(i).padStart(9)} `), `at ${t} s the screen lacks line ${i}:\n${text}`);
      assert(!text.includes(`${String(i + 1).padStart(9)} `), `at ${t} s the screen shows line ${i + 1}`);
    }
    const after = await page.evaluate(() => window.tapelog.retained());
    assert(after.cacheMax <= after.cacheLimit, `cache peaked at ${after.cacheMax} after seeking`);
  });
}

await browser.close();
await server.close();
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
