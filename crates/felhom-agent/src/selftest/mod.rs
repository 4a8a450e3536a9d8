//! Selftests (seed 000 "Selftest modes"): `read` checks the API, the token and what the agent
//! will manage without changing anything; `task` runs one reversible snapshot → rollback →
//! delete cycle on a named guest and leaves it as it was. `task` is never implied by `read`.
//! `hub` runs one collect + report round trip with the hub, exactly as the daemon's poll loop
//! does, without starting the engine.
//!
//! Both return a [`Report`] of named checks; the CLI prints it and turns the first failure into
//! a one-line reason and a non-zero exit.

mod hub;
mod read;
mod task;

pub use hub::hub;
pub use read::read;
pub use task::{task, SelftestHandle, TaskOptions};

use std::fmt;

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed, with what was seen.
    Ok(String),
    /// Not applicable or deliberately not checked, with the reason.
    Skipped(String),
    /// Failed, with the reason.
    Failed(String),
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name, e.g. `permissions`.
    pub name: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

/// All checks of one selftest run, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &'static str, outcome: Outcome) {
        self.checks.push(Check { name, outcome });
    }

    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Outcome::Ok(detail.into()));
    }

    fn skip(&mut self, name: &'static str, reason: impl Into<String>) {
        self.push(name, Outcome::Skipped(reason.into()));
    }

    fn fail(&mut self, name: &'static str, reason: impl Into<String>) {
        self.push(name, Outcome::Failed(reason.into()));
    }

    /// The first failed check, as `name: reason`.
    pub fn first_failure(&self) -> Option<String> {
        self.checks.iter().find_map(|c| match &c.outcome {
            Outcome::Failed(reason) => Some(format!("{}: {reason}", c.name)),
            _ => None,
        })
    }

    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.first_failure().is_none()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let (tag, text) = match &c.outcome {
                Outcome::Ok(t) => ("ok  ", t),
                Outcome::Skipped(t) => ("skip", t),
                Outcome::Failed(t) => ("FAIL", t),
            };
            writeln!(f, "{tag}  {:<12} {text}", c.name)?;
        }
        Ok(())
    }
}

/// Renders a client error with its cause chain on one line, for a check's reason.
fn describe(err: &pve::Error) -> String {
    pve::error_chain(err)
}
