//! duet: a tiny, fast TCP relay.
//!
//! `duet serve` greets every client and logs each line it sends as `IP:PORT -> MSG` (the
//! format of the Go server duet grew out of), lets clients talk in rooms, and pairs
//! connections into pipes that carry any bytes at full speed. Plain `nc` is a complete client.
//!
//! The shape: [`server::run`] accepts on a listener the caller bound and spawns one task per
//! connection on a smol executor; each enters through one front door (`server/door.rs`)
//! that hands it to exactly one protocol handler (TLS, line mode, pipe mode, HTTP and its
//! WebSockets, magic-wormhole). Lines are read by `server/lines/reader.rs`; log records go
//! to one printer ([`server::printer`]) over a bounded channel; rooms and pipes are
//! registries with short locks and no I/O; bytes in pipes move with `server/relay.rs`. The
//! clients ([`client`]) have their own folder, the send/recv protocol
//! ([`client::transfer`]) among them. What both the server and the clients use stays at the
//! top: the line protocol (`proto.rs`), the socket, the command line. `docs/PROTOCOL.md`
//! describes the wire protocol and `docs/architecture.md` maps every module.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod cli;
pub mod client;
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod lock;
pub(crate) mod proto;
#[doc(hidden)]
pub mod rng;
pub mod server;
pub mod socket;
