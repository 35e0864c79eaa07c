//! `duet chat [ROOM]`: a line chat client.
//!
//! Joins ROOM (or matchmaking when none is given), prints what the room says and sends what
//! is typed. Server notices (`* …`) are dimmed when stdout is a terminal, so they stand apart
//! from people's lines; in a pipe every line is printed as the server sent it. Lines that
//! start with `/` are commands (`/who`, `/nick`, `/leave`…). End of input leaves cleanly with
//! `/quit`. When the connection is lost, the client reconnects with backoff and joins again.

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::Shutdown;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::client;

/// First and last pause between reconnection attempts.
pub const RECONNECT_MIN: Duration = Duration::from_millis(250);
pub const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// After `/quit`, how long to wait for the server to close before leaving anyway.
const QUIT_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Options {
    pub relay: client::Relay,
    pub room: Option<String>,
    pub nick: Option<String>,
    pub reconnect: bool,
}

/// What the chat loop hears about: typed lines, and connections ending.
enum Event {
    /// A line of input, or `None` at end of input.
    Input(Option<String>),
    /// Connection number `n` was closed by the server or failed.
    Closed(u64, String),
}

pub fn run(options: &Options) -> io::Result<()> {
    let (events, inbox) = mpsc::channel();
    let typed = events.clone();
    thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if typed.send(Event::Input(Some(line))).is_err() {
                return;
            }
        }
        typed.send(Event::Input(None)).ok();
    });
    let screen = Screen {
        dim: io::stdout().is_terminal(),
    };
    let mut backoff = RECONNECT_MIN;
    let mut n = 0;
    loop {
        n += 1;
        let why = match session(options, n, &events, &inbox, &screen) {
            Ok(Ended::Quit) => return Ok(()),
            Ok(Ended::Lost(why)) => {
                backoff = RECONNECT_MIN;
                why
            }
            Err(e) => e.to_string(),
        };
        if !options.reconnect {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, why));
        }
        screen.notice(&format!(
            "* disconnected ({why}); reconnecting in {} ms",
            backoff.as_millis()
        ));
        // Wait out the backoff, but leave at once if input ends meanwhile.
        let until = Instant::now() + backoff;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match inbox.recv_timeout(left) {
                Ok(Event::Input(None)) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Ok(Event::Input(Some(_))) => screen.notice("* not connected; line not sent"),
                Ok(Event::Closed(..)) | Err(RecvTimeoutError::Timeout) => {}
            }
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

enum Ended {
    Quit,
    Lost(String),
}

/// One connection: join, then relay input and output until it ends.
fn session(
    options: &Options,
    n: u64,
    events: &Sender<Event>,
    inbox: &Receiver<Event>,
    screen: &Screen,
) -> io::Result<Ended> {
    let (mut stream, mut reader) = client::connect(&options.relay)?;
    // Everything at once: a relay greets a client whose first line is not a `/pipe` as soon
    // as that line arrives, so there is nothing to wait for.
    let mut opening = String::new();
    if let Some(nick) = &options.nick {
        opening += &format!("/nick {nick}\n");
    }
    opening += &match &options.room {
        Some(room) => format!("/join {room}\n"),
        None => "/join\n".to_string(),
    };
    stream.write_all(opening.as_bytes())?;
    client::greeted(&options.relay, &mut reader)?;
    if options.nick.is_some() {
        client::answer(&mut reader, "* you are now")?;
    }
    stream.set_read_timeout(None)?;
    let closed = events.clone();
    let printer = *screen;
    thread::spawn(move || {
        let why = loop {
            match client::read_line(&mut reader) {
                Ok(line) => printer.show(&line),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    break "the server closed the connection".to_string()
                }
                Err(e) => break e.to_string(),
            }
        };
        closed.send(Event::Closed(n, why)).ok();
    });
    loop {
        match inbox.recv() {
            Ok(Event::Input(Some(line))) => {
                if let Err(e) = writeln!(stream, "{line}") {
                    return Ok(Ended::Lost(e.to_string()));
                }
            }
            Ok(Event::Input(None)) | Err(_) => {
                // Leave politely, and let the server's last lines be printed.
                writeln!(stream, "/quit").ok();
                stream.shutdown(Shutdown::Write).ok();
                wait_closed(inbox, n);
                return Ok(Ended::Quit);
            }
            Ok(Event::Closed(m, why)) if m == n => return Ok(Ended::Lost(why)),
            Ok(Event::Closed(..)) => {}
        }
    }
}

fn wait_closed(inbox: &Receiver<Event>, n: u64) {
    let until = Instant::now() + QUIT_WAIT;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match inbox.recv_timeout(left) {
            Ok(Event::Closed(m, _)) if m == n => return,
            Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Where received lines go.
#[derive(Clone, Copy, Debug)]
struct Screen {
    dim: bool,
}

impl Screen {
    fn show(&self, line: &str) {
        if line.starts_with("* ") {
            self.notice(line);
        } else {
            let mut out = io::stdout().lock();
            // A closed stdout (the reader quit) is not worth dying for mid-chat.
            writeln!(out, "{line}").ok();
            out.flush().ok();
        }
    }

    fn notice(&self, line: &str) {
        let mut out = io::stdout().lock();
        if self.dim {
            writeln!(out, "\x1b[2m{line}\x1b[0m").ok();
        } else {
            writeln!(out, "{line}").ok();
        }
        out.flush().ok();
    }
}
