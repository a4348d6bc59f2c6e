//! Generates the event types from `proto/events.proto` (compiled with protox: no system protoc)
//! and the event type/code tables from `schema/*.tsv`. See `build/codegen.rs`.

#[path = "build/codegen.rs"]
mod codegen;
#[path = "build/tables.rs"]
mod tables;

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=schema");
    println!("cargo:rerun-if-changed=build");
    let schema =
        codegen::generate("proto", "events.proto").unwrap_or_else(|e| panic!("schema: {e}"));
    std::fs::write(out.join("schema.rs"), schema.code).expect("write schema.rs");
    let tables = tables::generate("schema", &schema.oneof_messages)
        .unwrap_or_else(|e| panic!("tables: {e}"));
    std::fs::write(out.join("tables.rs"), tables).expect("write tables.rs");
}
