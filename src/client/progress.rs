//! Progress for `duet send` and `duet recv`: a live line on a terminal; otherwise (a log
//! file, CI) a plain line every [`PLAIN_EVERY`], as curl and rsync do; nothing with
//! `--quiet`.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the live line is redrawn.
const REDRAW: Duration = Duration::from_millis(100);
/// How often a plain progress line is printed when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Progress {
    verb: &'static str,
    total: u64,
    done: u64,
    start: Instant,
    drawn: Instant,
    live: bool,
    quiet: bool,
}

impl Progress {
    /// `verb` is "sending" or "receiving".
    pub fn new(verb: &'static str, total: u64, quiet: bool) -> Progress {
        let now = Instant::now();
        Progress {
            verb,
            total,
            done: 0,
            start: now,
            drawn: now,
            live: !quiet && io::stderr().is_terminal(),
            quiet,
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.quiet {
            return;
        }
        let every = if self.live { REDRAW } else { PLAIN_EVERY };
        if self.drawn.elapsed() < every {
            return;
        }
        self.drawn = Instant::now();
        let status = self.status(self.start.elapsed());
        match self.live {
            true => eprint!("\r\x1b[2K{status}"),
            false => eprintln!("{status}"),
        }
        io::stderr().flush().ok();
    }

    /// `sending  42%  1.2 GiB of 2.8 GiB  110.0 MiB/s  ETA 15 s`, after `elapsed`.
    fn status(&self, elapsed: Duration) -> String {
        let rate = self.done as f64 / elapsed.as_secs_f64().max(1e-3);
        let eta = match rate > 0.0 {
            true => format!(
                "{:.0} s",
                (self.total - self.done.min(self.total)) as f64 / rate
            ),
            false => "?".into(),
        };
        let pct = self.done * 100 / self.total.max(1);
        format!(
            "{} {pct:>3}%  {} of {}  {}/s  ETA {eta}",
            self.verb,
            size(self.done),
            size(self.total),
            size(rate as u64)
        )
    }

    /// The closing line: what moved, how fast.
    pub fn finish(&mut self, what: &str) {
        if self.live {
            eprint!("\r\x1b[2K");
        }
        if !self.quiet {
            let secs = self.start.elapsed().as_secs_f64();
            let rate = self.done as f64 / secs.max(1e-3);
            eprintln!("{what} in {secs:.1} s ({}/s)", size(rate as u64));
        }
    }
}

/// `1.5 GiB`, `320 KiB`, `12 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_says_how_far_how_fast_and_how_long() {
        let mut p = Progress::new("sending", 4 << 20, true);
        p.add(1 << 20);
        assert_eq!(
            p.status(Duration::from_secs(1)),
            "sending  25%  1.0 MiB of 4.0 MiB  1.0 MiB/s  ETA 3 s"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1 << 30), "1.0 GiB");
    }
}
