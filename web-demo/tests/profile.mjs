// Where the wasm decode spends its time: the page's decode path (PlayerDecoder over a file in
// memory, 1 MiB chunks, poll(4096), as bench.mjs section 1) in headless Chromium, timed
// (best of 3), then run once more under V8's sampling profiler (CDP Profiler, 100 µs).
// Prints the decode's MB/s and the share of the samples (self time) of each kind of work
// (inflate, CRC, reader, player, JS glue) and of the top functions, largest first. The
// native side of the comparison is `perf record` on the native_decode bench
// (docs/benchmarks.md, wasm section).
//
// usage: node tests/profile.mjs DIST FIXTURES FILE [TOP]
// DIST is a web-demo/dist built by build.sh (release); function names come from the wasm's
// name section, which wasm-bindgen keeps.
import { chromium } from 'playwright-core';
import { serve, CHROMIUM } from './serve.mjs';
import { decodePage } from './page-decode.mjs';

const [dist, fixtures, file, topArg] = process.argv.slice(2);
if (!dist || !fixtures || !file) {
  console.error('usage: node tests/profile.mjs DIST FIXTURES FILE [TOP]');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const server = await serve(dist, fixtures);
const browser = await chromium.launch(CHROMIUM);
const { page, mb, run } = await decodePage(browser, server.origin, file);
const timed = await run(3);
console.log(`chromium=${browser.version()}`);
console.log(`events=${timed.events} file_mb=${mb.toFixed(1)} best_of_3_s=${(timed.best / 1000).toFixed(3)} mb_s=${(mb / (timed.best / 1000)).toFixed(1)}`);

const session = await page.context().newCDPSession(page);
await session.send('Profiler.enable');
await session.send('Profiler.setSamplingInterval', { interval: 100 });
await session.send('Profiler.start');
await page.evaluate(() => globalThis.decodeOnce());
const { profile } = await session.send('Profiler.stop');
await browser.close();
server.close();

// Self samples per function name.
const hits = new Map();
for (const n of profile.nodes) {
  const name = n.callFrame.functionName || `(${n.callFrame.url || 'anonymous'})`;
  hits.set(name, (hits.get(name) ?? 0) + (n.hitCount ?? 0));
}
const total = [...hits.values()].reduce((a, b) => a + b, 0);
const groups = [
  ['crc32', /crc/i],
  ['inflate', /inflate|zlib_rs|adler|window|copy_match|InflateStream|Writer|bitreader/i],
  ['UTF-8 checks', /from_utf8/],
  ['player (batcher, frames, summary)', /tapelog_wasm|player|Batcher|frames|timeline|summary/i],
  ['reader (framing, proto)', /codec|reader|proto|varint|header|framed|print|decode|event/i],
  ['memory (memcpy, alloc)', /memcpy|memmove|memset|alloc|dlmalloc|realloc|RawVec|grow/i],
  ['idle, GC, program', /^\((idle|garbage collector|program|root)\)$/],
];
const byGroup = new Map();
const groupOf = (name) => groups.find(([, re]) => re.test(name))?.[0] ?? 'other (JS, glue)';
for (const [name, n] of hits) {
  const g = groupOf(name);
  byGroup.set(g, (byGroup.get(g) ?? 0) + n);
}
console.log(`samples=${total}`);
console.log('by group:');
for (const [g, n] of [...byGroup].sort((a, b) => b[1] - a[1])) {
  console.log(`  ${(100 * n / total).toFixed(1).padStart(5)}%  ${g}`);
}
console.log(`top ${top} functions (self):`);
for (const [name, n] of [...hits].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`  ${(100 * n / total).toFixed(1).padStart(5)}%  ${name.slice(0, 120)}  [${groupOf(name)}]`);
}
