//! The local desired-state source: `desired.file`, re-read on change (offline / local mode, and
//! how the engine is tested before the hub exists). Signed ops in `desired.ops_dir` are read
//! by the binary, which verifies them against the journal and hands [`crate::SignedJob`]s to
//! the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::desired::MAX_DESIRED_BYTES;
use crate::engine::DesiredInput;

/// Polls `path` every `every` and publishes its content whenever it changes. A missing or
/// unreadable file publishes nothing (the last accepted state stays in force) and is logged
/// once per change of condition. Returns when `shutdown` turns true.
pub async fn watch_file(
    path: PathBuf,
    every: Duration,
    tx: watch::Sender<Option<DesiredInput>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let source = format!("file:{}", path.display());
    let mut last: Option<Arc<[u8]>> = None;
    let mut complained = false;
    loop {
        match read_limited(&path).await {
            Ok(bytes) => {
                complained = false;
                if last.as_deref() != Some(&bytes[..]) {
                    debug!(path = %path.display(), "desired file changed");
                    let bytes: Arc<[u8]> = bytes.into();
                    last = Some(bytes.clone());
                    tx.send_replace(Some(DesiredInput {
                        bytes,
                        source: source.clone(),
                    }));
                }
            }
            Err(e) if !complained => {
                warn!(path = %path.display(), error = %e, "desired file unreadable; keeping the last accepted state");
                complained = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn read_limited(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let meta = tokio::fs::metadata(path).await?;
    if meta.len() > MAX_DESIRED_BYTES as u64 {
        // Published anyway so the parser rejects it (and it is audited) instead of silence.
        let mut bytes = tokio::fs::read(path).await?;
        bytes.truncate(MAX_DESIRED_BYTES + 1);
        return Ok(bytes);
    }
    tokio::fs::read(path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publishes_on_change_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.json");
        std::fs::write(&path, b"one").unwrap();
        let (tx, mut rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(watch_file(
            path.clone(),
            Duration::from_millis(20),
            tx,
            stop_rx,
        ));
        rx.changed().await.unwrap();
        assert_eq!(&rx.borrow_and_update().as_ref().unwrap().bytes[..], b"one");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!rx.has_changed().unwrap());
        std::fs::write(&path, b"two").unwrap();
        rx.changed().await.unwrap();
        assert_eq!(&rx.borrow().as_ref().unwrap().bytes[..], b"two");
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
