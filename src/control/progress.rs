//! What a long command shows while it works: a progress bar on a terminal
//! (pieces with ETA, points, bytes, rate), plain lines every few seconds
//! otherwise (both on stderr, so stdout keeps the summary or the JSON), and
//! the one-line summary at the end.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug, Clone)]
pub enum Display {
    /// A bar when stderr is a terminal, else plain lines.
    Auto,
    /// Nothing until the summary (tests).
    Quiet,
    /// Nothing shown; the counts go to a [`Meter`] that someone else reads
    /// (a job's heartbeat writes them to its record).
    Observed(Arc<Meter>),
}

/// Counts of a running command, readable from another task.
#[derive(Debug, Default)]
pub struct Meter {
    pub pieces_total: AtomicU64,
    pub pieces_done: AtomicU64,
    pub points: AtomicU64,
    pub bytes: AtomicU64,
}

impl Meter {
    /// `{"pieces_total","pieces_done","points","bytes"}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "pieces_total": self.pieces_total.load(Ordering::Relaxed),
            "pieces_done": self.pieces_done.load(Ordering::Relaxed),
            "points": self.points.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
        })
    }
}

/// Counts of a long command, shown as they change.
pub struct Progress {
    verb: &'static str,
    /// What a piece is called in messages ("pieces", "files").
    unit: &'static str,
    bar: Option<ProgressBar>,
    plain: bool,
    meter: Option<Arc<Meter>>,
    started: Instant,
    last_line: Instant,
    pub pieces_total: u64,
    pub pieces_done: u64,
    /// Pieces skipped because a previous run finished them.
    pub pieces_skipped: u64,
    pub points: u64,
    pub bytes: u64,
}

impl Progress {
    pub fn new(verb: &'static str, pieces_total: u64, display: Display) -> Progress {
        Progress::counting("pieces", verb, pieces_total, display)
    }

    /// Like [`Progress::new`], calling pieces `unit`.
    pub fn counting(
        unit: &'static str,
        verb: &'static str,
        pieces_total: u64,
        display: Display,
    ) -> Progress {
        let auto = matches!(display, Display::Auto);
        let terminal = auto && std::io::stderr().is_terminal();
        let meter = match display {
            Display::Observed(meter) => {
                meter.pieces_total.store(pieces_total, Ordering::Relaxed);
                Some(meter)
            }
            _ => None,
        };
        let bar = terminal.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(pieces_total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(&format!(
                "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{msg}} (ETA {{eta}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(verb);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress {
            verb,
            unit,
            bar,
            plain: auto && !terminal,
            meter,
            started: Instant::now(),
            last_line: Instant::now(),
            pieces_total,
            pieces_done: 0,
            pieces_skipped: 0,
            points: 0,
            bytes: 0,
        }
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.points as f64 / secs
    }

    fn counts(&self) -> String {
        format!(
            "{} points, {}, {} points/s",
            thousands(self.points),
            bytes(self.bytes),
            thousands(self.rate() as u64)
        )
    }

    /// Adds copied points and bytes.
    pub fn add(&mut self, points: u64, bytes: u64) {
        self.points += points;
        self.bytes += bytes;
        if let Some(meter) = &self.meter {
            meter.points.fetch_add(points, Ordering::Relaxed);
            meter.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        self.show();
    }

    /// One more piece finished (or skipped as finished before).
    pub fn piece_done(&mut self, skipped: bool) {
        self.pieces_done += 1;
        if let Some(meter) = &self.meter {
            meter.pieces_done.fetch_add(1, Ordering::Relaxed);
        }
        if skipped {
            self.pieces_skipped += 1;
        }
        if let Some(bar) = &self.bar {
            bar.set_position(self.pieces_done);
        }
        self.show();
    }

    fn show(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_message(self.counts());
        } else if self.plain && self.last_line.elapsed() >= PLAIN_EVERY {
            self.last_line = Instant::now();
            eprintln!(
                "{}: {}/{} {}, {}",
                self.verb,
                self.pieces_done,
                self.pieces_total,
                self.unit,
                self.counts()
            );
        }
    }

    /// A note shown above the bar (or as a line).
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                if self.plain {
                    eprintln!("{}: {text}", self.verb)
                }
            }
        }
    }

    /// Ends the display and returns the one-line summary.
    pub fn finish(&self) -> String {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let skipped = if self.pieces_skipped > 0 {
            format!(
                ", {} skipped as done before (--restart redoes them)",
                self.pieces_skipped
            )
        } else {
            String::new()
        };
        format!(
            "{}: {} points, {} in {:.1} s ({} points/s); {} {}{skipped}",
            self.verb,
            thousands(self.points),
            bytes(self.bytes),
            secs,
            thousands(self.rate() as u64),
            self.pieces_done,
            if self.pieces_done == 1 {
                self.unit.trim_end_matches('s')
            } else {
                self.unit
            },
        )
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1536 → "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn summary_names_the_counts() {
        let mut p = Progress::new("backfill", 3, Display::Quiet);
        p.add(10, 100);
        p.piece_done(false);
        p.piece_done(true);
        let s = p.finish();
        assert!(s.starts_with("backfill: 10 points, 100 B in "), "{s}");
        assert!(
            s.ends_with("2 pieces, 1 skipped as done before (--restart redoes them)"),
            "{s}"
        );
    }
}
