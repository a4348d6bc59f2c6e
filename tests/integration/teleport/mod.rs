//! tapelog-teleport against its test double (the Auth API over mutual TLS on loopback): every
//! call, identity files, a server that is not an Auth Service, `google.protobuf.Struct` ↔ JSON;
//! the reading commands (`cli`) and `serve --teleport` (`gateway`) on the double.

mod cli;
mod client;
mod credentials;
mod gateway;
mod proxy;
mod structjson;
