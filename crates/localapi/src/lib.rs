//! The per-guest local API (seed §6, DESIGN.md §3.6 and §4.4a): HTTPS for the controllers
//! running inside the guests, where a bearer token decides the guest and no route can name
//! another one. It owns the server's TLS identity ([`tls`]), the tokens ([`token`]), the routes
//! and the gate in front of them ([`routes`], `gate`), the hardening limits, and the backup
//! "due" decision ([`policy`]).
//!
//! It never talks to Proxmox, the journal or the reconcile engine itself: everything it needs
//! from the agent comes through the narrow traits in [`ports`] ([`TokenStore`], [`GuestOps`],
//! [`GuestView`], [`Audit`], [`Clock`]), which the `felhom-agent` binary implements and
//! [`fakes`] implements in memory. A compromised controller can therefore only reach what those
//! traits offer for its own vmid.
//!
//! Start reading at [`routes::app`] (the router), then `gate.rs` (authentication, limits,
//! audit) and [`request`] (what it parses from the client), then [`ports`]. `docs/local-api.md` is the controller-facing reference.

mod conns;
pub mod error;
pub mod fakes;
mod gate;
pub mod policy;
pub mod ports;
pub mod ratelimit;
pub mod reply;
pub mod request;
pub mod routes;
pub mod server;
mod summary;
pub mod tls;
pub mod token;

pub use error::Error;
pub use policy::{backup_due, is_due, BackupPolicy, BackupSection, Due, DueReason, Schedule};
pub use ports::{
    Audit, AuditEvent, BackupState, BackupStatus, CallSummary, Clock, GuestMount, GuestOps,
    GuestView, OpAccepted, OpDone, OpError, PortError, PortFuture, RestoreTestState,
    RestoreTestStatus, StorageClass, SystemClock, TokenHash, TokenId, TokenRecord, TokenState,
    TokenStore,
};
pub use ratelimit::RateLimit;
pub use reply::Code;
pub use routes::{app, Caller, Limits, Ports, ROUTES};
pub use server::{serve, start, Running};
pub use tls::{fingerprint, Identity};
pub use token::{mint, revoke, revoke_guest, rotate, MintedToken};

pub(crate) use pve::ErrorChain;
