// dist/xterm/addon-serialize.mjs (copied by build.sh from @xterm/addon-serialize) has the package's types.
export { SerializeAddon } from '@xterm/addon-serialize';
