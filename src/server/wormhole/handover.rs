//! Clients another node serves: with `--cluster`, magic-wormhole's mailbox server and
//! transit relay live on one node (the wormhole node, chosen through Redis), so a wormhole
//! client that lands elsewhere is handed to it over a link (`/link-client`, see
//! `cluster/link.rs`) and its bytes relayed both ways. The wormhole node serves it as its
//! own client, under the client's address (its rate limits, its log lines).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::server::cluster::{link, Contact};
use crate::server::hub::Hub;
use crate::server::notice::refuse;
use crate::server::pipe;
use crate::server::printer::{Mood, Record};
use crate::server::relay::{self, Side};
use crate::server::slots::Ticket;
use crate::socket::Socket;

/// Hands client `peer` (whose first bytes are `first`) to the node at `node`, then relays
/// until either side is done.
pub async fn send(
    hub: &Arc<Hub>,
    stream: Socket,
    peer: SocketAddr,
    first: Vec<u8>,
    ticket: Ticket,
    node: Contact,
) {
    let cluster = hub
        .cluster
        .as_deref()
        .expect("clients are handed over only with --cluster");
    let outgoing = match hub.slots.take_outgoing() {
        Ok(outgoing) => outgoing,
        Err(refusal) => return refuse(&hub.log, &stream, peer, refusal.to_string()).await,
    };
    let link = match link::hand_over(&cluster.key, &node, peer, &first).await {
        Ok(link) => link,
        Err(link::LinkRefused(error)) => return refuse(&hub.log, &stream, peer, error).await,
    };
    let message = format!("client {peer} handed to the wormhole node {}", node.address);
    hub.log.send(Record::Server { message }).await;
    let socket = link.socket.clone();
    link.carry(relay(hub, stream, socket)).await;
    drop((ticket, outgoing));
}

/// Relays between the client and its link until either side is done.
async fn relay(hub: &Hub, stream: Socket, link: Socket) {
    for socket in [&stream, &link] {
        // As for pipes: should this node die now, both get a reset, not a clean end.
        socket.get_ref().arm_reset();
    }
    let counts = relay::Counts::default();
    let (_, mood) = pipe::run(
        hub,
        (Side::plain(&stream, &[]), Side::plain(&link, &[])),
        &counts,
    )
    .await;
    for socket in [&stream, &link] {
        match mood {
            Mood::Happy => socket.get_ref().clear_reset(),
            _ => socket.reset_on_close(),
        }
    }
}
