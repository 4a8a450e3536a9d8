//! SMART for the hub report. Reading SMART needs root, so each read goes through the privileged
//! fence (`sudo -n -- /usr/sbin/smartctl --json=c -a DEVICE`, one of its three operations). A
//! read can take up to a minute (a disk spinning up from standby), so reads never happen on the
//! report path: a background task owns the [`collect::SmartCache`], reads the configured disks
//! at `smart.interval_s`, and publishes a [`SmartSnapshot`] the report copies (it keeps the
//! read instants, so ages are true whenever the report is built).

use std::sync::Arc;
use std::time::Duration;

use collect::{SmartCache, SmartReader, SmartSnapshot, SmartValues};
use privileged::{BlockDevice, Privileged, Runner};
use tokio::sync::watch;

/// How often the task looks for disks that are due. Reads stay at the configured interval;
/// this only bounds how late a due read starts.
const TICK: Duration = Duration::from_secs(60);

/// Reads one disk through the privileged fence.
#[derive(Clone)]
pub struct PrivilegedSmart<R> {
    privileged: Arc<Privileged<R>>,
}

impl<R: Runner + Send + Sync + 'static> PrivilegedSmart<R> {
    /// Reads with `privileged` (in production `Privileged::system()`).
    pub fn new(privileged: Privileged<R>) -> Self {
        PrivilegedSmart {
            privileged: Arc::new(privileged),
        }
    }
}

impl<R: Runner + Send + Sync + 'static> SmartReader for PrivilegedSmart<R> {
    async fn read(&self, device: &str) -> Result<SmartValues, String> {
        let device = BlockDevice::parse(device).map_err(|e| e.to_string())?;
        let privileged = self.privileged.clone();
        // The runner blocks on the child process; keep it off the async workers.
        let reading = tokio::task::spawn_blocking(move || privileged.smart(&device))
            .await
            .map_err(|e| format!("SMART read did not finish: {e}"))?
            .map_err(|e| hub::ErrorChain(&e).to_string())?;
        Ok(SmartValues {
            passed: reading.health_passed,
            temperature_c: reading.temperature_c,
            power_on_hours: reading.power_on_hours,
        })
    }
}

/// Refreshes due disks every [`TICK`] and publishes a snapshot after each pass, until `stop`.
pub async fn run<R: SmartReader>(
    mut cache: SmartCache<R>,
    out: watch::Sender<SmartSnapshot>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let read = cache.refresh_due().await;
        if read > 0 {
            tracing::debug!(disks = read, "SMART read");
        }
        out.send_replace(cache.snapshot());
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl SmartReader for Fixed {
        async fn read(&self, device: &str) -> Result<SmartValues, String> {
            if device == "/dev/sdb" {
                return Err("smartctl: open failed".into());
            }
            Ok(SmartValues {
                passed: Some(true),
                temperature_c: Some(35),
                power_on_hours: Some(12),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn snapshots_age_between_reads_and_the_task_rereads_when_due() {
        let cache = SmartCache::new(
            Fixed,
            vec!["/dev/sda".into(), "/dev/sdb".into()],
            Duration::from_secs(3600),
        );
        let (tx, mut rx) = watch::channel(SmartSnapshot::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(cache, tx, async move {
            let _ = stop_rx.await;
        }));
        rx.changed().await.expect("first snapshot");
        let first = rx.borrow_and_update().reports();
        assert_eq!(first.len(), 2);
        let sda = first.iter().find(|r| r.device == "/dev/sda").expect("sda");
        assert_eq!(
            (sda.passed, sda.temperature_c, sda.age_s),
            (Some(true), Some(35), 0)
        );
        let sdb = first.iter().find(|r| r.device == "/dev/sdb").expect("sdb");
        assert_eq!(sdb.error.as_deref(), Some("smartctl: open failed"));

        // Between publishes the age keeps counting.
        tokio::time::advance(Duration::from_secs(30)).await;
        let held = rx.borrow().clone();
        assert!(held.reports().iter().all(|r| r.age_s == 30));

        // After the interval the disks are read again: ages fall back to zero.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let later = rx.borrow_and_update().reports();
        let sda = later.iter().find(|r| r.device == "/dev/sda").expect("sda");
        assert!(sda.age_s < 60, "re-read within one tick: {}", sda.age_s);

        let _ = stop_tx.send(());
        task.await.expect("task stops");
    }
}
