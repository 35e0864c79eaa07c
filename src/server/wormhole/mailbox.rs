//! `/v1`: the magic-wormhole mailbox server protocol over WebSocket, so that every wormhole
//! client (`wormhole --relay-url ws://HOST:PORT/v1`) can use duet as its rendezvous server.
//!
//! Each text message is one JSON command (parsed by `serde_json`); every command is
//! acknowledged (`ack` with its `id`), then answered as the reference server
//! (magic-wormhole-mailbox-server) answers it: `welcome` on connect, then `bind`, `list`,
//! `allocate`, `claim`, `release`, `open`, `add`, `close`, `ping`, with `error` (and the
//! command as `orig`) for what is refused. The state lives in [`crate::server::wormhole::state`];
//! this is one connection's side of it: one function per command.

use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::tungstenite::Message as WsMessage;
use futures_lite::{future, StreamExt};
use serde_json::{json, Map, Value};
use smol::Timer;

use crate::server::http::answer::Answered;
use crate::server::hub::Hub;
use crate::server::printer::{Mood, Record};
use crate::server::websocket::{close, violation, Heard, Ws};
use crate::server::wormhole::state::{self, Listener, Message};

/// A command refused: the `error` text.
struct CommandError(String);

impl<T: std::fmt::Display> From<T> for CommandError {
    fn from(why: T) -> CommandError {
        CommandError(why.to_string())
    }
}

/// One connection's part of the protocol.
struct Conn<'a> {
    hub: &'a Arc<Hub>,
    peer: SocketAddr,
    app: Option<String>,
    side: Option<String>,
    did_allocate: bool,
    nameplate: Option<String>,
    did_claim: bool,
    did_release: bool,
    mailbox: Option<String>,
    listening: bool,
    did_close: bool,
    id: u64,
    /// Where this connection hears its mailbox, once it has opened one.
    heard: Option<state::Hear>,
    /// Replies to send, in order.
    out: Vec<Value>,
}

/// Serves a mailbox connection until it closes.
pub async fn serve(hub: &Arc<Hub>, ws: Ws, peer: SocketAddr) -> Answered {
    let (mut to_client, mut from_client) = ws.split();
    let mut conn = Conn::new(hub, peer);
    conn.welcome();
    let heard = Heard::new(hub.config.web.ws_ping);
    let mut ticks = Timer::interval(heard.every);
    let mut note = "closed".to_string();
    loop {
        if !flush(&mut to_client, &mut conn.out).await {
            note = "the client went away".into();
            break;
        }
        let event = next_event(&mut from_client, conn.heard.as_ref(), &mut ticks).await;
        match event {
            Event::Command(text) => {
                heard.now();
                conn.command(&text).await;
                // Its own `add`s come back through its listener: take them now, so that a
                // client adding fast is never mistaken for one that does not read.
                conn.take_heard();
            }
            Event::Heard(message) => conn.deliver(&message),
            Event::Deaf => {
                note = "did not read its mailbox's messages".into();
                break;
            }
            Event::Tick if heard.gone() => {
                close(&mut to_client, 1001, "no answer to pings").await;
                note = "no answer to pings".into();
                break;
            }
            Event::Tick => {
                to_client
                    .send(WsMessage::Ping(Vec::new().into()))
                    .await
                    .ok();
            }
            Event::Binary => {
                heard.now();
                conn.out
                    .push(json!({"type": "error", "error": "send text messages"}));
            }
            Event::Other => heard.now(),
            Event::End => break,
            Event::Broke((code, why)) => {
                close(&mut to_client, code, &why).await;
                note = why;
                break;
            }
        }
    }
    conn.leave();
    Answered::ws(note, Mood::Happy)
}

/// Sends the replies waiting in `out`, each stamped with `server_tx`; false when the
/// client is gone.
async fn flush(
    to_client: &mut async_tungstenite::WebSocketSender<crate::socket::Socket>,
    out: &mut Vec<Value>,
) -> bool {
    for mut reply in out.drain(..) {
        reply["server_tx"] = json!(state::now());
        if to_client
            .send(WsMessage::text(reply.to_string()))
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// What woke the connection up.
enum Event {
    Command(String),
    Binary,
    Other,
    End,
    /// The client broke the WebSocket protocol: the close code and why.
    Broke((u16, String)),
    Heard(Arc<Message>),
    /// The state dropped this connection's listener: it did not keep up.
    Deaf,
    Tick,
}

async fn next_event(
    from_client: &mut async_tungstenite::WebSocketReceiver<crate::socket::Socket>,
    heard: Option<&state::Hear>,
    ticks: &mut Timer,
) -> Event {
    let from_client = async {
        match from_client.next().await {
            Some(Ok(WsMessage::Text(text))) => Event::Command(text.to_string()),
            Some(Ok(WsMessage::Binary(_))) => Event::Binary,
            Some(Err(e)) => match violation(&e) {
                Some(violated) => Event::Broke(violated),
                None => Event::End,
            },
            Some(Ok(WsMessage::Close(_))) | None => Event::End,
            Some(Ok(_)) => Event::Other,
        }
    };
    let from_mailbox = async {
        match heard {
            Some(heard) => match heard.recv().await {
                Some(message) => Event::Heard(message),
                None => Event::Deaf,
            },
            None => future::pending().await,
        }
    };
    let tick = async {
        ticks.next().await;
        Event::Tick
    };
    future::or(from_client, future::or(from_mailbox, tick)).await
}

impl<'a> Conn<'a> {
    fn new(hub: &'a Arc<Hub>, peer: SocketAddr) -> Conn<'a> {
        Conn {
            hub,
            peer,
            app: None,
            side: None,
            did_allocate: false,
            nameplate: None,
            did_claim: false,
            did_release: false,
            mailbox: None,
            listening: false,
            did_close: false,
            id: hub.next_id(),
            heard: None,
            out: Vec::new(),
        }
    }

    fn welcome(&mut self) {
        let mut welcome = Map::new();
        let config = &self.hub.config;
        if let Some(motd) = &config.wormhole.motd {
            welcome.insert("motd".into(), json!(motd));
        }
        if let Some(error) = &config.wormhole.error {
            welcome.insert("error".into(), json!(error));
        }
        let ip = self.peer.ip().to_canonical();
        let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        welcome.insert(
            "your-address".into(),
            json!({ family: ip.to_string(), "port": self.peer.port() }),
        );
        self.out
            .push(json!({"type": "welcome", "welcome": welcome}));
    }

    /// Handles one command: its `ack`, then its answer or an `error`.
    async fn command(&mut self, text: &str) {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            let orig = json!(text.chars().take(200).collect::<String>());
            self.out
                .push(json!({"type": "error", "error": "not a JSON object", "orig": orig}));
            return;
        };
        let Some(kind) = msg.get("type").and_then(Value::as_str).map(str::to_string) else {
            let error = json!({"type": "error", "error": "missing 'type'", "orig": msg});
            self.out.push(error);
            return;
        };
        self.out
            .push(json!({"type": "ack", "id": msg.get("id").cloned().unwrap_or(Value::Null)}));
        self.log(&kind, &msg).await;
        if let Err(CommandError(why)) = self.dispatch(&kind, &msg) {
            self.out
                .push(json!({"type": "error", "error": why, "orig": msg}));
        }
    }

    /// The command in the log, as `IP:PORT -> wormhole KIND …` (never a message's body).
    async fn log(&self, kind: &str, msg: &Map<String, Value>) {
        let detail = ["appid", "nameplate", "mailbox", "phase", "mood"]
            .iter()
            .filter_map(|key| Some(format!(" {key}={}", msg.get(*key)?.as_str()?)))
            .collect::<String>();
        let text = format!("wormhole {kind}{detail}").into_bytes();
        let peer = self.peer;
        self.hub.log.send(Record::Line { peer, text }).await;
    }

    fn dispatch(&mut self, kind: &str, msg: &Map<String, Value>) -> Result<(), CommandError> {
        match kind {
            "ping" => return self.ping(msg),
            "bind" => return self.bind(msg),
            _ => {}
        }
        let (app, side) = match (&self.app, &self.side) {
            (Some(app), Some(side)) => (app.clone(), side.clone()),
            _ => return Err("must bind first".into()),
        };
        match kind {
            "list" => self.list(&app),
            "allocate" => self.allocate(&app, &side),
            "claim" => self.claim(&app, &side, msg),
            "release" => self.release(&app, &side, msg),
            "open" => self.open(&app, &side, msg),
            "add" => self.add(&app, &side, msg),
            "close" => self.close(&app, &side, msg),
            _ => Err("unknown type".into()),
        }
    }

    fn ping(&mut self, msg: &Map<String, Value>) -> Result<(), CommandError> {
        let ping = msg.get("ping").ok_or("ping requires 'ping'")?;
        self.out.push(json!({"type": "pong", "pong": ping}));
        Ok(())
    }

    fn bind(&mut self, msg: &Map<String, Value>) -> Result<(), CommandError> {
        if self.app.is_some() {
            return Err("already bound".into());
        }
        let app = text(msg, "appid").ok_or("bind requires 'appid'")?;
        let side = text(msg, "side").ok_or("bind requires 'side'")?;
        short(&app, "appid")?;
        short(&side, "side")?;
        self.app = Some(app);
        self.side = Some(side);
        Ok(())
    }

    fn list(&mut self, app: &str) -> Result<(), CommandError> {
        let ids: Vec<Value> = self
            .hub
            .wormhole
            .nameplates(app)
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        self.out
            .push(json!({"type": "nameplates", "nameplates": ids}));
        Ok(())
    }

    fn allocate(&mut self, app: &str, side: &str) -> Result<(), CommandError> {
        if self.did_allocate {
            return Err("you already allocated one, don't be greedy".into());
        }
        self.hub.rate_limit(self.peer)?;
        let nameplate = self.hub.wormhole.allocate(app, side, self.who())?;
        self.did_allocate = true;
        self.out
            .push(json!({"type": "allocated", "nameplate": nameplate}));
        Ok(())
    }

    fn claim(
        &mut self,
        app: &str,
        side: &str,
        msg: &Map<String, Value>,
    ) -> Result<(), CommandError> {
        let nameplate = text(msg, "nameplate").ok_or("claim requires 'nameplate'")?;
        if self.did_claim {
            return Err("only one claim per connection".into());
        }
        self.did_claim = true;
        self.hub.rate_limit(self.peer)?;
        self.nameplate = Some(nameplate.clone());
        let mailbox = self.hub.wormhole.claim(app, &nameplate, side, self.who())?;
        self.out
            .push(json!({"type": "claimed", "mailbox": mailbox}));
        Ok(())
    }

    fn release(
        &mut self,
        app: &str,
        side: &str,
        msg: &Map<String, Value>,
    ) -> Result<(), CommandError> {
        if self.did_release {
            return Err("only one release per connection".into());
        }
        let nameplate = match (text(msg, "nameplate"), &self.nameplate) {
            (Some(given), Some(claimed)) if given != *claimed => {
                return Err("release and claim must use same nameplate".into())
            }
            (Some(given), _) => given,
            (None, Some(claimed)) => claimed.clone(),
            (None, None) => return Err("release without nameplate must follow claim".into()),
        };
        self.did_release = true;
        self.hub.wormhole.release(app, &nameplate, side);
        self.out.push(json!({"type": "released"}));
        Ok(())
    }

    fn open(
        &mut self,
        app: &str,
        side: &str,
        msg: &Map<String, Value>,
    ) -> Result<(), CommandError> {
        if self.mailbox.is_some() {
            return Err("only one open per connection".into());
        }
        let mailbox = text(msg, "mailbox").ok_or("open requires 'mailbox'")?;
        short(&mailbox, "mailbox")?;
        let (heard_in, heard_out) = state::listener_queue();
        let listener: Listener = (self.id, heard_in);
        let old = self
            .hub
            .wormhole
            .open(app, &mailbox, side, self.who(), listener)?;
        self.mailbox = Some(mailbox);
        self.listening = true;
        self.heard = Some(heard_out);
        for message in old {
            self.deliver(&message);
        }
        Ok(())
    }

    fn add(&mut self, app: &str, side: &str, msg: &Map<String, Value>) -> Result<(), CommandError> {
        let mailbox = self
            .mailbox
            .clone()
            .filter(|_| self.listening)
            .ok_or("must open mailbox before adding")?;
        let phase = text(msg, "phase").ok_or("missing 'phase'")?;
        let body = text(msg, "body").ok_or("missing 'body'")?;
        let message = Message {
            side: side.to_string(),
            phase,
            body,
            server_rx: state::now(),
            id: msg.get("id").cloned().unwrap_or(Value::Null),
        };
        self.hub.wormhole.add(app, &mailbox, message, self.who())?;
        Ok(())
    }

    fn close(
        &mut self,
        app: &str,
        side: &str,
        msg: &Map<String, Value>,
    ) -> Result<(), CommandError> {
        if self.did_close {
            return Err("only one close per connection".into());
        }
        let mailbox = match (text(msg, "mailbox"), &self.mailbox) {
            (Some(given), Some(opened)) if given != *opened => {
                return Err("open and close must use same mailbox".into())
            }
            (Some(given), _) => given,
            (None, Some(opened)) => opened.clone(),
            (None, None) => return Err("close without mailbox must follow open".into()),
        };
        if self.listening {
            self.hub.wormhole.unlisten(app, &mailbox, self.id);
            self.listening = false;
            self.heard = None;
        }
        self.did_close = true;
        let mood = text(msg, "mood");
        if let Some(closed) = self.hub.wormhole.close(app, &mailbox, side, mood) {
            let (mailbox, result) = (closed.mailbox, closed.result);
            self.hub.log.try_send(Record::Mailbox { mailbox, result });
        }
        self.mailbox = None;
        self.out.push(json!({"type": "closed"}));
        Ok(())
    }

    /// The address this connection's limits count against (IPv6: its /64).
    fn who(&self) -> state::Who {
        crate::server::throttle::key(self.peer.ip())
    }

    /// A mailbox message for this connection.
    fn deliver(&mut self, message: &Message) {
        self.out.push(json!({
            "type": "message",
            "side": message.side,
            "phase": message.phase,
            "body": message.body,
            "server_rx": message.server_rx,
            "id": message.id,
        }));
    }

    /// Everything its listener has queued, into the replies.
    fn take_heard(&mut self) {
        let queued: Vec<Arc<Message>> = match &self.heard {
            Some(heard) => std::iter::from_fn(|| heard.try_recv()).collect(),
            None => return,
        };
        for message in queued {
            self.deliver(&message);
        }
    }

    /// The connection is gone: it stops listening (its mailbox stays open for it).
    fn leave(&mut self) {
        if let (true, Some(app), Some(mailbox)) = (self.listening, &self.app, &self.mailbox) {
            self.hub.wormhole.unlisten(app, mailbox, self.id);
        }
    }
}

/// An id a client names (appid, side, mailbox) must be short: each is kept in the tables.
fn short(value: &str, what: &str) -> Result<(), CommandError> {
    match value.len() <= state::MAX_ID_BYTES {
        true => Ok(()),
        false => Err(CommandError(format!(
            "{what} too long (max {} bytes)",
            state::MAX_ID_BYTES
        ))),
    }
}

/// A string field of a command.
fn text(msg: &Map<String, Value>, key: &str) -> Option<String> {
    msg.get(key).and_then(Value::as_str).map(str::to_string)
}
