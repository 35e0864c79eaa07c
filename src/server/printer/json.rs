//! `--log-format json`: one JSON object per record, for log shippers and `jq`.
//!
//! Every object has `time` (RFC 3339, UTC, milliseconds) and `event`; the other fields are
//! the record's own, derived from its type (`record.rs`). With `--cluster` every object ends
//! with the node's id (`node`), so that the logs of many nodes can be merged. serde_json
//! escapes quotes, backslashes and C0 controls; the formatter here escapes DEL and the C1
//! controls as well (U+009B is a one-character CSI on some terminals), so a line of JSON
//! never breaks and never reaches a terminal raw.

use std::io;
use std::time::SystemTime;

use serde::Serialize;

use super::record::Record;

/// Formats one record as one JSON line onto `buf`.
/// `node`: with `--cluster`, this node's id, added to every record.
pub fn format_record(buf: &mut Vec<u8>, record: &Record, now: SystemTime, node: Option<&str>) {
    let entry = Entry {
        time: humantime::format_rfc3339_millis(now),
        record,
        node,
    };
    let mut out = serde_json::Serializer::with_formatter(&mut *buf, EscapeControls);
    // Serializing into a Vec fails only if a Serialize impl does, and the records' are
    // derived from strings and numbers.
    entry
        .serialize(&mut out)
        .expect("a record serializes to JSON");
    buf.push(b'\n');
}

/// One line of the JSON log.
#[derive(Serialize)]
struct Entry<'a> {
    #[serde(serialize_with = "display")]
    time: humantime::Rfc3339Timestamp,
    #[serde(flatten)]
    record: &'a Record,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
}

fn display<S: serde::Serializer>(t: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// serde_json's compact output, with DEL and C1 controls escaped too.
struct EscapeControls;

impl serde_json::ser::Formatter for EscapeControls {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(|c| ('\x7f'..='\u{9f}').contains(&c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().expect("find stopped at a char");
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::server::printer::record::{ClusterStats, Mood, PipeRecord, Stats, TransitRecord};

    fn fmt(record: Record) -> String {
        let mut buf = Vec::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_764_032_523_456);
        format_record(&mut buf, &record, t, None);
        String::from_utf8(buf).unwrap()
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5555".parse().unwrap()
    }

    #[test]
    fn lines_are_escaped_and_stamped() {
        assert_eq!(
            fmt(Record::Line {
                peer: peer(),
                text: "say \"hi\"\\ \x1b[2J \u{9b}1m \x7f".bytes().chain([0xff]).collect()
            }),
            "{\"time\":\"2025-11-25T01:02:03.456Z\",\"event\":\"line\",\"peer\":\"127.0.0.1:5555\",\
             \"text\":\"say \\\"hi\\\"\\\\ \\u001b[2J \\u009b1m \\u007f\u{fffd}\"}\n"
        );
    }

    #[test]
    fn closes_and_mailboxes() {
        assert_eq!(
            fmt(Record::Closed {
                peer: "[::ffff:10.0.0.1]:7".parse().unwrap(),
                reason: "idle timeout (5 s)".into(),
                mood: Mood::TimedOut
            }),
            "{\"time\":\"2025-11-25T01:02:03.456Z\",\"event\":\"close\",\"peer\":\"10.0.0.1:7\",\
             \"reason\":\"idle timeout (5 s)\",\"mood\":\"timed_out\"}\n"
        );
        assert_eq!(
            fmt(Record::Mailbox {
                mailbox: "mb1".into(),
                result: "happy"
            }),
            "{\"time\":\"2025-11-25T01:02:03.456Z\",\"event\":\"mailbox\",\"mailbox\":\"mb1\",\
             \"result\":\"happy\"}\n"
        );
    }

    #[test]
    fn stats_transits_and_the_node() {
        let stats = fmt(Record::Stats(Stats {
            conns: 3,
            lines: 7,
            cluster: Some(ClusterStats {
                nodes: 2,
                connections: 9,
            }),
            ..Stats::default()
        }));
        assert!(
            stats.contains("\"event\":\"stats\",\"connections\":3,")
                && stats.contains("\"lines\":7,")
                && stats.ends_with("\"cluster_nodes\":2,\"cluster_connections\":9}\n"),
            "{stats}"
        );
        let transit = fmt(Record::Transit(Box::new(TransitRecord {
            token: "abcd".into(),
            peer: peer(),
            partner: None,
            bytes: 10,
            secs: 1.23456,
            reason: "done".into(),
            mood: Mood::Happy,
        })));
        assert!(
            transit.contains("\"bytes\":10,\"secs\":1.235,"),
            "{transit}"
        );
        assert!(!transit.contains("peer_b"), "{transit}");
        let pipe = fmt(Record::PipeClosed(Box::new(PipeRecord {
            token: "t".into(),
            a: peer(),
            b: peer(),
            a_to_b: 5,
            b_to_a: 6,
            secs: 2.0,
            reason: "done".into(),
            mood: Mood::Happy,
        })));
        assert!(
            pipe.contains("\"event\":\"pipe_close\",\"pipe\":\"t\",\"peer\":\"127.0.0.1:5555\",")
                && pipe.contains("\"bytes_to_b\":5,\"bytes_to_a\":6,\"secs\":2.0,"),
            "{pipe}"
        );
        let mut buf = Vec::new();
        let record = Record::Server {
            message: "hi".into(),
        };
        format_record(&mut buf, &record, UNIX_EPOCH, Some("ab12"));
        assert!(buf.ends_with(b",\"node\":\"ab12\"}\n"), "{buf:?}");
        assert!(
            buf.starts_with(b"{\"time\":\"1970-01-01T00:00:00.000Z\""),
            "{buf:?}"
        );
    }
}
