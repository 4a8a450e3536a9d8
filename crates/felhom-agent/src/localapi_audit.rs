//! The local API's audit sink: every call (and every summary of refused calls) into the
//! journal's hash-chained audit log, kind `local_api`, actor = token id, action = route,
//! target = `vmid:N`.
//!
//! A request never waits for an fsync: `record` hands the entry to a writer thread with a
//! journal connection of its own, which writes whatever has queued up in one transaction (one
//! fsync for a batch instead of one per call). What is kept under pressure:
//!
//! - A mutation's record (a call that reached the snapshot, rollback or backup handler) and a
//!   summary are always queued, never dropped. Both are bounded by what produces them: the
//!   per-token rate limit and one summary per address and interval.
//! - A read's record is dropped when [`READ_QUEUE`] reads are already waiting. Each drop is
//!   counted, and the count is written into the audit log itself with the next batch
//!   (outcome `audit_shed`), so a gap is never silent.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use journal::{Journal, NewAuditEntry};
use localapi::{Audit, AuditEvent, CallSummary};

/// Audit kind of every local-API record.
pub const AUDIT_KIND: &str = "local_api";
/// Read records waiting for the writer before further ones are shed (and counted).
pub const READ_QUEUE: usize = 4096;
/// Entries written per transaction at most.
const BATCH: usize = 512;

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

enum Queued {
    Call(AuditEvent),
    Summary(CallSummary),
}

#[derive(Debug, Default)]
struct Pressure {
    /// Read records queued and not yet written.
    reads: AtomicUsize,
    /// Read records shed since the writer last wrote the count.
    shed: AtomicU64,
}

/// [`Audit`] into the journal.
pub struct JournalAudit {
    tx: Sender<Queued>,
    pressure: Arc<Pressure>,
}

impl JournalAudit {
    /// Starts the writer thread on `journal` (a connection of its own: on the engine's shared
    /// one, each batch would hold the lock every request and reconcile step takes). It ends
    /// when the last `JournalAudit` is dropped, after writing what was queued.
    pub fn start(journal: Journal) -> std::io::Result<Self> {
        let (audit, writer) = JournalAudit::unstarted(journal);
        std::thread::Builder::new()
            .name("localapi-audit".into())
            .spawn(writer)?;
        Ok(audit)
    }

    /// The sink and its writer, not yet running (tests fill the queue before it starts).
    fn unstarted(journal: Journal) -> (Self, impl FnOnce() + Send + 'static) {
        let (tx, rx) = channel::<Queued>();
        let pressure = Arc::new(Pressure::default());
        let writer = Arc::clone(&pressure);
        (JournalAudit { tx, pressure }, move || {
            write_all(journal, rx, &writer)
        })
    }

    fn queue(&self, entry: Queued) {
        if self.tx.send(entry).is_err() {
            // Only if the writer thread died; it logged why.
            tracing::error!("local api audit writer gone; entry not written");
        }
    }
}

impl Audit for JournalAudit {
    fn record(&self, event: AuditEvent) {
        if !event.mutation {
            let waiting = self.pressure.reads.fetch_add(1, Ordering::AcqRel);
            if waiting >= READ_QUEUE {
                self.pressure.reads.fetch_sub(1, Ordering::AcqRel);
                self.pressure.shed.fetch_add(1, Ordering::AcqRel);
                return;
            }
        }
        self.queue(Queued::Call(event));
    }

    fn summary(&self, summary: CallSummary) {
        self.queue(Queued::Summary(summary));
    }
}

fn write_all(mut journal: Journal, rx: Receiver<Queued>, pressure: &Pressure) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let reads = batch
            .iter()
            .filter(|q| matches!(q, Queued::Call(e) if !e.mutation))
            .count();
        let mut entries: Vec<NewAuditEntry> = batch.iter().map(entry_of).collect();
        let shed = pressure.shed.swap(0, Ordering::AcqRel);
        if shed > 0 {
            entries.push(shed_entry(shed));
        }
        if let Err(err) = journal.append_audit_batch(&entries) {
            tracing::error!(
                error = %reconcile::error_chain(&err),
                entries = entries.len(),
                mutations = batch
                    .iter()
                    .filter(|q| matches!(q, Queued::Call(e) if e.mutation))
                    .count(),
                "local api audit entries not written"
            );
        }
        pressure.reads.fetch_sub(reads, Ordering::AcqRel);
    }
}

fn entry_of(queued: &Queued) -> NewAuditEntry {
    match queued {
        Queued::Call(event) => audit_entry(event),
        Queued::Summary(summary) => summary_entry(summary),
    }
}

/// The journal's form of one call: never the token, only its id.
pub fn audit_entry(event: &AuditEvent) -> NewAuditEntry {
    let detail = serde_json::json!({
        "status": event.status,
        "peer": event.peer.map(|p| p.to_string()),
        "detail": event.detail,
    });
    NewAuditEntry::new(unix(event.at), AUDIT_KIND, event.outcome)
        .actor(event.token_id.map(|t| t.to_string()))
        .action(&event.route)
        .vmid(event.vmid.map(|v| v.get()))
        .reason(event.guest_id_attempt.then_some("guest-id-attempt"))
        .detail(detail.to_string())
}

/// The journal's form of one address's refused calls in an interval.
pub fn summary_entry(summary: &CallSummary) -> NewAuditEntry {
    let counts = |pairs: &mut dyn Iterator<Item = (String, u64)>| -> serde_json::Value {
        pairs
            .map(|(k, n)| (k, serde_json::Value::from(n)))
            .collect()
    };
    let detail = serde_json::json!({
        "peer": summary.peer.map(|p| p.to_string()),
        "other_addresses": summary.other_addresses,
        "since": unix(summary.since),
        "calls": summary.calls,
        "by_outcome": counts(&mut summary.by_outcome.iter().map(|(k, n)| ((*k).to_owned(), *n))),
        "by_route": counts(&mut summary.by_route.iter().cloned()),
    });
    NewAuditEntry::new(unix(summary.at), AUDIT_KIND, "summarised")
        .action("refused calls")
        .detail(detail.to_string())
}

fn shed_entry(shed: u64) -> NewAuditEntry {
    let now = unix(SystemTime::now());
    NewAuditEntry::new(now, AUDIT_KIND, "audit_shed")
        .action("read records")
        .detail(serde_json::json!({ "shed": shed, "queue": READ_QUEUE }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use localapi::TokenId;
    use pve::Vmid;
    use std::time::Duration;

    fn event(mutation: bool) -> AuditEvent {
        AuditEvent {
            at: UNIX_EPOCH + Duration::from_secs(100),
            token_id: Some("0123456789abcdef".parse::<TokenId>().unwrap()),
            vmid: Some(Vmid::new(101).unwrap()),
            route: if mutation {
                "POST /snapshot"
            } else {
                "GET /storage"
            }
            .into(),
            status: 201,
            outcome: "ok",
            detail: None,
            guest_id_attempt: !mutation,
            peer: Some("10.0.0.9".parse().unwrap()),
            mutation,
        }
    }

    #[test]
    fn audit_entries_name_the_token_id_only() {
        let e = audit_entry(&event(false));
        assert_eq!(e.kind, "local_api");
        assert_eq!(e.actor.as_deref(), Some("0123456789abcdef"));
        assert_eq!(e.action.as_deref(), Some("GET /storage"));
        assert_eq!(e.target.as_deref(), Some("vmid:101"));
        assert_eq!(e.reason.as_deref(), Some("guest-id-attempt"));
        assert!(e.detail.unwrap().contains("10.0.0.9"));
    }

    #[test]
    fn a_summary_is_one_entry_with_its_counts() {
        let e = summary_entry(&CallSummary {
            at: UNIX_EPOCH + Duration::from_secs(160),
            since: UNIX_EPOCH + Duration::from_secs(100),
            peer: Some("10.0.0.9".parse().unwrap()),
            other_addresses: false,
            calls: 5000,
            by_outcome: vec![("rate_limited", 4990), ("unauthorized", 10)],
            by_route: vec![("GET /storage".into(), 5000)],
        });
        assert_eq!((e.outcome.as_str(), e.actor), ("summarised", None));
        let detail: serde_json::Value = serde_json::from_str(&e.detail.unwrap()).unwrap();
        assert_eq!(detail["calls"], 5000);
        assert_eq!(detail["by_outcome"]["rate_limited"], 4990);
        assert_eq!(detail["by_route"]["GET /storage"], 5000);
        assert_eq!(detail["since"], 100);
    }

    /// Reads past the queue are shed and counted into the log; mutations never are. The
    /// writer starts only after everything was recorded, so the queue really fills.
    #[test]
    fn under_pressure_reads_are_shed_and_counted_and_mutations_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, writer) = JournalAudit::unstarted(Journal::open(dir.path()).unwrap());
        let reads = READ_QUEUE + 500;
        for i in 0..reads {
            audit.record(event(false));
            if i % 100 == 0 {
                audit.record(event(true));
            }
        }
        let mutations = reads.div_ceil(100);
        drop(audit);
        // With the last sender gone, the writer drains the queue and returns.
        writer();
        let j = Journal::open_read_only(dir.path()).unwrap();
        let all = j.audit_tail(u32::MAX).unwrap();
        let count = |action: &str| {
            all.iter()
                .filter(|e| e.entry.action.as_deref() == Some(action))
                .count()
        };
        assert_eq!(count("POST /snapshot"), mutations);
        assert_eq!(count("GET /storage"), READ_QUEUE);
        let shed: Vec<u64> = all
            .iter()
            .filter(|e| e.entry.outcome == "audit_shed")
            .map(|e| {
                let d: serde_json::Value =
                    serde_json::from_str(e.entry.detail.as_deref().unwrap()).unwrap();
                d["shed"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(shed, [500]);
        assert_eq!(j.audit_verify().unwrap().first_broken, None);
    }
}
