//! The `duet` binary: parse arguments, bind, run, turn errors into an exit code.

use std::io;
use std::process::ExitCode;

use async_signal::{Signal, Signals};
use duet::cli::{self, Args, Command, Serve};
use duet::client;
use duet::server;
use duet::server::printer::{Printer, LOG_FLUSH_TIMEOUT};
use futures_lite::StreamExt;

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    if args.version {
        println!("duet {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(command) = args.command else {
        eprintln!("duet: no command given; try `duet --help`");
        return ExitCode::from(2);
    };
    let result = run(command);
    client::finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("duet: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand; an error is printed once, by `main`.
fn run(command: Command) -> io::Result<()> {
    match command {
        Command::Serve(serve) => run_server(serve),
        Command::Pipe(pipe) => {
            let relay = relay(pipe.relay, pipe.tls, pipe.tls_ca, pipe.tls_fingerprint)?;
            client::pipe::run(&relay, &pipe.token)
        }
        Command::Chat(chat) => client::chat::run(&client::chat::Options {
            relay: relay(chat.relay, chat.tls, chat.tls_ca, chat.tls_fingerprint)?,
            room: chat.room,
            nick: chat.nick,
            reconnect: !chat.no_reconnect,
        }),
        Command::Voice(voice) => client::voice::run(&client::voice::Options {
            relay: relay(voice.relay, voice.tls, voice.tls_ca, voice.tls_fingerprint)?,
            token: voice.token,
            capture: voice.capture,
            playback: voice.playback,
            jitter_ms: voice.jitter,
            max_delay_ms: voice.max_delay,
            stats: voice.stats,
        }),
        Command::Send(send) => send_command(send),
        Command::Recv(recv) => recv_command(recv),
    }
}

/// `duet send`: duet's own transfer, or `--wormhole`/`--text` to a wormhole client.
fn send_command(send: cli::Send) -> io::Result<()> {
    let relay = relay(send.relay, send.tls, send.tls_ca, send.tls_fingerprint)?;
    if send.wormhole || send.text.is_some() {
        return wormhole_send(
            relay,
            send.paths,
            send.text,
            send.code,
            send.wormhole_url,
            send.quiet,
        );
    }
    let code = send.code.as_deref().map(str::parse).transpose();
    if send.paths.is_empty() {
        return Err(usage("nothing to send: name files or directories".into()));
    }
    let qr = match (send.qr, send.no_qr) {
        (true, true) => return Err(usage("--qr or --no-qr, not both".into())),
        (true, false) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    let link = client::link::Link::new(&relay, send.public_url, qr).map_err(usage)?;
    client::send::run(&client::send::Options {
        link,
        relay,
        paths: send.paths,
        code: code.map_err(usage)?,
        quiet: send.quiet,
    })
}

fn wormhole_send(
    relay: client::Relay,
    mut paths: Vec<std::path::PathBuf>,
    text: Option<String>,
    code: Option<String>,
    url: Option<String>,
    quiet: bool,
) -> io::Result<()> {
    use client::wormhole::send::{self, What};
    let what = match (text, paths.len()) {
        (Some(text), 0) => What::Text(text),
        (None, 1) => What::Path(paths.remove(0)),
        (Some(_), _) => return Err(usage("--text or files, not both".into())),
        (None, _) => {
            return Err(usage(
                "a wormhole carries one file or directory (or --text): name one, or put them in a directory".into(),
            ))
        }
    };
    let code = code
        .as_deref()
        .map(duet_transfer::wormhole::WormholeCode::parse);
    send::run(&send::Options {
        common: client::wormhole::Common::new(relay, url, quiet),
        what,
        code: code.transpose().map_err(usage)?,
    })
}

/// `duet recv CODE`: a duet code, or a wormhole code (by its form or `--wormhole`).
fn recv_command(recv: cli::Recv) -> io::Result<()> {
    use duet_transfer::wormhole::Kind;
    let relay = relay(recv.relay, recv.tls, recv.tls_ca, recv.tls_fingerprint)?;
    let kind =
        client::wormhole::which(&recv.code, recv.wormhole, recv.no_wormhole).map_err(usage)?;
    match kind {
        Kind::Wormhole(code) => client::wormhole::recv::run(&client::wormhole::recv::Options {
            common: client::wormhole::Common::new(relay, recv.wormhole_url, recv.quiet),
            code,
            dir: recv.out,
            force: recv.force,
            yes: recv.yes,
        }),
        Kind::Duet(code) | Kind::Ambiguous(code, _) => client::recv::run(&client::recv::Options {
            relay,
            code,
            dir: recv.out,
            force: recv.force,
            yes: recv.yes,
            quiet: recv.quiet,
        }),
    }
}

/// The relay a client talks to, from its `--relay` and `--tls*` options.
fn relay(
    addr: Option<String>,
    tls: bool,
    ca: Option<std::path::PathBuf>,
    fingerprint: Option<String>,
) -> io::Result<client::Relay> {
    cli::relay(addr, tls, ca, fingerprint).map_err(usage)
}

/// A mistake in the arguments.
fn usage(e: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

fn run_server(serve: Serve) -> io::Result<()> {
    let config = serve.config().map_err(usage)?;
    let addr = serve.addr();
    let (listener, passed) = server::listener(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    if passed {
        eprintln!("duet: serving the socket systemd passed ($LISTEN_FDS); -p and -b are not used");
    }
    // Registered before serving so that a signal during start-up is not lost.
    let mut signals = Signals::new([Signal::Term, Signal::Int])?;
    let (log, printer) = Printer::spawn(Box::new(io::stdout()), serve.log_format)?;
    let served = server::run(listener, config, log.clone(), async move {
        signals.next().await;
    });
    log.close();
    drop(log);
    // Bounded: a blocked stdout must not keep the server from exiting.
    printer.join(LOG_FLUSH_TIMEOUT);
    served
}
