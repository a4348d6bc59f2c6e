//! tapelog-teleport against its test double (the Auth API over mutual TLS on loopback): every
//! call, identity files, a server that is not an Auth Service, `google.protobuf.Struct` ↔ JSON.

mod client;
mod credentials;
mod proxy;
mod structjson;
