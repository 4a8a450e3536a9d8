//! The demo's voice: short lines stamped with the time since the demo started.

use std::time::Instant;

/// Prints narration lines with the elapsed time, continuation lines indented under the first.
pub struct Narrator {
    start: Instant,
}

impl Narrator {
    /// Starts the clock.
    pub fn new() -> Self {
        Narrator {
            start: Instant::now(),
        }
    }

    /// Seconds since [`Narrator::new`].
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// One stamped line; further lines of `text` are indented under it.
    pub fn say(&self, text: impl AsRef<str>) {
        println!("{}", stamp(self.elapsed_s(), text.as_ref()));
    }

    /// A step heading, after a blank line.
    pub fn heading(&self, text: &str) {
        println!();
        self.say(format!("== {text}"));
    }
}

impl Default for Narrator {
    fn default() -> Self {
        Narrator::new()
    }
}

fn stamp(elapsed_s: f64, text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out.push_str(&format!("[{elapsed_s:6.1}s] {line}"));
        } else {
            out.push_str(&format!("\n          {line}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_align_under_the_text() {
        assert_eq!(
            stamp(3.25, "first\nsecond"),
            "[   3.2s] first\n          second"
        );
    }
}
