//! Integration tests of the privileged crate.
//!
//! - `sudoers`: the shipped allowlist accepts exactly the argv the crate builds (regex
//!   translation, crafted argv, proptest over valid inputs, `visudo -c`).
//! - `runner`: the real `SudoRunner` against a fake `sudo` on a temp-dir PATH: recorded argv,
//!   canned smartctl/sensors output, exit-status handling, timeout and spawn failure.

mod runner;
mod sudoers;
