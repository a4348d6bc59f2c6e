// What the page (source.js) and the decoding worker (worker.js) share: the shapes of the
// frames and of the messages between them, and the rules both sides count by.

/** The page's terminal keeps this many lines of scrollback; the worker's snapshots keep as many. */
export const SCROLLBACK = 1000;

/**
 * A batch of frames as tapelog-wasm's `PlayerDecoder.poll` makes them: terminal output and
 * resizes with their times, in typed arrays (see wasm/src/player.rs).
 * @typedef {object} Frames
 * @property {Float64Array} time ms on the session timeline
 * @property {Float64Array} idle ms on the idle-capped timeline
 * @property {Float64Array} index the event index of each frame
 * @property {Uint16Array} cols a resize's columns (0 for output)
 * @property {Uint16Array} rows a resize's rows (0 for output)
 * @property {Uint32Array} end output: the end of its bytes in `data`
 * @property {Uint8Array} data the batch's terminal output
 */

/** @typedef {{cols: number, rows: number}} Size */

/**
 * Where a recording comes from: a file (picked or dropped) or a URL (with the token of
 * `tapelog serve`'s session list, sent only to the page's origin).
 * @typedef {{file: File} | {url: string, token?: string}} Source
 */

/** @typedef {{message: string, kind: string | null, offset: number | null}} ErrorInfo */

/**
 * A non-print event as tapelog-wasm gives it (Teleport's JSON field names); the page adds
 * `seekTo`, the times of the first frame at or after it.
 * @typedef {{ei: number, event: string, time?: string, code?: string, user?: string,
 *   size?: string, seekTo?: Times}} EventObject
 */

/** @typedef {{time: number, idle: number}} Times */

/**
 * The session summary (`SessionSummary::to_json_value` in the core).
 * @typedef {object} Summary
 * @property {string} [sid]
 * @property {string} [user]
 * @property {string} [login]
 * @property {string} [server]
 * @property {string} [cluster]
 * @property {string} [start]
 * @property {string} [end]
 * @property {boolean} ended
 * @property {number | null} duration_ms
 * @property {string[]} participants
 * @property {number} events
 * @property {number} output_bytes
 * @property {Record<string, number>} counts events by type
 */

/** @typedef {{total: number, skipped: number, outOfOrder: number, parts: number}} Stats */

/**
 * Page → worker.
 * @typedef {{type: 'open', source: Source, spacing: number, batch: number}
 *   | {type: 'export', source: Source, format: ExportFormat}
 *   | {type: 'replay', gen: number, at: number, from: number, budget: number, batch: number}
 *   | {type: 'more', gen: number, budget: number}
 *   | {type: 'cancel', gen: number}
 *   | {type: 'thin', dropped: number[]}} ToWorker
 */

/** @typedef {'json' | 'asciicast'} ExportFormat */

/**
 * Worker → page.
 * @typedef {{type: 'batch', frames: Frames, first: number, events: EventObject[],
 *     initialSize: Size | null, summary: Summary, bytes: number, firstBytesAt: number | null,
 *     postedAt: number}
 *   | {type: 'checkpoint', frame: number, snapshot: string, cols: number, rows: number}
 *   | {type: 'replay', gen: number, first: number, frames: Frames, startedAt: number}
 *   | {type: 'replay-end', gen: number, error?: ErrorInfo}
 *   | {type: 'done', summary: Summary, stats: Stats, bytes: number, frames: number,
 *       firstBytesAt: number | null, decodeMs: number, headlessMs: number}
 *   | {type: 'error', error: ErrorInfo, summary: Summary, stats: Stats, bytes: number, frames: number}
 *   | {type: 'exported', format: ExportFormat, blob: Blob}
 *   | {type: 'export-error', format: ExportFormat, error: ErrorInfo}} FromWorker
 */

/**
 * What a batch of replayed frames counts against a replay's allowance, on both sides.
 * @param {Frames} f
 */
export const replayCost = (f) => f.data.length + 32 * f.time.length;
