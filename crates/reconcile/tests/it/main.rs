//! Integration tests of the reconcile crate.
//!
//! - `fence`: no code outside this crate posts a mutating Proxmox call
//!   (DESIGN.md §3 invariant 9), checked on the workspace's sources.

mod fence;
