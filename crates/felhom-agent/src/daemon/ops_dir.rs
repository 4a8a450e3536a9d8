//! Signed ops dropped into `desired.ops_dir` (wire form, DESIGN.md §4.4).
//!
//! Each regular file (names starting with `.` are skipped, so writers can rename into place) is
//! verified with `authz::verify` against the operators file, this host's id and the journal's
//! replay guard, then run by the engine. Afterwards it is moved to `done/` (verified; the job
//! ran or was refused by the engine) or `rejected/` (verification refused it, including replays
//! and redeliveries) with `NAME.result.json` beside it. A store failure leaves the file in
//! place to be retried.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reconcile::SignedJob;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::signed::{Verdict, Verifier};

/// The intake's settings.
#[derive(Debug, Clone)]
pub struct OpsDir {
    /// The directory watched.
    pub dir: PathBuf,
    /// How ops are verified (operators, host id, journal, `authz.*` bounds).
    pub verifier: Verifier,
}

impl OpsDir {
    /// Polls the directory until `shutdown`.
    pub async fn run(
        self,
        every: Duration,
        jobs: mpsc::Sender<SignedJob>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            for file in self.pending_files() {
                let verdict = self.verify(&file);
                let (dest, result) = match verdict {
                    Verdict::Run(op) => {
                        let (reply, rx) = oneshot::channel();
                        if jobs.send(SignedJob { op: *op, reply }).await.is_err() {
                            return;
                        }
                        match rx.await {
                            Ok(outcome) => {
                                ("done", serde_json::to_value(&outcome).unwrap_or_default())
                            }
                            Err(_) => return,
                        }
                    }
                    Verdict::Rejected(refused) => (
                        "rejected",
                        serde_json::to_value(&refused).unwrap_or_default(),
                    ),
                    Verdict::Retry(why) => {
                        warn!(file = %file.display(), error = %why, "signed op not processed; will retry");
                        continue;
                    }
                };
                if let Err(e) = self.file_away(&file, dest, &result) {
                    warn!(file = %file.display(), error = %e, "cannot move a processed op file");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    fn pending_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    fn verify(&self, file: &Path) -> Verdict {
        let mut bytes = Vec::new();
        let read = std::fs::File::open(file).and_then(|f| {
            f.take(authz::wire::MAX_WIRE as u64 + 1)
                .read_to_end(&mut bytes)
        });
        if let Err(e) = read {
            return Verdict::Retry(e.to_string());
        }
        self.verifier.verify(&bytes, &file.display().to_string())
    }

    fn file_away(
        &self,
        file: &Path,
        dest: &str,
        result: &serde_json::Value,
    ) -> std::io::Result<()> {
        let dir = self.dir.join(dest);
        std::fs::create_dir_all(&dir)?;
        let name = file
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let mut result_name = name.clone();
        result_name.push(".result.json");
        std::fs::write(
            dir.join(result_name),
            serde_json::to_vec_pretty(result).unwrap_or_default(),
        )?;
        std::fs::rename(file, dir.join(name))
    }
}
