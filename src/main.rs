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
    let usage = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let result = match args.command {
        Some(Command::Serve(serve)) => run_server(serve),
        Some(Command::Pipe(pipe)) => {
            cli::relay(pipe.relay, pipe.tls, pipe.tls_ca, pipe.tls_fingerprint)
                .map_err(usage)
                .and_then(|relay| client::pipe::run(&relay, &pipe.token))
        }
        Some(Command::Chat(chat)) => {
            cli::relay(chat.relay, chat.tls, chat.tls_ca, chat.tls_fingerprint)
                .map_err(usage)
                .and_then(|relay| {
                    client::chat::run(&client::chat::Options {
                        relay,
                        room: chat.room,
                        nick: chat.nick,
                        reconnect: !chat.no_reconnect,
                    })
                })
        }
        Some(Command::Voice(voice)) => {
            cli::relay(voice.relay, voice.tls, voice.tls_ca, voice.tls_fingerprint)
                .map_err(usage)
                .and_then(|relay| {
                    client::voice::run(&client::voice::Options {
                        relay,
                        token: voice.token,
                        capture: voice.capture,
                        playback: voice.playback,
                        jitter_ms: voice.jitter,
                        max_delay_ms: voice.max_delay,
                        stats: voice.stats,
                    })
                })
        }
        Some(Command::Send(send)) => {
            let code = send.code.as_deref().map(str::parse).transpose();
            cli::relay(send.relay, send.tls, send.tls_ca, send.tls_fingerprint)
                .and_then(|relay| Ok((relay, code?)))
                .map_err(usage)
                .and_then(|(relay, code)| {
                    if send.paths.is_empty() {
                        return Err(usage("nothing to send: name files or directories".into()));
                    }
                    client::send::run(&client::send::Options {
                        relay,
                        paths: send.paths,
                        code,
                        quiet: send.quiet,
                    })
                })
        }
        Some(Command::Recv(recv)) => {
            let code = recv.code.parse();
            cli::relay(recv.relay, recv.tls, recv.tls_ca, recv.tls_fingerprint)
                .and_then(|relay| Ok((relay, code?)))
                .map_err(usage)
                .and_then(|(relay, code)| {
                    client::recv::run(&client::recv::Options {
                        relay,
                        code,
                        dir: recv.out,
                        force: recv.force,
                        yes: recv.yes,
                        quiet: recv.quiet,
                    })
                })
        }
        None => {
            eprintln!("duet: no command given; try `duet --help`");
            return ExitCode::from(2);
        }
    };
    client::finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("duet: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(serve: Serve) -> io::Result<()> {
    let config = serve
        .config()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let addr = serve.addr();
    let listener = server::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
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
