// The player: writes the recording's frames to the terminal (xterm.js) in time. Its clock is
// tapelog-wasm's PlayClock, the core's clock that `tapelog play` runs too (speed, pause,
// seek; the time passed in from performance.now()); the idle-capped timeline ("skip idle") is
// the decoder's (frames carry both times). Frames come from the recording's cache
// (source.js); a moment not reachable from it is shown by restoring the last checkpoint
// before it and decoding again from there. All the state is in a `Player`.
import { PlayClock } from './pkg/tapelog_wasm.js';
import {
  batchOf, checkpointAtFrame, checkpointAtTime, feed, now, startReplay,
} from './source.js';

/** @typedef {import('./source.js').Recording} Recording */
/** @typedef {import('./source.js').Checkpoint} Checkpoint */
/** @typedef {import('./source.js').Metrics} Metrics */
/** @typedef {import('./protocol.js').Times} Times */

/**
 * What the page shows of the player (ui.js).
 * @typedef {object} PlayerView
 * @property {() => void} clock the position or the end changed
 * @property {(state: 'playing' | 'paused' | 'ended') => void} playback
 */

/**
 * A moment to show once the recording reaches it (`?t=SECONDS` or `?t=end`), paused.
 * @typedef {{t: number | 'end', done: boolean, shown: (t: number | 'end') => void}} DeepLink
 */

/**
 * The player's state. `next`: number of the next frame to write (all before it are on the
 * terminal); `last`: times of the last frame written; `seeking`: a seek waiting for frames;
 * `stallAt`: where the clock is held while frames are being decoded again.
 * @typedef {object} Player
 * @property {Terminal} term
 * @property {Recording} rec
 * @property {Metrics} metrics
 * @property {PlayerView} view
 * @property {PlayClock} clock
 * @property {boolean} closed
 * @property {boolean} skipIdle
 * @property {number} next
 * @property {Times | null} last
 * @property {boolean} ended
 * @property {number | null} stallAt
 * @property {{to: number, done: () => void} | null} seeking
 * @property {DeepLink | null} deepLink
 */

/** The clock's time: milliseconds, monotonic. */
const clockNow = () => performance.now();

/**
 * A paused player at the start of `rec`.
 * @param {{term: Terminal, rec: Recording, metrics: Metrics, view: PlayerView, speed: number,
 *   skipIdle: boolean, deepLink: DeepLink | null}} o
 * @returns {Player}
 */
export function createPlayer({ term, rec, metrics, view, speed, skipIdle, deepLink }) {
  return {
    term, rec, metrics, view, clock: new PlayClock(speed, clockNow()), closed: false, skipIdle,
    next: 0, last: null, ended: false, stallAt: null, seeking: null, deepLink,
  };
}

/**
 * Stops the player for good (another recording is opened).
 * @param {Player} p
 */
export function closePlayer(p) {
  p.closed = true;
  p.clock.free();
}

/** @param {Player} p */
export const playing = (p) => !p.closed && !p.clock.paused;

/**
 * The timeline played: the session's or the idle-capped one.
 * @param {Player} p
 * @returns {'time' | 'idle'}
 */
export const key = (p) => (p.skipIdle ? 'idle' : 'time');

/**
 * End of the decoded timeline (ms).
 * @param {Player} p
 */
export function decodedEnd(p) {
  return p.rec.end[key(p)];
}

/**
 * The position on the active timeline (ms).
 * @param {Player} p
 */
export function position(p) {
  return p.clock.position(clockNow());
}

/**
 * @param {Player} p
 * @param {number} pos
 */
function anchor(p, pos) {
  p.clock.jump(pos, clockNow());
}

/**
 * @param {Player} p
 * @param {Uint8Array} data
 */
function write(p, data) {
  const { metrics } = p;
  if (metrics.firstWriteAt === undefined) metrics.firstWriteAt = now();
  p.term.write(data, () => {
    if (metrics.firstOutputAt === undefined) metrics.firstOutputAt = now();
  });
}

/**
 * Writes every frame at or before `t` (ms on the active timeline) from `p.next` on.
 * Returns true when it got past `t` (or wrote every frame there is), false when it waits for
 * frames that are decoded but not cached (a replay is started or kept fed for them).
 * @param {Player} p
 * @param {number} t
 */
function advance(p, t) {
  const { rec, term } = p;
  const k = key(p);
  for (;;) {
    const B = batchOf(rec, p.next);
    if (!B) {
      const r = rec.replay;
      if (r && r.ended) rec.replay = null;
      // Nothing more decoded yet (or a replay ended there: the damage, or the end).
      if (p.next >= rec.frames || (r && r.ended && r.last <= p.next)) return true;
      if (!r || r.ended) startReplay(rec, checkpointAtFrame(rec, p.next), p.next);
      return false;
    }
    const times = B[k];
    let f = p.next - B.first;
    let a = f === 0 ? 0 : B.end[f - 1];
    let b = a;
    while (f < times.length && times[f] <= t) {
      if (B.cols[f] > 0) {
        if (b > a) write(p, B.data.subarray(a, b));
        const c = B.cols[f], r = B.rows[f];
        term.write(new Uint8Array(0), () => term.resize(c, r)); // in order with the output
        a = b = B.end[f];
      } else {
        b = B.end[f];
      }
      f++;
    }
    if (b > a) write(p, B.data.subarray(a, b));
    if (f > p.next - B.first) p.last = { time: B.time[f - 1], idle: B.idle[f - 1] };
    p.next = B.first + f;
    feed(rec, p.next);
    if (f < times.length) return true;
  }
}

/**
 * Puts the terminal in the state of checkpoint `cp` (frames before `cp.frame` shown).
 * @param {Player} p
 * @param {Checkpoint} cp
 */
function restore(p, cp) {
  const { rec, term } = p;
  term.write('\x1bc');
  const size = cp.snapshot && cp.cols && cp.rows ? { cols: cp.cols, rows: cp.rows } : (rec.initialSize || { cols: 80, rows: 24 });
  term.write(new Uint8Array(0), () => term.resize(size.cols, size.rows));
  if (cp.snapshot) term.write(cp.snapshot);
  p.next = cp.frame;
  p.last = cp.frame > 0 && cp.time !== undefined && cp.idle !== undefined ? { time: cp.time, idle: cp.idle } : null;
  if (!batchOf(rec, cp.frame) && cp.frame < rec.frames) startReplay(rec, cp, cp.frame); // decode again from there
}

/**
 * Shows the terminal as it is at `t` ms; calls `done` once xterm has drawn it.
 * @param {Player} p
 * @param {number} t
 * @param {() => void} [done]
 */
export function seek(p, t, done) {
  t = Math.max(0, t);
  p.metrics.seekStartedAt = now();
  const k = key(p);
  const cp = checkpointAtTime(p.rec, t, k);
  // Forward from what is on the terminal when nothing is skipped that a checkpoint would skip.
  const forward = p.last !== null && p.last[k] <= t && cp.frame <= p.next;
  if (!forward) restore(p, cp);
  p.ended = false;
  p.stallAt = null;
  anchor(p, t);
  p.seeking = { to: t, done: done || (() => {}) };
  resume(p);
  p.view.clock();
}

/**
 * Continues a seek or the playback after frames arrived.
 * @param {Player} p
 */
export function resume(p) {
  if (p.closed || !p.seeking) return;
  const { rec, metrics } = p;
  if (!advance(p, p.seeking.to) && !(rec.done && p.next >= rec.frames)) return;
  const { done } = p.seeking;
  p.seeking = null;
  p.term.write(new Uint8Array(0), () => {
    metrics.seekMs = now() - (metrics.seekStartedAt ?? 0);
    if (!p.closed) p.view.clock();
    done();
  });
  p.view.clock();
}

/**
 * Plays from the position (from the start when at the end).
 * @param {Player} p
 */
export function play(p) {
  if (p.closed || playing(p)) return;
  if (p.rec.done && position(p) >= decodedEnd(p)) seek(p, 0);
  p.clock.play(clockNow());
  p.view.playback('playing');
  // The frames due now are written at once (not at the next animation frame): the first
  // output of a recording shows as soon as its first batch arrives.
  tick(p);
}

/** @param {Player} p */
export function pause(p) {
  if (!playing(p)) return;
  p.clock.pause(clockNow());
  p.view.playback(p.ended ? 'ended' : 'paused');
}

/**
 * Plays at `speed` from now on.
 * @param {Player} p
 * @param {number} speed
 */
export function setSpeed(p, speed) {
  p.clock.setSpeed(speed, clockNow());
}

/**
 * Switches between the session's timeline and the idle-capped one, keeping the same frame on
 * screen: the position becomes that frame's time on the other timeline.
 * @param {Player} p
 * @param {boolean} skipIdle
 */
export function setSkipIdle(p, skipIdle) {
  p.skipIdle = skipIdle;
  const at = p.last ? p.last[key(p)] : 0;
  anchor(p, at);
  if (p.seeking) p.seeking.to = at;
  p.view.clock();
}

/** @param {Player} p */
function tick(p) {
  if (!playing(p)) return;
  let t = position(p);
  if (p.seeking) { requestAnimationFrame(() => tick(p)); return; } // a seek is waiting for frames
  if (!advance(p, t)) {
    // Waiting for frames from a replay: hold the clock where the output stops.
    t = p.stallAt ??= t;
    anchor(p, t);
  } else {
    p.stallAt = null;
  }
  p.view.clock();
  if (p.rec.done && t >= decodedEnd(p) && p.next >= p.rec.frames) {
    p.ended = true;
    anchor(p, decodedEnd(p));
    pause(p);
    return;
  }
  requestAnimationFrame(() => tick(p));
}

/**
 * After frames of the load pass arrived: starts showing output at once from the recording's
 * first frame (unless a deep link asks for a moment), else continues a seek or the playback.
 * @param {Player} p
 * @param {number} first the number of the batch's first frame
 * @param {number} n frames in the batch
 */
export function framesArrived(p, first, n) {
  if (p.deepLink === null && !playing(p) && first === 0 && n > 0) {
    // Playback starts at the first output, not at the session's start: the lead-in before it
    // (a few ms, or seconds before anything was printed) is not waited out, so the first
    // output shows as soon as it is decoded (docs/browser.md). Resizes before it are applied
    // in the same step.
    const B = batchOf(p.rec, 0);
    if (B) {
      const out = B.cols.findIndex((c) => c === 0);
      anchor(p, B[key(p)][out < 0 ? 0 : out]);
    }
    play(p);
  } else if (playing(p) || p.seeking) resume(p);
  maybeDeepLink(p);
}

/**
 * After the load pass ended.
 * @param {Player} p
 */
export function loaded(p) {
  if (playing(p) || p.seeking) resume(p);
  maybeDeepLink(p);
}

/**
 * Shows the deep link's moment once it is decoded.
 * @param {Player} p
 */
function maybeDeepLink(p) {
  const dl = p.deepLink;
  const { rec } = p;
  if (!dl || dl.done) return;
  const reached = dl.t === 'end' ? rec.done : rec.done || decodedEnd(p) >= dl.t * 1000;
  if (!reached) return;
  dl.done = true;
  pause(p);
  const t = dl.t === 'end' ? decodedEnd(p) : dl.t * 1000;
  seek(p, t, () => dl.shown(dl.t));
}

/**
 * The terminal's visible text (also in the DOM: xterm's DOM renderer, `.xterm-rows`).
 * @param {Terminal} term
 */
export function screenText(term) {
  const buf = term.buffer.active;
  const lines = [];
  for (let i = 0; i < term.rows; i++) lines.push(buf.getLine(buf.viewportY + i)?.translateToString(true) ?? '');
  return lines.join('\n');
}
