//! Progress for `duet send` and `duet recv`: a live line on a terminal, plain lines
//! otherwise, nothing with `--quiet`.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the live line is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

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
        if self.live && self.drawn.elapsed() >= REDRAW {
            self.drawn = Instant::now();
            let secs = self.start.elapsed().as_secs_f64().max(1e-3);
            let rate = self.done as f64 / secs;
            let eta = if rate > 0.0 {
                format!(
                    "{:.0} s",
                    (self.total - self.done.min(self.total)) as f64 / rate
                )
            } else {
                "?".into()
            };
            let pct = self.done * 100 / self.total.max(1);
            eprint!(
                "\r\x1b[2K{} {pct:>3}%  {} of {}  {}/s  ETA {eta}",
                self.verb,
                size(self.done),
                size(self.total),
                size(rate as u64)
            );
            io::stderr().flush().ok();
        }
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
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1 << 30), "1.0 GiB");
    }
}
