//! What one HTTP request or WebSocket came to, for its log record: every handler behind
//! the HTTP door (pipes, the page, the wormhole's WebSockets) returns one.

use crate::server::printer::Mood;

/// What one request came to, for its log record.
pub struct Answered {
    pub status: u16,
    pub bytes: u64,
    pub note: String,
    pub mood: Mood,
}

impl Answered {
    /// A response with no body worth counting: happy when it is a success.
    pub fn plain(status: u16, note: &str) -> Answered {
        let mood = match status {
            200..=299 => Mood::Happy,
            _ => Mood::Refused,
        };
        Answered {
            status,
            bytes: 0,
            note: note.to_string(),
            mood,
        }
    }

    /// How a WebSocket ended.
    pub fn ws(note: String, mood: Mood) -> Answered {
        Answered {
            status: 101,
            bytes: 0,
            note,
            mood,
        }
    }
}
