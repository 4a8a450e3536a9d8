//! pve-schema
