//! privileged
