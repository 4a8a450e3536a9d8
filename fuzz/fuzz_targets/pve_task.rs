//! Task answers as the client reads them: the answer (`pve::decode_answer`: status, envelope,
//! error classification), then the task status, the task log, the task list or a mutating
//! call's UPID-or-null (`pve::decode_data`, `pve::decode_task_ref`), and the exit status
//! (`TaskOutcome::from_exitstatus`). Never panics.
//!
//! Input: status (2 bytes), shape selector (1 byte), body.
#![no_main]

use felhom_fuzz::{status, Input};
use pve::{TaskListEntry, TaskLogLine, TaskOutcome, TaskStatus};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let status = status(&mut input);
    let shape = input.byte();
    let body = input.rest();
    let path = "/nodes/pve1/tasks/UPID/status";
    let Ok(data) = pve::decode_answer("GET", path, status, "Reason", body) else {
        return;
    };
    match shape % 4 {
        0 => {
            if let Ok(s) = pve::decode_data::<TaskStatus>("GET", path, data) {
                if let Some(exit) = s.exitstatus.as_deref() {
                    let _ = TaskOutcome::from_exitstatus(exit);
                }
            }
        }
        1 => {
            let _ = pve::decode_data::<Vec<TaskLogLine>>("GET", path, data);
        }
        2 => {
            if let Ok(list) = pve::decode_data::<Vec<TaskListEntry>>("GET", path, data) {
                for entry in list {
                    if let Some(exit) = entry.status.as_deref() {
                        let _ = TaskOutcome::from_exitstatus(exit);
                    }
                }
            }
        }
        _ => {
            let _ = pve::decode_task_ref("POST", path, &data);
        }
    }
});
