//! The text log: one line per record, the seed's `ip:port -> msg` for client lines.
//!
//! This is the only place that knows the text format. Client text and room names pass
//! through [`push_escaped`], so no control character reaches a terminal raw.

use std::io::{self, Write as _};

use super::record::{Addr, HttpRecord, Mood, PipeRecord, Record, Stats, TransitRecord};
use crate::proto::{push_addr, push_escaped};

/// Formats one record as one log line (with its newline) onto `buf`.
pub fn format_record(buf: &mut Vec<u8>, record: &Record) {
    let out = match record {
        Record::Line { peer, text } => {
            // The hot path: no `format!`, no intermediate String.
            push_addr(buf, peer);
            buf.extend_from_slice(b" -> ");
            push_escaped(buf, text);
            Ok(())
        }
        Record::Listening { port } => write!(buf, "waiting for clients on port {port}..."),
        Record::Connected { peer } => write!(buf, "client connected: {}", Addr(peer)),
        Record::Secured { peer, how } => write!(buf, "client '{}' secured: {how}", Addr(peer)),
        Record::Closed { peer, reason, mood } => match mood {
            Mood::Happy => write!(buf, "client '{}' left the session.", Addr(peer)),
            _ => write!(buf, "client '{}' dropped: {reason}", Addr(peer)),
        },
        Record::ClientError { peer, error } => {
            write!(buf, "client '{}' error: {error}", Addr(peer))
        }
        Record::Refused { peer, reason, .. } => {
            write!(buf, "client '{}' error: {reason}", Addr(peer))
        }
        Record::AcceptError { error, retry } => {
            let ms = retry.as_millis();
            write!(buf, "accept error: {error} (retrying in {ms} ms)")
        }
        Record::Room { room, event } => {
            buf.extend_from_slice(b"room ");
            push_escaped(buf, room.as_bytes());
            write!(buf, ": {event}")
        }
        Record::PipeOpen { token, a, b } => {
            write!(buf, "pipe {token}: {} <-> {} open", Addr(a), Addr(b))
        }
        Record::PipeClosed(p) => pipe_closed(buf, p),
        Record::PipeAbandoned {
            token,
            peer,
            reason,
            ..
        } => {
            write!(buf, "pipe {token}: {} {reason}", Addr(peer))
        }
        Record::Http(h) => http(buf, h),
        Record::Transit(t) => transit(buf, t),
        Record::Server { message } => write!(buf, "{message}"),
        Record::Mailbox { mailbox, result } => write!(buf, "wormhole mailbox {mailbox}: {result}"),
        Record::Stats(s) => stats(buf, s),
    };
    // Writing into a Vec cannot fail.
    out.expect("a Vec takes every write");
    buf.push(b'\n');
}

fn pipe_closed(buf: &mut Vec<u8>, p: &PipeRecord) -> io::Result<()> {
    let (token, a, b, reason) = (&p.token, Addr(&p.a), Addr(&p.b), &p.reason);
    let (a_to_b, b_to_a, secs) = (p.a_to_b, p.b_to_a, p.secs);
    write!(
        buf,
        "pipe {token}: closed: {a} -> {b} {a_to_b} bytes, {b} -> {a} {b_to_a} bytes, \
         {secs:.3} s, {reason}"
    )
}

fn http(buf: &mut Vec<u8>, h: &HttpRecord) -> io::Result<()> {
    let (peer, method, path, status) = (Addr(&h.peer), &h.method, &h.path, h.status);
    let (bytes, secs, note) = (h.bytes, h.secs, &h.note);
    write!(
        buf,
        "client '{peer}' http {method} {path}: {status}, {bytes} bytes in {secs:.3} s ({note})"
    )
}

fn transit(buf: &mut Vec<u8>, t: &TransitRecord) -> io::Result<()> {
    let token = if t.token.is_empty() { "-" } else { &t.token };
    let with = match t.partner {
        Some(partner) => format!(" <-> {}", Addr(&partner)),
        None => String::new(),
    };
    let (peer, mood, bytes, secs, reason) =
        (Addr(&t.peer), t.mood.as_str(), t.bytes, t.secs, &t.reason);
    write!(
        buf,
        "transit {token}: {peer}{with} {mood}, {bytes} bytes in {secs:.3} s ({reason})"
    )
}

fn stats(buf: &mut Vec<u8>, s: &Stats) -> io::Result<()> {
    let Stats {
        conns,
        rooms,
        pipes_waiting,
        pipes_open,
        lines,
        refused,
        auth_failed,
        auth_lockouts,
        pipes_closed,
        piped_bytes,
        cluster,
    } = s;
    write!(
        buf,
        "stats: {conns} connections, {rooms} rooms, {pipes_waiting} pipes waiting, \
         {pipes_open} pipes open, {lines} lines, {refused} refused, {pipes_closed} pipes closed \
         carrying {piped_bytes} bytes, {auth_failed} failed /auth, {auth_lockouts} lock-outs"
    )?;
    match cluster {
        Some(c) => write!(
            buf,
            "; cluster: {} nodes, {} connections",
            c.nodes, c.connections
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;

    fn fmt(record: Record) -> String {
        let mut buf = Vec::new();
        format_record(&mut buf, &record);
        String::from_utf8(buf).unwrap()
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5555".parse().unwrap()
    }

    #[test]
    fn seed_formats_are_kept() {
        assert_eq!(
            fmt(Record::Listening { port: 4004 }),
            "waiting for clients on port 4004...\n"
        );
        assert_eq!(
            fmt(Record::Connected { peer: peer() }),
            "client connected: 127.0.0.1:5555\n"
        );
        assert_eq!(
            fmt(Record::Line {
                peer: peer(),
                text: b"hello".to_vec()
            }),
            "127.0.0.1:5555 -> hello\n"
        );
        assert_eq!(
            fmt(Record::Closed {
                peer: peer(),
                reason: "left".into(),
                mood: Mood::Happy
            }),
            "client '127.0.0.1:5555' left the session.\n"
        );
        assert_eq!(
            fmt(Record::Closed {
                peer: peer(),
                reason: "idle timeout (5 s)".into(),
                mood: Mood::TimedOut
            }),
            "client '127.0.0.1:5555' dropped: idle timeout (5 s)\n"
        );
    }

    #[test]
    fn mapped_ipv6_is_logged_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:99".parse().unwrap();
        assert_eq!(
            fmt(Record::Connected { peer: mapped }),
            "client connected: 10.1.2.3:99\n"
        );
        let v6: SocketAddr = "[::1]:99".parse().unwrap();
        assert_eq!(
            fmt(Record::Connected { peer: v6 }),
            "client connected: [::1]:99\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let text = b"red \x1b[31mX\x1b[0m bell\x07 del\x7f tab\tok".to_vec();
        assert_eq!(
            fmt(Record::Line { peer: peer(), text }),
            "127.0.0.1:5555 -> red \\x1b[31mX\\x1b[0m bell\\x07 del\\x7f tab\\x09ok\n"
        );
    }

    #[test]
    fn c1_controls_and_invalid_utf8() {
        // U+009B is a one-character CSI on some terminals.
        let text = "a\u{9b}31mb".as_bytes().to_vec();
        assert_eq!(
            fmt(Record::Line { peer: peer(), text }),
            "127.0.0.1:5555 -> a\\u{9b}31mb\n"
        );
        let text = b"caf\xc3\xa9 \xff\xfe end".to_vec();
        assert_eq!(
            fmt(Record::Line { peer: peer(), text }),
            "127.0.0.1:5555 -> caf\u{e9} \u{fffd}\u{fffd} end\n"
        );
    }

    #[test]
    fn room_names_are_escaped_too() {
        let room: Arc<str> = Arc::from("a\x1bb");
        assert_eq!(
            fmt(Record::Room {
                room,
                event: "x joined".into()
            }),
            "room a\\x1bb: x joined\n"
        );
    }

    #[test]
    fn stats_with_and_without_a_cluster() {
        let mut s = Stats {
            conns: 3,
            lines: 7,
            ..Stats::default()
        };
        let alone = fmt(Record::Stats(s.clone()));
        assert!(
            alone.starts_with("stats: 3 connections, 0 rooms"),
            "{alone}"
        );
        assert!(
            alone.contains(", 7 lines,") && alone.ends_with("0 lock-outs\n"),
            "{alone}"
        );
        s.cluster = Some(super::super::record::ClusterStats {
            nodes: 2,
            connections: 9,
        });
        let clustered = fmt(Record::Stats(s));
        assert!(clustered.ends_with("lock-outs; cluster: 2 nodes, 9 connections\n"));
    }
}
