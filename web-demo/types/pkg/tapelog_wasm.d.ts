// dist/pkg/tapelog_wasm.js is made by wasm-bindgen (build.sh), with its declarations beside it
// (dist/pkg/tapelog_wasm.d.ts): build.sh runs before the type check.
export * from '../../dist/pkg/tapelog_wasm.js';
export { default } from '../../dist/pkg/tapelog_wasm.js';
