//! Transfer codes (`4821-apple-river-stone`): the number names the relay's pipe
//! (`duet-send-4821`), so the relay sees only that; the whole code is SPAKE2's password.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Attempts at 4-digit numbers before `duet send` widens them (see [`Code::renumbered`]).
pub const FOUR_DIGIT_TRIES: u32 = 4;

/// Short words for codes: easy to say, hard to mishear.
pub(crate) const WORDS: &[&str] = &[
    "acid", "acorn", "actor", "agent", "alarm", "album", "alien", "amber", "angle", "apple",
    "apron", "arena", "arrow", "atlas", "attic", "audio", "bacon", "badge", "bagel", "baker",
    "bamboo", "banjo", "baron", "basil", "beach", "beard", "berry", "bison", "blade", "blaze",
    "bloom", "board", "bonus", "booth", "brick", "bride", "broom", "brush", "bugle", "cabin",
    "cable", "cactus", "camel", "candy", "canoe", "cargo", "carpet", "castle", "cedar", "chalk",
    "cherry", "chess", "chief", "choir", "cider", "cinema", "circus", "citrus", "clock", "cloud",
    "clover", "cobra", "cocoa", "comet", "coral", "cotton", "crane", "crayon", "cricket", "crown",
    "cuckoo", "dahlia", "daisy", "delta", "denim", "desert", "diamond", "diesel", "dingo", "disco",
    "dolphin", "donkey", "dragon", "drum", "eagle", "easel", "echo", "elbow", "elder", "ember",
    "emerald", "engine", "falcon", "fable", "feather", "fender", "ferry", "fiddle", "figure",
    "flame", "flute", "forest", "fossil", "fox", "frost", "galaxy", "garden", "garlic", "gecko",
    "ginger", "glacier", "globe", "goose", "grape", "gravel", "guitar", "hammer", "harbor",
    "hazel", "helmet", "hermit", "honey", "hornet", "husky", "igloo", "indigo", "iris", "island",
    "ivory", "jacket", "jaguar", "jasmine", "jelly", "jewel", "jigsaw", "juggler", "jungle",
    "kayak", "kettle", "kiwi", "koala", "ladder", "lagoon", "lantern", "lemon", "lentil", "lilac",
    "lizard", "llama", "lobster", "locket", "lotus", "magnet", "mango", "maple", "marble",
    "meadow", "melon", "meteor", "mimosa", "mirror", "mocha", "monkey", "mosaic", "muffin",
    "nectar", "needle", "nickel", "noodle", "nutmeg", "oasis", "ocean", "olive", "onion", "opal",
    "orbit", "orchid", "otter", "oyster", "paddle", "panda", "paper", "parrot", "peach", "pebble",
    "pepper", "piano", "pickle", "pilot", "planet", "plum", "pocket", "poem", "potato", "prism",
    "puffin", "pumpkin", "puzzle", "quartz", "quill", "rabbit", "radar", "radish", "raven", "reef",
    "ribbon", "river", "robin", "rocket", "saddle", "salmon", "sapphire", "scarf", "shadow",
    "shell", "silver", "socket", "spider", "spoon", "squid", "stone", "summit", "sunset", "tango",
    "teapot", "thunder", "tiger", "timber", "tomato", "tulip", "tundra", "turtle", "umbrella",
    "valley", "velvet", "violin", "volcano", "wafer", "walnut", "walrus", "willow", "window",
    "wizard", "yogurt", "zebra", "zephyr", "anchor", "beacon", "bridge", "canyon", "copper",
    "dune", "fjord", "gazelle", "harp", "jade",
];

/// A transfer code: `NAMEPLATE-WORD-WORD-WORD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    nameplate: u32,
    pub(crate) words: Vec<String>,
}

impl Code {
    /// A fresh random code: a number from 1000 to 9999 and three words, never all three
    /// from the PGP list in a wormhole code's places (so `duet recv` never has to ask which
    /// kind of code it is; see [`crate::wormhole::Kind`]).
    pub fn generate() -> Result<Code, Error> {
        loop {
            let code = Code::with_digits(4)?;
            if !crate::wormhole::code::pgp_words(code.words.iter().map(String::as_str)) {
                return Ok(code);
            }
        }
    }

    /// A random code whose number has `digits` digits (4 to 9).
    fn with_digits(digits: u32) -> Result<Code, Error> {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(|e| Error::Random(e.to_string()))?;
        let low = 10u32.pow(digits.clamp(4, 9) - 1);
        let nameplate =
            low + u32::from_le_bytes(random[..4].try_into().expect("4 bytes")) % (9 * low);
        let words = random[4..7]
            .iter()
            .map(|&b| WORDS[usize::from(b) % WORDS.len()].to_string())
            .collect();
        Ok(Code { nameplate, words })
    }

    /// The same words under another number, for attempt `attempt` (1, 2, …) after the
    /// number before was in use: 4 digits for the first [`FOUR_DIGIT_TRIES`] attempts, then
    /// one digit more every few, so that a crowded relay still gives a free number quickly.
    pub fn renumbered(&self, attempt: u32) -> Result<Code, Error> {
        let digits = 4 + attempt / FOUR_DIGIT_TRIES;
        let fresh = Code::with_digits(digits)?;
        Ok(Code {
            nameplate: fresh.nameplate,
            words: self.words.clone(),
        })
    }

    /// The number: what the relay sees of the code.
    pub fn number(&self) -> u32 {
        self.nameplate
    }

    /// The pipe token: only the number, never the words.
    pub fn token(&self) -> String {
        format!("duet-send-{}", self.nameplate)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.nameplate)?;
        for w in &self.words {
            write!(f, "-{w}")?;
        }
        Ok(())
    }
}

impl FromStr for Code {
    type Err = String;

    fn from_str(s: &str) -> Result<Code, String> {
        let bad = || format!("bad code {s:?}: it looks like 4821-apple-river-stone");
        let mut parts = s.trim().split('-');
        let nameplate: u32 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let words: Vec<String> = parts.map(|w| w.to_ascii_lowercase()).collect();
        let word_ok = |w: &String| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric());
        if nameplate == 0 || words.len() < 2 || !words.iter().all(word_ok) {
            return Err(bad());
        }
        Ok(Code { nameplate, words })
    }
}
