//! Wormhole codes, and telling them from duet's own.
//!
//! A wormhole code is a nameplate (digits) and words, `7-crossover-clockwork`: apps make
//! them from the PGP word list, odd words in odd places. duet's codes are a number of four
//! digits or more and three words of duet's own list. `duet recv` takes either: a code in
//! PGP words is a wormhole code, anything else is duet's (its default), and a code that
//! fits both is asked about, never guessed ([`Kind`]).

use std::fmt;

use super::words::{EVEN, ODD};
use crate::code::WORDS;
use crate::{Code, Error};

/// A wormhole code: what SPAKE2 takes as the password, and its nameplate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WormholeCode {
    nameplate: String,
    code: String,
}

impl WormholeCode {
    /// Parses `NAMEPLATE-WORD…`, as typed: any words (a sender may choose its own with
    /// `wormhole send --code`), lower-cased, spaces around it ignored.
    pub fn parse(text: &str) -> Result<WormholeCode, String> {
        let code = text.trim().to_ascii_lowercase();
        let bad = || {
            format!(
                "bad wormhole code {:?}: it looks like 7-crossover-clockwork",
                crate::shown(text)
            )
        };
        let (nameplate, words) = code.split_once('-').ok_or_else(bad)?;
        let word_ok = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric());
        if nameplate.is_empty()
            || nameplate.len() > 9
            || !nameplate.bytes().all(|b| b.is_ascii_digit())
            || !words.split('-').all(word_ok)
        {
            return Err(bad());
        }
        Ok(WormholeCode {
            nameplate: nameplate.to_string(),
            code,
        })
    }

    /// A fresh code on an allocated nameplate: `words` random PGP words, odd ones first.
    pub fn generate(nameplate: &str, words: usize) -> Result<WormholeCode, Error> {
        let mut random = vec![0u8; words];
        getrandom::getrandom(&mut random).map_err(|e| Error::Random(e.to_string()))?;
        let mut code = nameplate.to_string();
        for (i, byte) in random.iter().enumerate() {
            let list = if i % 2 == 0 { &ODD } else { &EVEN };
            code.push('-');
            code.push_str(list[usize::from(*byte)]);
        }
        WormholeCode::parse(&code).map_err(Error::Refused)
    }

    /// The nameplate the code names on the mailbox server.
    pub fn nameplate(&self) -> &str {
        &self.nameplate
    }

    /// The whole code: SPAKE2's password.
    pub fn as_str(&self) -> &str {
        &self.code
    }
}

impl fmt::Display for WormholeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

/// Which protocol a code typed to `duet recv` is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Duet(Code),
    Wormhole(WormholeCode),
    /// It fits both forms: the person is asked which.
    Ambiguous(Code, WormholeCode),
}

impl Kind {
    /// Tells the two kinds apart by their form (see the module's docs).
    pub fn of(text: &str) -> Result<Kind, String> {
        let duet = text.parse::<Code>();
        let wormhole = WormholeCode::parse(text);
        match (duet, wormhole) {
            (Ok(d), Ok(w)) if is_pgp(&w) && is_duet_made(&d) => Ok(Kind::Ambiguous(d, w)),
            (_, Ok(w)) if is_pgp(&w) => Ok(Kind::Wormhole(w)),
            (Ok(d), _) => Ok(Kind::Duet(d)),
            (Err(e), _) => Err(e),
        }
    }
}

/// Words all from the PGP list (in either half: a word typed in the wrong place is still a
/// wormhole code, which the key exchange then finds wrong, rather than a duet code).
pub fn is_pgp(code: &WormholeCode) -> bool {
    pgp_words(code.code.split('-').skip(1))
}

/// [`is_pgp`] for the words alone (`Code::generate` never makes a code that is both).
pub(crate) fn pgp_words<'a>(words: impl Iterator<Item = &'a str>) -> bool {
    let mut words = words.peekable();
    words.peek().is_some() && words.all(|w| ODD.contains(&w) || EVEN.contains(&w))
}

/// The form `duet send` makes: four digits or more and three words of duet's list.
pub fn is_duet_made(code: &Code) -> bool {
    code.number() >= 1000
        && code.words.len() == 3
        && code.words.iter().all(|w| WORDS.contains(&w.as_str()))
}
