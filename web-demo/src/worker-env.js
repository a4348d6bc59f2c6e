// Imported first by worker.js: @xterm/headless 6.0.0 reads `window` (to look for
// requestIdleCallback) when it loads; in a worker the global object is `self`.
/** @type {{window?: unknown}} */ (globalThis).window ??= globalThis;
