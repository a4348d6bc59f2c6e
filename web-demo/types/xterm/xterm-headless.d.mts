// dist/xterm/xterm-headless.mjs (copied by build.sh from @xterm/headless) has the package's types.
export { Terminal } from '@xterm/headless';
