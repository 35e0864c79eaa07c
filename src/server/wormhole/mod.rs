//! magic-wormhole on duet's port: the mailbox server (`/v1` over WebSocket) and the transit
//! relay (TCP, and WebSocket at `/`), compatible with the reference servers and every
//! wormhole client.
//!
//! The state the hub keeps (nameplates, mailboxes, their messages and limits, the journal of
//! `--wormhole-state`) is in [`state`], which does no I/O but its file; the handlers that
//! speak to clients sit beside it and reach it through the hub, so the hub never imports a
//! handler: `mailbox` (the `/v1` protocol), `transit` (the relay's handshake and pairing,
//! for TCP and, through `transit_ws`, WebSocket ends), `transits` (the ends waiting for
//! their partner) and `handover` (a wormhole client another cluster node took in).

pub(crate) mod handover;
pub(crate) mod mailbox;
pub(crate) mod state;
pub(crate) mod transit;
pub(crate) mod transit_ws;
pub(crate) mod transits;
