// The page's decode path measured by bench.mjs (section 1) and profile.mjs: a page of DIST
// loads tapelog-wasm and the recording into memory, and `decodeOnce()` runs PlayerDecoder
// over it as the worker does (1 MiB pushes, poll(4096) until the end).

/**
 * Opens a page of the static server at `origin` that can decode `/fixtures/<file>`.
 * Resolves to `{ page, mb, run(times) }`: `run` decodes `times` times and resolves to
 * `{ best, events, output }` (best wall time in ms, events pulled, output bytes).
 */
export async function decodePage(browser, origin, file) {
  const page = await browser.newPage();
  await page.goto(origin);
  const mb = await page.evaluate(async (path) => {
    const wasm = await import('./pkg/tapelog_wasm.js');
    await wasm.default();
    const bytes = new Uint8Array(await (await fetch(path)).arrayBuffer());
    globalThis.decodeOnce = () => {
      const d = new wasm.PlayerDecoder(1000);
      let events = 0, output = 0;
      for (let at = 0; ; at += 1 << 20) {
        if (at < bytes.length) d.push(bytes.subarray(at, at + (1 << 20))); else d.finish();
        for (;;) {
          const b = d.poll(4096);
          if (b.pulled === 0) break;
          events += b.pulled;
          output += b.frames.data.length;
        }
        if (at >= bytes.length) break;
      }
      d.free();
      return { events, output };
    };
    return bytes.length / 1e6;
  }, `/fixtures/${file}`);
  const run = (times) => page.evaluate((n) => {
    let best = Infinity, r = { events: 0, output: 0 };
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      r = globalThis.decodeOnce();
      best = Math.min(best, performance.now() - t0);
    }
    return { best, ...r };
  }, times);
  return { page, mb, run };
}
