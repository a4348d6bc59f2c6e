// Browser benchmark (headless Chromium), run by web-demo/bench.sh:
// 1. decode throughput of tapelog-wasm in the page (PlayerDecoder over the file in memory,
//    1 MiB chunks, as the worker does: frames, events as objects, summary), best of 3, and its
//    ratios to the native decodes of the same file measured by bench.sh just before: typed
//    events (NATIVE_MB_S) and the page's path run natively (PLAYER_MB_S); the goal's ratio is
//    to the faster of the two;
// 2. the player opening the file by URL (?src=): time from the first bytes arriving in the
//    worker to the first output drawn by xterm (five openings, median; then once more with
//    the rest), streaming decode time, and the JS heap.
//
// usage: node tests/bench.mjs DIST FIXTURES FILE NATIVE_MB_S [PLAYER_MB_S]
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { serve, CHROMIUM } from './serve.mjs';
import { decodePage } from './page-decode.mjs';

const [dist, fixtures, file, nativeArg, playerArg] = process.argv.slice(2);
const native = Number(nativeArg);
const nativePlayer = Number(playerArg ?? 0);
const size = statSync(join(fixtures, file)).size;
const server = await serve(dist, fixtures);
const browser = await chromium.launch(CHROMIUM);
const fig = (k, v) => console.log(`${k}=${v}`);
fig('file_mb', (size / 1e6).toFixed(1));
fig('chromium', browser.version());

// 1. In-memory decode throughput.
{
  const { page, mb, run } = await decodePage(browser, server.origin, file);
  const t = await run(3);
  const r = { ms: t.best, events: t.events, output: t.output, mb };
  const mbs = r.mb / (r.ms / 1000);
  fig('wasm_decode_events', r.events);
  fig('wasm_decode_output_mb', (r.output / 1e6).toFixed(1));
  fig('wasm_decode_seconds', (r.ms / 1000).toFixed(3));
  fig('wasm_decode_mb_s', mbs.toFixed(1));
  if (native > 0) fig('wasm_to_native_typed_ratio', (mbs / native).toFixed(2));
  if (nativePlayer > 0) fig('wasm_to_native_player_ratio', (mbs / nativePlayer).toFixed(2));
  const fastest = Math.max(native || 0, nativePlayer || 0);
  if (fastest > 0) fig('wasm_to_native_ratio', (mbs / fastest).toFixed(2));
  await page.close();
}

// 1b. Events into JavaScript objects: one JSON text parsed by JSON.parse (the shipped way)
//     against serde-wasm-bindgen, on the same decoded events (SerdeBench: build feature
//     serde-bench), best of 5 each, interleaved; both must give equal objects.
if (process.env.SERDE_BENCH !== '0') {
  const page = await browser.newPage();
  await page.goto(server.origin);
  const r = await page.evaluate(async (path) => {
    const wasm = await import('./pkg/tapelog_wasm.js');
    await wasm.default();
    if (!wasm.SerdeBench) return { missing: true };
    const bytes = new Uint8Array(await (await fetch(path)).arrayBuffer());
    const bench = new wasm.SerdeBench(bytes);
    const strip = (o) => { const c = { ...o }; delete c.data; return JSON.stringify(c); };
    const a = bench.viaJson(), b = bench.viaSerde();
    let same = a.length === b.length;
    for (let i = 0; same && i < a.length; i += Math.max(1, Math.floor(a.length / 2000))) {
      same = strip(a[i]) === strip(b[i]) && (a[i].data?.length ?? -1) === (b[i].data?.length ?? -1);
    }
    let json = Infinity, serde = Infinity;
    for (let run = 0; run < 5; run++) {
      let t0 = performance.now(); bench.viaJson(); json = Math.min(json, performance.now() - t0);
      t0 = performance.now(); bench.viaSerde(); serde = Math.min(serde, performance.now() - t0);
    }
    const count = bench.count;
    bench.free();
    return { count, json, serde, same };
  }, `/fixtures/${file}`);
  if (r.missing) {
    fig('serde_bench', 'not built (WASM_FEATURES=serde-bench)');
  } else {
    fig('objects_events', r.count);
    fig('objects_json_parse_ms', r.json.toFixed(1));
    fig('objects_serde_wasm_bindgen_ms', r.serde.toFixed(1));
    fig('objects_serde_to_json_ratio', (r.serde / r.json).toFixed(2));
    fig('objects_equal', r.same);
  }
  await page.close();
}

// 2a. First output, five times (one opening is too noisy on a shared machine): each a fresh
//     page opening the file by URL, closed once xterm has drawn the first output.
{
  //     Each opening is also cut into its steps (the median of each is printed): the worker
  //     decoding and posting the first batch, the message reaching the page, the page's
  //     handler up to the first write into xterm, and xterm parsing it (the write callback).
  const runs = [];
  /** @type {Record<string, number[]>} */
  const steps = { open_to_bytes: [], decode_post: [], message: [], page_to_write: [], xterm_write: [] };
  for (let i = 0; i < 5; i++) {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    await page.goto(`${server.origin}/?src=/fixtures/${file}`);
    await page.waitForFunction(() => window.tapelog?.metrics.firstOutputAt !== undefined, null, { timeout: 60_000 });
    const m = await page.evaluate(() => ({ ...window.tapelog.metrics }));
    runs.push(m.firstOutputAt - m.firstBytesAt);
    steps.open_to_bytes.push(m.firstBytesAt - m.openedAt);
    steps.decode_post.push(m.firstPostedAt - m.firstBytesAt);
    steps.message.push(m.firstBatchAt - m.firstPostedAt);
    steps.page_to_write.push(m.firstWriteAt - m.firstBatchAt);
    steps.xterm_write.push(m.firstOutputAt - m.firstWriteAt);
    await page.close();
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  fig('first_output_runs_ms', runs.map((x) => x.toFixed(0)).join(','));
  fig('first_output_median_ms', median(runs).toFixed(0));
  for (const [k, xs] of Object.entries(steps)) {
    fig(`first_output_step_${k}_ms`, `${median(xs).toFixed(1)} (${xs.map((x) => x.toFixed(1)).join(',')})`);
  }
}

// 2. The player, streaming from the server.
{
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const t0 = Date.now();
  await page.goto(`${server.origin}/?src=/fixtures/${file}`);
  await page.waitForFunction(() => window.tapelog?.metrics.firstOutputAt !== undefined, null, { timeout: 60_000 });
  await page.waitForSelector('body[data-state="ready"]', { timeout: 600_000 });
  await page.evaluate(() => document.body.dataset.playback === 'playing' && document.getElementById('play').click());
  const m = await page.evaluate(() => window.tapelog.metrics);
  fig('first_output_ms', (m.firstOutputAt - m.firstBytesAt).toFixed(0));
  fig('stream_decode_seconds', (m.decodeMs / 1000).toFixed(2));
  fig('stream_decode_mb_s', (m.bytes / 1e6 / (m.decodeMs / 1000)).toFixed(1));
  fig('page_load_to_done_seconds', ((Date.now() - t0) / 1000).toFixed(2));
  // Let the collector settle, then read what the page keeps.
  await page.waitForTimeout(1000);
  const heap = await page.evaluate(() => ({
    used: performance.memory.usedJSHeapSize, total: performance.memory.totalJSHeapSize,
    kept: window.tapelog.retained(),
  }));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('HeapProfiler.collectGarbage').catch(() => {});
  const after = await page.evaluate(() => performance.memory.usedJSHeapSize);
  fig('js_heap_used_mb', (heap.used / 1e6).toFixed(1));
  fig('js_heap_used_after_gc_mb', (after / 1e6).toFixed(1));
  fig('js_heap_total_mb', (heap.total / 1e6).toFixed(1));
  fig('cache_kept_mb', (heap.kept.cacheBytes / 1e6).toFixed(1));
  fig('cache_limit_mb', (heap.kept.cacheLimit / 1e6).toFixed(1));
  fig('checkpoints', heap.kept.checkpoints);
  fig('snapshots_mb', (heap.kept.snapshotBytes / 1e6).toFixed(1));
  fig('headless_seconds', (m.headlessMs / 1000).toFixed(2));
  // Seeks: to the middle, back to the start, to the end, measured from the click to xterm
  // having drawn the moment (metrics.seekMs).
  const end = await page.evaluate(() => window.tapelog.recording.end.time);
  for (const [name, t] of [['middle', end / 2], ['start', 100], ['end', end], ['middle_again', end / 2]]) {
    await page.evaluate(() => { window.tapelog.metrics.seekMs = undefined; });
    await page.fill('#seek-time', String(t / 1000));
    await page.click('#seek');
    await page.waitForFunction(() => window.tapelog.metrics.seekMs !== undefined, null, { timeout: 120_000 });
    fig(`seek_${name}_ms`, (await page.evaluate(() => window.tapelog.metrics.seekMs)).toFixed(0));
  }
  const { metrics } = await cdp.send('Performance.getMetrics').catch(() => ({ metrics: [] }));
  const cdpHeap = metrics.find((x) => x.name === 'JSHeapUsedSize');
  if (cdpHeap) fig('cdp_js_heap_used_mb', (cdpHeap.value / 1e6).toFixed(1));
  await page.close();
}

await browser.close();
await server.close();
