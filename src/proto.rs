//! The line protocol: parsing what clients send and formatting what the server says.
//!
//! Pure functions, no I/O. `docs/PROTOCOL.md` is the prose version of this file; keep them in
//! step. Every line the server sends on its own behalf starts with `* `; errors start with
//! `* error: `, so scripts and the `duet` clients can tell them from peers' messages.

use std::io::Write as _;

/// The greeting, sent to every client that does not open a silent pipe. The first line is the
/// seed's, byte for byte.
pub const GREETING: &[u8] = b"Hello, Client!\nYou deserve a new task... type /help for commands.\n";

/// Longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 64;
/// Longest pipe token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 128;
/// Longest nickname, in bytes.
pub const MAX_NICK_BYTES: usize = 32;

/// What a line from a client in line mode means.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// Text to log (lobby) or relay (room). `//x` arrives here as `/x`.
    Text(&'a [u8]),
    Command(Command<'a>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/join ROOM`, or `/join` alone for matchmaking (`None`).
    Join(Option<&'a str>),
    Nick(&'a str),
    Who,
    Leave,
    Quit,
    Help,
    /// `/pipe TOKEN [ROLE]`.
    Pipe(&'a str, Option<Role>),
    /// `/auth SECRET` (see `--secret-file`).
    Auth(&'a str),
}

/// Parses one line. `Err` carries the text of the `* error:` line to send back.
pub fn parse(line: &[u8]) -> Result<Input<'_>, String> {
    if line.first() != Some(&b'/') {
        return Ok(Input::Text(line));
    }
    if line.starts_with(b"//") {
        return Ok(Input::Text(&line[1..]));
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Err("commands must be UTF-8 text (try /help)".into());
    };
    let mut words = line.split_ascii_whitespace();
    let name = words.next().unwrap_or("/");
    let arg = words.next();
    if name == "/pipe" {
        return parse_pipe(arg, words.next(), words.next().is_some());
    }
    let extra = words.next().is_some();
    let command = match (name, arg) {
        ("/join", None) => Command::Join(None),
        ("/join", Some(room)) => {
            check_name(room, "room name", MAX_ROOM_BYTES)?;
            Command::Join(Some(room))
        }
        ("/nick", Some(nick)) => {
            check_nick(nick)?;
            Command::Nick(nick)
        }
        ("/nick", None) => return Err("usage: /nick NAME".into()),
        ("/auth", Some(secret)) => Command::Auth(secret),
        ("/auth", None) => return Err("usage: /auth SECRET".into()),
        ("/who", None) => Command::Who,
        ("/leave", None) => Command::Leave,
        ("/quit", None) => Command::Quit,
        ("/help", None) => Command::Help,
        ("/who" | "/leave" | "/quit" | "/help", Some(_)) => {
            return Err(format!("{name} takes no argument (try /help)"))
        }
        _ => {
            let shown: String = name.chars().take(32).collect();
            return Err(format!(
                "unknown command {shown} (try /help; start a line with // to send a /)"
            ));
        }
    };
    if extra {
        return Err(format!("{name} takes one word (try /help)"));
    }
    Ok(Input::Command(command))
}

/// Which end of a pipe a client is, when it says (`/pipe TOKEN ROLE`). Two ends with the
/// same role never pair: two `duet send`s that drew the same number are told so instead of
/// being joined to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Send,
    Recv,
    /// Either: pairs with any end (what `duet pipe` and `duet voice` are).
    Any,
}

impl Role {
    /// Whether two ends may not be joined: both senders or both receivers. An end without a
    /// role (a bare `/pipe TOKEN`) pairs with anything.
    pub fn clash(a: Option<Role>, b: Option<Role>) -> bool {
        matches!(
            (a, b),
            (Some(Role::Send), Some(Role::Send)) | (Some(Role::Recv), Some(Role::Recv))
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Send => "send",
            Role::Recv => "recv",
            Role::Any => "any",
        }
    }
}

/// `/pipe TOKEN [send|recv|any]`.
fn parse_pipe<'a>(
    token: Option<&'a str>,
    role: Option<&'a str>,
    extra: bool,
) -> Result<Input<'a>, String> {
    const USAGE: &str = "usage: /pipe TOKEN [send|recv|any]";
    let (Some(token), false) = (token, extra) else {
        return Err(USAGE.into());
    };
    check_name(token, "pipe token", MAX_TOKEN_BYTES)?;
    let role = match role {
        None => None,
        Some("send") => Some(Role::Send),
        Some("recv") => Some(Role::Recv),
        Some("any") => Some(Role::Any),
        Some(_) => return Err(USAGE.into()),
    };
    Ok(Input::Command(Command::Pipe(token, role)))
}

/// What a `* error:` answer to `/pipe` means to a program that has to act on it (duet's
/// clients, the HTTP bridge): the texts are the ones in docs/PROTOCOL.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeRefusal {
    /// `pipe TOKEN is busy`: two others use it.
    Busy,
    /// `pipe TOKEN already has a sender waiting` (or a receiver).
    Taken,
    /// `too many pipes waiting for a peer (max N); try again later`.
    TooManyWaiting,
    /// `pipe TOKEN expired (no peer within N s)`.
    Expired,
    Other,
}

impl PipeRefusal {
    pub fn of(error: &str) -> PipeRefusal {
        let about_pipe = error.starts_with("pipe ");
        if about_pipe && error.ends_with(" is busy") {
            PipeRefusal::Busy
        } else if about_pipe && error.contains(" already has a ") && error.ends_with(" waiting") {
            PipeRefusal::Taken
        } else if about_pipe && error.contains(" expired (no peer within ") {
            PipeRefusal::Expired
        } else if error.starts_with("too many pipes waiting") {
            PipeRefusal::TooManyWaiting
        } else {
            PipeRefusal::Other
        }
    }
}

/// Room names and pipe tokens: 1 to `max` characters of `A-Z a-z 0-9 . _ -`.
fn check_name(name: &str, what: &str, max: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        // Echo a short prefix only: the error line stays short whatever was sent.
        let mut shown: String = name.chars().take(32).collect();
        if shown.len() < name.len() {
            shown.push('…');
        }
        Err(format!(
            "bad {what} {shown:?}: use 1 to {max} characters of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// Nicknames: 1 to 32 bytes of printable characters, no spaces, no `<` or `>`, and none of
/// the characters that reorder or break a line on screen (a nick must read as it is written).
fn check_nick(nick: &str) -> Result<(), String> {
    let ok = nick.len() <= MAX_NICK_BYTES
        && !nick
            .chars()
            .any(|c| is_unsafe(c) || c.is_whitespace() || c == '<' || c == '>');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad nickname: use 1 to {MAX_NICK_BYTES} bytes, no spaces, controls, \
             direction marks, < or >"
        ))
    }
}

/// Characters that must never reach a terminal or a log as they are: C0 and C1 controls
/// and DEL (escape sequences, tabs), the Unicode line and paragraph separators (a line
/// break to some viewers), and the bidirectional controls and marks (text that reads
/// backwards, or hides what follows).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// A notice line: `* TEXT\n`.
pub fn notice(text: &str) -> Vec<u8> {
    format!("* {text}\n").into_bytes()
}

/// An error line: `* error: TEXT\n`.
pub fn error(text: &str) -> Vec<u8> {
    format!("* error: {text}\n").into_bytes()
}

/// A room message as the other members see it: `<NICK> MSG\n`, with MSG escaped like the
/// log so that no member can send escape sequences to another's terminal. `nick` writes
/// the nickname.
pub fn message(nick: impl FnOnce(&mut Vec<u8>), text: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(text.len() + 56);
    line.push(b'<');
    nick(&mut line);
    line.extend_from_slice(b"> ");
    push_escaped(&mut line, text);
    line.push(b'\n');
    line
}

/// Appends an address as the log and default nicknames show it (`IP:PORT`, IPv4-mapped
/// IPv6 as plain IPv4), without the formatting machinery for IPv4, which is every line's.
pub fn push_addr(buf: &mut Vec<u8>, addr: &std::net::SocketAddr) {
    match addr.ip().to_canonical() {
        std::net::IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_decimal(buf, u32::from(octet));
            }
            buf.push(b':');
            push_decimal(buf, u32::from(addr.port()));
        }
        ip => {
            // Writing into a Vec cannot fail.
            write!(buf, "{}", std::net::SocketAddr::new(ip, addr.port())).ok();
        }
    }
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Appends client bytes so that they cannot do anything to the operator's terminal or to a
/// reader of the log: invalid UTF-8 becomes U+FFFD (never dropped); the characters of
/// [`is_unsafe`] become visible escapes, `\xNN` for C0 controls (tab included) and DEL,
/// `\u{NNNN}` for the others. One log record stays one line that reads as it was sent.
pub fn push_escaped(buf: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        buf.extend_from_slice(bytes);
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut tmp = [0u8; 4];
    for c in text.chars() {
        match c {
            '\0'..='\x1f' | '\x7f' => {
                // Writing into a Vec cannot fail.
                write!(buf, "\\x{:02x}", c as u32).ok();
            }
            c if is_unsafe(c) => {
                write!(buf, "\\u{{{:x}}}", c as u32).ok();
            }
            _ => buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes()),
        }
    }
}

/// [`push_escaped`] into a `String`, for text from a peer or the file system shown on a
/// terminal (the clients' messages).
pub fn escaped(text: &[u8]) -> String {
    let mut buf = Vec::with_capacity(text.len());
    push_escaped(&mut buf, text);
    // push_escaped writes only whole characters of valid UTF-8.
    String::from_utf8(buf).expect("escaped text is UTF-8")
}

/// The reply to `/help`.
pub fn help(room_size: usize) -> Vec<u8> {
    let lines = [
        "commands:".to_string(),
        format!("  /join ROOM   enter ROOM (created on first join; at most {room_size} members)"),
        "  /join        meet the next person who also types /join, in a private room".into(),
        "  /nick NAME   choose the name others see".into(),
        "  /who         list the members of your room".into(),
        "  /leave       go back to the lobby".into(),
        "  /pipe TOKEN  connect raw to whoever else sends /pipe TOKEN; bytes only from then on"
            .into(),
        "  /pipe TOKEN send|recv  the same as its sending or receiving end: two senders (or two"
            .into(),
        "               receivers) are never joined, the second is told the token is in use".into(),
        "  /auth SECRET log in, on a server that asks for it".into(),
        "  /quit        disconnect".into(),
        "  //text       send a line that starts with /".into(),
        "room and token names: 1-64 (tokens 1-128) characters of A-Z a-z 0-9 . _ -".into(),
    ];
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&notice(&l));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_escaped_slash() {
        assert_eq!(parse(b"hello"), Ok(Input::Text(b"hello")));
        assert_eq!(parse(b""), Ok(Input::Text(b"")));
        assert_eq!(parse(b"//etc/passwd"), Ok(Input::Text(b"/etc/passwd")));
    }

    #[test]
    fn commands() {
        assert_eq!(parse(b"/join"), Ok(Input::Command(Command::Join(None))));
        assert_eq!(
            parse(b"/join  lab-1 "),
            Ok(Input::Command(Command::Join(Some("lab-1"))))
        );
        assert_eq!(
            parse(b"/nick ana"),
            Ok(Input::Command(Command::Nick("ana")))
        );
        assert_eq!(
            parse(b"/pipe k3y"),
            Ok(Input::Command(Command::Pipe("k3y", None)))
        );
        assert_eq!(
            parse(b"/pipe k3y send"),
            Ok(Input::Command(Command::Pipe("k3y", Some(Role::Send))))
        );
        assert_eq!(
            parse(b"/pipe k3y recv"),
            Ok(Input::Command(Command::Pipe("k3y", Some(Role::Recv))))
        );
        assert_eq!(
            parse(b"/pipe k3y any"),
            Ok(Input::Command(Command::Pipe("k3y", Some(Role::Any))))
        );
        for bad in ["/pipe k3y both", "/pipe k3y send x", "/pipe"] {
            assert_eq!(
                parse(bad.as_bytes()).unwrap_err(),
                "usage: /pipe TOKEN [send|recv|any]"
            );
        }
        assert_eq!(parse(b"/who"), Ok(Input::Command(Command::Who)));
        assert_eq!(parse(b"/leave"), Ok(Input::Command(Command::Leave)));
        assert_eq!(parse(b"/quit"), Ok(Input::Command(Command::Quit)));
        assert_eq!(parse(b"/help"), Ok(Input::Command(Command::Help)));
        assert_eq!(
            parse(b"/auth s3cret"),
            Ok(Input::Command(Command::Auth("s3cret")))
        );
        assert_eq!(parse(b"/auth").unwrap_err(), "usage: /auth SECRET");
    }

    #[test]
    fn errors_name_the_problem_and_the_fix() {
        let e = parse(b"/frobnicate").unwrap_err();
        assert!(
            e.contains("unknown command /frobnicate") && e.contains("/help"),
            "{e}"
        );
        let e = parse(b"/join a/b").unwrap_err();
        assert!(e.contains("bad room name") && e.contains("A-Z"), "{e}");
        let e = parse(b"/nick <x>").unwrap_err();
        assert!(e.contains("bad nickname"), "{e}");
        for bad in ["ab\u{202e}cd", "x\u{2066}", "\u{200f}", "a\u{2028}b"] {
            let e = parse(format!("/nick {bad}").as_bytes()).unwrap_err();
            assert!(e.contains("bad nickname"), "{bad:?}: {e}");
        }
        assert!(parse("/nick café".as_bytes()).is_ok());
        let e = parse(b"/join a b").unwrap_err();
        assert!(e.contains("one word"), "{e}");
        let e = parse(b"/who me").unwrap_err();
        assert!(e.contains("no argument"), "{e}");
        assert!(parse(b"/\xff").is_err());
    }

    #[test]
    fn addresses_print_as_the_log_shows_them() {
        for (addr, want) in [
            ("127.0.0.1:4004", "127.0.0.1:4004"),
            ("0.0.0.0:0", "0.0.0.0:0"),
            ("255.255.255.255:65535", "255.255.255.255:65535"),
            ("[::ffff:10.0.0.9]:80", "10.0.0.9:80"),
            ("[::1]:9", "[::1]:9"),
        ] {
            let mut buf = Vec::new();
            push_addr(&mut buf, &addr.parse().unwrap());
            assert_eq!(String::from_utf8(buf).unwrap(), want);
        }
    }

    #[test]
    fn roles_clash_only_with_themselves() {
        use Role::*;
        assert!(Role::clash(Some(Send), Some(Send)) && Role::clash(Some(Recv), Some(Recv)));
        for (a, b) in [
            (Some(Send), Some(Recv)),
            (Some(Send), Some(Any)),
            (Some(Any), Some(Any)),
            (Some(Recv), None),
            (None, None),
        ] {
            assert!(!Role::clash(a, b) && !Role::clash(b, a), "{a:?} {b:?}");
        }
    }

    #[test]
    fn token_limits() {
        let long = "a".repeat(MAX_TOKEN_BYTES);
        assert!(parse(format!("/pipe {long}").as_bytes()).is_ok());
        let too_long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(parse(format!("/pipe {too_long}").as_bytes()).is_err());
        let room = "r".repeat(MAX_ROOM_BYTES + 1);
        assert!(parse(format!("/join {room}").as_bytes()).is_err());
    }

    #[test]
    fn line_breaks_and_direction_controls_are_escaped() {
        let text = "a\u{2028}b\u{2029}c\u{202e}d\u{2066}e\u{2069}f\u{200f}g é 🙂";
        assert_eq!(
            escaped(text.as_bytes()),
            "a\\u{2028}b\\u{2029}c\\u{202e}d\\u{2066}e\\u{2069}f\\u{200f}g é 🙂"
        );
        assert_eq!(escaped(b"\t\x00\x7f\xc2\x9b"), "\\x09\\x00\\x7f\\u{9b}");
    }

    #[test]
    fn formats() {
        let ana = |buf: &mut Vec<u8>| buf.extend_from_slice(b"ana");
        assert_eq!(message(ana, b"hi"), b"<ana> hi\n");
        assert_eq!(message(ana, b"\x1b[2J"), b"<ana> \\x1b[2J\n");
        assert_eq!(message(ana, b"a\tb"), b"<ana> a\\x09b\n");
        assert_eq!(notice("pipe open"), b"* pipe open\n");
        assert_eq!(error("server full"), b"* error: server full\n");
        assert!(help(2)
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with(b"* ")));
    }
}
