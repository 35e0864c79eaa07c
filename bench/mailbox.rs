//! A magic-wormhole mailbox client for the load tool and the soak test: just enough of the
//! server protocol (bind, allocate, claim, open, add, hear the other side) to make two
//! sides meet, with every reply read through serde_json.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A client's WebSocket to the mailbox server.
pub type Ws = async_tungstenite::WebSocketStream<async_net::TcpStream>;

/// One pair: A allocates a nameplate and opens its mailbox, B claims it; both add a
/// message and wait for the other's. Returns how long it took, and both connections.
pub async fn mailbox_pair(addr: SocketAddr, p: usize) -> io::Result<(Duration, Ws, Ws)> {
    let t0 = Instant::now();
    let mut a = ws_connect(addr).await?;
    ws_ask(
        &mut a,
        &format!(r#"{{"type":"bind","appid":"bench","side":"a{p}"}}"#),
        None,
    )
    .await?;
    let allocated = ws_ask(&mut a, r#"{"type":"allocate"}"#, Some("allocated")).await?;
    let nameplate = allocated["nameplate"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let claim = format!(r#"{{"type":"claim","nameplate":"{nameplate}"}}"#);
    let claimed = ws_ask(&mut a, &claim, Some("claimed")).await?;
    let mailbox = claimed["mailbox"].as_str().unwrap_or_default().to_string();
    let open = format!(r#"{{"type":"open","mailbox":"{mailbox}"}}"#);
    let (mut heard_a, mut heard_b) = (Vec::new(), Vec::new());
    ws_ask_noting(&mut a, &open, None, &mut heard_a).await?;
    let add_a = r#"{"type":"add","phase":"pake","body":"aa"}"#;
    ws_ask_noting(&mut a, add_a, None, &mut heard_a).await?;
    let mut b = ws_connect(addr).await?;
    ws_ask(
        &mut b,
        &format!(r#"{{"type":"bind","appid":"bench","side":"b{p}"}}"#),
        None,
    )
    .await?;
    ws_ask(&mut b, &claim, Some("claimed")).await?;
    ws_ask_noting(&mut b, &open, None, &mut heard_b).await?;
    let add_b = r#"{"type":"add","phase":"pake","body":"bb"}"#;
    ws_ask_noting(&mut b, add_b, None, &mut heard_b).await?;
    ws_hear(&mut b, &format!("a{p}"), &heard_b).await?;
    ws_hear(&mut a, &format!("b{p}"), &heard_a).await?;
    Ok((t0.elapsed(), a, b))
}

/// Opens the mailbox WebSocket, trying again (5 times, backing off) when the server resets
/// or refuses the connection, as wormhole clients do: a server whose listen backlog
/// overflows costs its clients time, which the handshake times then show.
pub async fn ws_connect(addr: SocketAddr) -> io::Result<Ws> {
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = async {
            let stream = async_net::TcpStream::connect(addr).await?;
            let url = format!("ws://{addr}/v1");
            let (ws, _) = async_tungstenite::client_async(url, stream)
                .await
                .map_err(io::Error::other)?;
            Ok::<_, io::Error>(ws)
        };
        match attempt.await {
            Ok(ws) => return Ok(ws),
            Err(e) if tries >= 5 => return Err(e),
            Err(_) => smol::Timer::after(Duration::from_millis(100 * tries)).await,
        };
    }
}

/// Sends a command and waits for its ack, and for a reply of type `wait` when given. The
/// sides of mailbox messages that arrive meanwhile are noted in `HEARD`.
pub async fn ws_ask(
    ws: &mut Ws,
    command: &str,
    wait: Option<&str>,
) -> io::Result<serde_json::Value> {
    ws_ask_noting(ws, command, wait, &mut Vec::new()).await
}

pub async fn ws_ask_noting(
    ws: &mut Ws,
    command: &str,
    wait: Option<&str>,
    heard: &mut Vec<String>,
) -> io::Result<serde_json::Value> {
    use async_tungstenite::tungstenite::Message;
    ws.send(Message::text(command.to_string()))
        .await
        .map_err(io::Error::other)?;
    let mut acked = false;
    loop {
        let reply = ws_next(ws).await?;
        match reply["type"].as_str() {
            Some("ack") => acked = true,
            Some("message") => heard.push(reply["side"].as_str().unwrap_or_default().into()),
            Some("error") => return Err(io::Error::other(reply.to_string())),
            Some(kind) if Some(kind) == wait => return Ok(reply),
            _ => {}
        }
        if acked && wait.is_none() {
            return Ok(serde_json::Value::Null);
        }
    }
}

/// Waits for a message from `side` (unless it came already).
pub async fn ws_hear(ws: &mut Ws, side: &str, heard: &[String]) -> io::Result<()> {
    if heard.iter().any(|s| s == side) {
        return Ok(());
    }
    loop {
        let reply = ws_next(ws).await?;
        if reply["type"] == "message" && reply["side"] == side {
            return Ok(());
        }
    }
}

pub async fn ws_next(ws: &mut Ws) -> io::Result<serde_json::Value> {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).map_err(io::Error::other)
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}
