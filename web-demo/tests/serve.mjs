// A tiny static server on 127.0.0.1 for the browser tests and the benchmark: `/` is
// web-demo/dist, `/fixtures/` the recordings written by `write-web-fixtures`. It serves
// files as streams (a 100 MB recording is never read whole) with the right types (.wasm must
// be application/wasm for streaming compilation).
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { join, normalize, extname } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json',
};

/** Range requests answered with 206, for the tests to check that replays use them. */
export const ranges = { count: 0 };

/** Starts the server; resolves to `{ origin, close() }`. */
export function serve(dist, fixtures) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const [root, rel] = path.startsWith('/fixtures/')
      ? [fixtures, path.slice('/fixtures/'.length)]
      : [dist, path === '/' ? 'index.html' : path.slice(1)];
    const file = normalize(join(root, rel));
    if (!file.startsWith(normalize(root))) { res.writeHead(403).end(); return; }
    let st;
    try { st = statSync(file); } catch { res.writeHead(404).end('not found'); return; }
    if (!st.isFile()) { res.writeHead(404).end('not found'); return; }
    const type = TYPES[extname(file)] || 'application/octet-stream';
    // `Range: bytes=A-` / `bytes=A-B` (the player re-reads a recording from a part boundary);
    // `?norange` makes the server ignore it, as some servers do (the player then skips).
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    const ranged = m && !new URL(req.url, 'http://x').searchParams.has('norange');
    if (ranged) {
      const a = Number(m[1]);
      const b = m[2] === '' ? st.size - 1 : Math.min(Number(m[2]), st.size - 1);
      if (a >= st.size || b < a) {
        res.writeHead(416, { 'content-range': `bytes */${st.size}` }).end();
        return;
      }
      ranges.count++;
      res.writeHead(206, {
        'content-type': type, 'content-length': b - a + 1, 'cache-control': 'no-store',
        'content-range': `bytes ${a}-${b}/${st.size}`, 'accept-ranges': 'bytes',
      });
      createReadStream(file, { start: a, end: b, highWaterMark: 256 * 1024 }).pipe(res);
      return;
    }
    res.writeHead(200, {
      'content-type': type,
      'content-length': st.size,
      'cache-control': 'no-store',
      'accept-ranges': 'bytes',
    });
    createReadStream(file, { highWaterMark: 256 * 1024 }).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ origin: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

/** Chromium as the tests launch it: headless, no sandbox (root), no DNS lookups at all. */
export const CHROMIUM = {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    '--disable-domain-reliability', '--enable-precise-memory-info',
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost'],
};
