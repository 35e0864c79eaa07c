//! `--log-format json`: one JSON object per record, for log shippers and `jq`.
//!
//! Every object has `time` (RFC 3339, UTC, milliseconds) and `event`; the other fields depend
//! on the event. Every connection ends with exactly one record that has a `mood`: `close`,
//! `refused`, `pipe_close` (for both of its ends) or `pipe_abandoned`. Client text is
//! decoded as UTF-8 (invalid bytes become U+FFFD) and every control character is escaped, so
//! a line of JSON never breaks and never reaches a terminal raw. With `--cluster` every
//! object ends with the node's id (`node`), so that the logs of many nodes can be merged.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Addr, Record};

/// Formats one record as one JSON line onto `buf`.
/// `node`: with `--cluster`, this node's id, added to every record.
pub fn format_record(
    buf: &mut Vec<u8>,
    record: &Record,
    lines: u64,
    now: SystemTime,
    node: Option<&str>,
) {
    let mut o = Object::start(buf, now);
    match record {
        Record::Listening { port } => {
            o.str("event", "listening");
            o.num("port", *port);
        }
        Record::Connected { peer } => {
            o.str("event", "connect");
            o.peer("peer", peer);
        }
        Record::Secured { peer, how } => {
            o.str("event", "tls");
            o.peer("peer", peer);
            o.str("tls", how);
        }
        Record::Line { peer, text } => {
            o.str("event", "line");
            o.peer("peer", peer);
            o.bytes("text", text);
        }
        Record::Left { peer } => {
            o.str("event", "close");
            o.peer("peer", peer);
            o.str("reason", "left");
            o.str("mood", "happy");
        }
        Record::Dropped { peer, reason, mood } => {
            o.str("event", "close");
            o.peer("peer", peer);
            o.str("reason", reason);
            o.str("mood", mood.as_str());
        }
        Record::ClientError { peer, error } => {
            o.str("event", "error");
            o.peer("peer", peer);
            o.str("error", error);
        }
        Record::Refused { peer, error } => {
            o.str("event", "refused");
            o.peer("peer", peer);
            o.str("reason", error);
            o.str("mood", "refused");
        }
        Record::AcceptError { error, retry } => {
            o.str("event", "accept_error");
            o.str("error", &error.to_string());
            o.num("retry_ms", retry.as_millis());
        }
        Record::Room { room, event } => {
            o.str("event", "room");
            o.str("room", room);
            o.str("message", event);
        }
        Record::PipeOpen { token, a, b } => {
            o.str("event", "pipe_open");
            o.str("pipe", token);
            o.peer("peer", a);
            o.peer("peer_b", b);
        }
        Record::PipeClosed {
            token,
            a,
            b,
            a_to_b,
            b_to_a,
            secs,
            reason,
            mood,
        } => {
            o.str("event", "pipe_close");
            o.str("pipe", token);
            o.peer("peer", a);
            o.peer("peer_b", b);
            o.num("bytes_to_b", a_to_b);
            o.num("bytes_to_a", b_to_a);
            o.num("secs", format_args!("{secs:.3}"));
            o.str("reason", reason);
            o.str("mood", mood.as_str());
        }
        Record::PipeAbandoned {
            token,
            peer,
            reason,
            mood,
        } => {
            o.str("event", "pipe_abandoned");
            o.str("pipe", token);
            o.peer("peer", peer);
            o.str("reason", reason);
            o.str("mood", mood.as_str());
        }
        Record::Http(h) => {
            o.str("event", "http");
            o.peer("peer", &h.peer);
            o.str("method", &h.method);
            o.str("path", &h.path);
            o.num("status", h.status);
            o.num("bytes", h.bytes);
            o.num("secs", format_args!("{:.3}", h.secs));
            o.str("reason", &h.note);
            o.str("mood", h.mood.as_str());
        }
        Record::Transit(t) => {
            o.str("event", "transit");
            o.str("token", &t.token);
            o.peer("peer", &t.peer);
            if let Some(partner) = &t.partner {
                o.peer("peer_b", partner);
            }
            o.num("bytes", t.bytes);
            o.num("secs", format_args!("{:.3}", t.secs));
            o.str("reason", &t.reason);
            o.str("mood", t.mood.as_str());
        }
        Record::Server { message } => {
            o.str("event", "server");
            o.str("message", message);
        }
        Record::Mailbox { mailbox, result } => {
            o.str("event", "mailbox");
            o.str("mailbox", mailbox);
            o.str("result", result);
        }
        Record::Stats(s) => {
            o.str("event", "stats");
            o.num("connections", s.conns);
            o.num("rooms", s.rooms);
            o.num("pipes_waiting", s.pipes_waiting);
            o.num("pipes_open", s.pipes_open);
            o.num("lines", lines);
            o.num("refused", s.refused);
            o.num("auth_failed", s.auth_failed);
            o.num("auth_lockouts", s.auth_lockouts);
            o.num("pipes_closed", s.pipes_closed);
            o.num("piped_bytes", s.piped_bytes);
            if let Some((nodes, conns)) = s.cluster {
                o.num("cluster_nodes", nodes);
                o.num("cluster_connections", conns);
            }
        }
    }
    if let Some(node) = node {
        o.str("node", node);
    }
    o.end();
}

/// A JSON object being written: fields are appended in order.
struct Object<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Object<'a> {
    fn start(buf: &'a mut Vec<u8>, now: SystemTime) -> Object<'a> {
        buf.extend_from_slice(b"{\"time\":\"");
        push_time(buf, now);
        buf.push(b'"');
        Object { buf }
    }

    fn key(&mut self, key: &str) {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_string(self.buf, value);
    }

    fn bytes(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        push_string(self.buf, &String::from_utf8_lossy(value));
    }

    fn peer(&mut self, key: &str, peer: &SocketAddr) {
        self.str(key, &Addr(peer).to_string());
    }

    fn num(&mut self, key: &str, value: impl std::fmt::Display) {
        self.key(key);
        // Writing into a Vec cannot fail.
        write!(self.buf, "{value}").ok();
    }

    fn end(self) {
        self.buf.extend_from_slice(b"}\n");
    }
}

/// A JSON string, with every control character (C0, DEL, C1) escaped.
fn push_string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let mut tmp = [0u8; 4];
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            '\0'..='\x1f' | '\x7f'..='\u{9f}' => {
                write!(buf, "\\u{:04x}", c as u32).ok();
            }
            _ => buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes()),
        }
    }
    buf.push(b'"');
}

/// `2026-11-25T01:02:03.456Z`.
fn push_time(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let mut s = String::with_capacity(24);
    write!(
        s,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
    .ok();
    buf.extend_from_slice(s.as_bytes());
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::printer::{Mood, Stats};
    use std::time::Duration;

    fn fmt(record: Record) -> String {
        let mut buf = Vec::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_764_032_523_456);
        format_record(&mut buf, &record, 7, t, None);
        String::from_utf8(buf).unwrap()
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5555".parse().unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
    }

    #[test]
    fn records() {
        assert_eq!(
            fmt(Record::Line {
                peer: peer(),
                text: b"say \"hi\"\\ \x1b[2J \xff".to_vec()
            }),
            "{\"time\":\"2025-11-25T01:02:03.456Z\",\"event\":\"line\",\"peer\":\"127.0.0.1:5555\",\
             \"text\":\"say \\\"hi\\\"\\\\ \\u001b[2J \u{fffd}\"}\n"
        );
        assert_eq!(
            fmt(Record::Dropped {
                peer: peer(),
                reason: "idle timeout (5 s)".into(),
                mood: Mood::TimedOut
            }),
            "{\"time\":\"2025-11-25T01:02:03.456Z\",\"event\":\"close\",\"peer\":\"127.0.0.1:5555\",\
             \"reason\":\"idle timeout (5 s)\",\"mood\":\"timed_out\"}\n"
        );
        let stats = fmt(Record::Stats(Stats {
            conns: 3,
            ..Stats::default()
        }));
        assert!(
            stats.contains("\"event\":\"stats\",\"connections\":3,")
                && stats.contains("\"lines\":7,"),
            "{stats}"
        );
        assert_eq!(
            fmt(Record::Mailbox {
                mailbox: "mb1".into(),
                result: "happy"
            }),
            "{\"time\":\"2025-11-25T01:02:03.456Z\",\"event\":\"mailbox\",\"mailbox\":\"mb1\",\
             \"result\":\"happy\"}\n"
        );
        let mut buf = Vec::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_764_032_523_456);
        let record = Record::Server {
            message: "hi".into(),
        };
        format_record(&mut buf, &record, 0, t, Some("ab12"));
        assert!(buf.ends_with(b",\"node\":\"ab12\"}\n"), "{buf:?}");
    }
}
