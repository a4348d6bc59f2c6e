// The page loads xterm.js as a classic script (dist/xterm/xterm.js): `Terminal` is a global.
declare const Terminal: typeof import('@xterm/xterm').Terminal;
type Terminal = import('@xterm/xterm').Terminal;
