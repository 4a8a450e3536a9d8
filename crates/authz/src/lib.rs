//! authz: operator-signed operations (DESIGN.md §3.5, §4.4). It owns everything between an
//! opaque signed blob and a [`VerifiedOp`] the executor may act on: the armored OpenSSH SSHSIG
//! parser ([`armor`]), the strict signed-op envelope ([`envelope`]) and wire form ([`wire`]),
//! the operators file and the role → action table ([`operators`]), the verification order with
//! host and target binding and the replay check ([`verify`](mod@verify)), and the operator's
//! tooling: building a payload ([`draft`]), signing it with a key file or through `ssh-agent`
//! ([`sign`], [`agent`]).
//!
//! It never touches the database or the network: durable replay protection and the audit log
//! are reached through the narrow traits in [`ports`] ([`ReplayGuard`], [`AuditSink`]), which
//! the `journal` crate backs and the binary wires. Decisions take `now` as input.
//!
//! Why this matters: a compromised hub relays signed blobs but holds no operator key, so it
//! must not be able to forge, replay, retarget, re-scope or stretch an authorization. The
//! signature is checked over the exact payload bytes before any field of it is trusted, and
//! [`verify()`] is the only constructor of [`VerifiedOp`].
//!
//! Start reading at [`verify()`], then [`envelope`] and [`operators`].

pub mod agent;
pub mod armor;
pub mod draft;
pub mod envelope;
mod error;
pub mod operators;
pub mod policy;
pub mod ports;
mod rejection;
pub mod sign;
pub mod verify;
pub mod wire;

pub use armor::{parse_armored, NAMESPACE};
pub use envelope::{parse_payload, Action, Envelope, Target};
pub use error::{OperatorsError, ParseError, SignError};
pub use operators::{Operator, Operators, Role};
pub use policy::{Policy, DEFAULT_CLOCK_SKEW, DEFAULT_MAX_LIFETIME};
pub use ports::{
    Admission, AuditEvent, AuditSink, Claim, LedgerError, RecordedState, Redelivery, ReplayGuard,
};
pub use rejection::{Reason, Rejection};
pub use verify::{verify, SignedInput, VerifiedOp, VerifyError};
