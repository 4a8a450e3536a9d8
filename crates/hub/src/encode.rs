//! Report encoding under a size bound, and gzip in both directions.
//!
//! A report is at most [`MAX_REPORT_BYTES`] of JSON before compression. The only part that
//! grows without bound is the audit backlog (a hub outage of days). Audit entries page forward
//! from the hub's ack, oldest first, so when a report is too large its newest entries wait for
//! the next report (the hub acknowledges what it received, and the next page starts there):
//! nothing is skipped. Everything else is bounded by the guest count; a report still too large
//! without any audit entry is an error, never a silently truncated document.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::report::HostReport;
use crate::Error;

/// Bound on a report's uncompressed JSON, bytes (the hub refuses larger ones with 413).
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// A report ready to send.
#[derive(Debug, Clone)]
pub struct EncodedReport {
    /// The request body (gzip when `gzip`).
    pub body: Vec<u8>,
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// JSON size before compression.
    pub json_len: usize,
    /// Audit entries left for the next report (the newest of this one's batch), for size.
    pub omitted_audit: u64,
}

/// Serializes `report` within `limit` bytes, then gzips it when `gzip`. Audit entries page
/// forward from the hub's ack, oldest first: when the report is too large, the **newest**
/// entries are left out and go in a later report (the hub's ack moves only as far as what it
/// received), so nothing is skipped.
pub fn encode_report(
    report: &mut HostReport,
    limit: usize,
    gzip: bool,
) -> Result<EncodedReport, Error> {
    let mut json = to_json(report)?;
    let mut omitted = 0u64;
    if json.len() > limit {
        // Sizes of the newest entries tell how many to defer; re-serialize to check.
        let sizes: Vec<usize> = report
            .audit
            .entries
            .iter()
            .map(|e| serde_json::to_vec(e).map(|v| v.len() + 1).unwrap_or(0))
            .collect();
        let mut excess = json.len() - limit;
        let mut drop = 0;
        while excess > 0 && drop < sizes.len() {
            excess = excess.saturating_sub(sizes[sizes.len() - 1 - drop]);
            drop += 1;
        }
        loop {
            let mut trimmed = report.clone();
            defer_newest(&mut trimmed, drop);
            json = to_json(&trimmed)?;
            if json.len() <= limit {
                omitted = drop as u64;
                *report = trimmed;
                break;
            }
            if drop >= sizes.len() {
                return Err(Error::TooLarge {
                    what: "report without audit entries",
                    limit,
                });
            }
            drop += 1;
        }
    }
    let json_len = json.len();
    let body = if gzip { gzip_bytes(&json) } else { json };
    Ok(EncodedReport {
        body,
        gzip,
        json_len,
        omitted_audit: omitted,
    })
}

fn defer_newest(report: &mut HostReport, drop: usize) {
    let keep = report.audit.entries.len().saturating_sub(drop);
    report.audit.entries.truncate(keep);
}

fn to_json(report: &HostReport) -> Result<Vec<u8>, Error> {
    // Serializing plain data structs with string keys cannot fail; map it anyway.
    serde_json::to_vec(report).map_err(|e| Error::InvalidOption {
        key: "report",
        reason: e.to_string(),
    })
}

/// Gzips `data`.
pub fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Gunzips `data`, refusing output larger than `limit` (a gzip bomb is an error, not an
/// allocation).
pub fn gunzip_bounded(data: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::new();
    let mut dec = GzDecoder::new(data).take(limit as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| GunzipError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
}

/// Why gunzip failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GunzipError {
    /// Not valid gzip.
    Corrupt(String),
    /// Inflates beyond the bound.
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::AuditEntry;

    fn entry(seq: u64) -> AuditEntry {
        AuditEntry {
            seq,
            at: 1_700_000_000,
            kind: "signed_op".into(),
            actor: Some("alice".into()),
            action: Some("guest.destroy".into()),
            target: Some("vmid:101".into()),
            op_id: Some(format!("op-{seq}")),
            outcome: "accepted".into(),
            reason: None,
            detail: Some("x".repeat(200)),
            prev_hash: "0".repeat(64),
            hash: "1".repeat(64),
        }
    }

    #[test]
    fn small_report_is_untouched() {
        let mut r = HostReport::empty("h1", "0.1.0");
        r.audit.entries = (1..=3).map(entry).collect();
        let enc = encode_report(&mut r, MAX_REPORT_BYTES, false).unwrap();
        assert_eq!(enc.omitted_audit, 0);
        assert_eq!(r.audit.entries.len(), 3);
        let back: HostReport = serde_json::from_slice(&enc.body).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn oversized_report_defers_the_newest_audit_entries_to_the_next_page() {
        let mut r = HostReport::empty("h1", "0.1.0");
        r.audit.entries = (1..=2000).map(entry).collect();
        let enc = encode_report(&mut r, 64 * 1024, true).unwrap();
        assert!(enc.json_len <= 64 * 1024);
        let json = gunzip_bounded(&enc.body, 64 * 1024).unwrap();
        let back: HostReport = serde_json::from_slice(&json).unwrap();
        // The oldest are sent, contiguous from the first; nothing is reported omitted.
        assert_eq!(back.audit.omitted, None);
        assert_eq!(back.audit.entries[0].seq, 1);
        let last = back.audit.entries.last().unwrap().seq;
        assert_eq!(last, 2000 - enc.omitted_audit);
        assert!(back
            .audit
            .entries
            .windows(2)
            .all(|w| w[1].seq == w[0].seq + 1));
        // Not more trimmed than needed: one more entry would not fit.
        assert!(enc.json_len + 400 > 64 * 1024 - 200);
    }

    #[test]
    fn too_large_without_audit_is_an_error() {
        let mut r = HostReport::empty("h1", "0.1.0");
        r.host.errors = (0..100)
            .map(|i| crate::report::CollectorError {
                collector: format!("c{i}"),
                message: "y".repeat(100),
            })
            .collect();
        let err = encode_report(&mut r, 1024, false).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }));
    }

    #[test]
    fn gzip_round_trip_and_bomb() {
        let data = vec![b'a'; 100_000];
        let z = gzip_bytes(&data);
        assert!(z.len() < 1000);
        assert_eq!(gunzip_bounded(&z, 100_000).unwrap(), data);
        assert_eq!(gunzip_bounded(&z, 99_999), Err(GunzipError::TooLarge));
        assert!(matches!(
            gunzip_bounded(b"not gzip", 10),
            Err(GunzipError::Corrupt(_))
        ));
    }
}
