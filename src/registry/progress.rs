//! Progress of a push or pull, on standard error. Each layer gets one line
//! when it is done (bytes, time and rate, or skipped, mounted, resumed). On
//! a terminal a status line below them shows the bytes moved so far and
//! the current rate; without one there is nothing else, so logs stay
//! short. The final result goes to standard output, apart. One status
//! line and one line per layer need no progress-bar crate.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::human_bytes;

pub struct Progress {
    tty: bool,
    start: Instant,
    total_layers: usize,
    moved: AtomicU64,
    state: Mutex<State>,
}

struct State {
    done: usize,
    last_draw: Option<Instant>,
}

/// What became of one layer.
pub enum Outcome {
    /// Bytes sent or received.
    Moved {
        bytes: u64,
        verb: &'static str,
    },
    /// Already there: nothing moved.
    Skipped(String),
    Mounted(String),
}

const REDRAW: Duration = Duration::from_millis(200);

impl Progress {
    pub fn new(total_layers: usize) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            total_layers,
            moved: AtomicU64::new(0),
            state: Mutex::new(State {
                done: 0,
                last_draw: None,
            }),
        }
    }

    /// Counts bytes moved, redrawing the status line on a terminal.
    pub fn add(&self, bytes: u64) {
        self.moved.fetch_add(bytes, Ordering::Relaxed);
        if !self.tty {
            return;
        }
        let mut state = self.state.lock().unwrap();
        if state.last_draw.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        state.last_draw = Some(Instant::now());
        self.draw_status(&state);
    }

    /// Takes back bytes counted for a try that is being redone.
    pub fn sub(&self, bytes: u64) {
        self.moved.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn draw_status(&self, state: &State) {
        let moved = self.moved.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{}/{} layers, {} at {}/s",
            state.done,
            self.total_layers,
            human_bytes(moved),
            human_bytes((moved as f64 / secs) as u64)
        );
        let _ = err.flush();
    }

    /// Reports a finished layer: `index` counts from 0.
    pub fn layer(&self, index: usize, digest: &str, outcome: Outcome, took: Duration) {
        let short = digest.get(..19).unwrap_or(digest);
        let what = match outcome {
            Outcome::Moved { bytes, verb } => {
                let secs = took.as_secs_f64().max(0.001);
                format!(
                    "{} {verb} in {:.1} s ({}/s)",
                    human_bytes(bytes),
                    took.as_secs_f64(),
                    human_bytes((bytes as f64 / secs) as u64)
                )
            }
            Outcome::Skipped(why) => format!("skipped ({why})"),
            Outcome::Mounted(from) => format!("mounted from {from}"),
        };
        let mut state = self.state.lock().unwrap();
        state.done += 1;
        let mut err = std::io::stderr().lock();
        let clear = if self.tty { "\r\x1b[K" } else { "" };
        let _ = writeln!(
            err,
            "{clear}layer {}/{} {short} {what}",
            index + 1,
            self.total_layers
        );
        drop(err);
        if self.tty {
            self.draw_status(&state);
        }
    }

    /// Clears the status line.
    pub fn finish(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
