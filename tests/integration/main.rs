//! tapelog's integration tests: one test binary, a module per area, so that the whole suite
//! links once. They run the real `tapelog` binary (`CARGO_BIN_EXE_tapelog`, hence a test
//! target of the `tapelog` package: `cargo test -p tapelog --test integration`) and the
//! library crates against real servers on loopback; [`util`] has what they share.
//!
//! One area: `cargo test -p tapelog --test integration -- forward::`.

mod util;

mod asciicast;
mod audit;
mod audit_logger;
mod azure_layout;
mod chaos;
mod cli;
mod client;
mod complete;
mod crash;
mod daemon;
mod failover;
mod forward;
mod forward_configure;
mod forward_protocol;
mod forward_teleport;
mod gcs_layout;
mod parallel_export;
mod parallel_read;
mod pg_audit;
mod play;
mod playback;
mod postgres_server;
mod record;
mod s3_multipart;
mod serve;
mod session_writer;
mod stream;
mod streamers;
mod teleport;
