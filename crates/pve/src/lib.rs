//! pve
