//! Compiles the Teleport protocol subset in `proto/` with protox (no system protoc) and
//! generates prost messages, tonic clients and tonic servers (servers only with feature
//! `testkit`, for the test double).

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "teleport/auditlog/v1/auditlog.proto",
        "teleport/legacy/client/proto/authservice.proto",
    ];
    let fds = protox::compile(files, ["proto"]).unwrap_or_else(|e| panic!("protos: {e}"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Servers exist for the test double only.
        .server_mod_attribute(".", r#"#[cfg(feature = "testkit")]"#)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("codegen: {e}"));
}
