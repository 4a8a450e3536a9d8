//! Storage answers as the client reads them: `pve::decode_answer`, then a content listing
//! (`GET …/storage/{id}/content`), a status listing (`GET /nodes/{node}/storage`) or the
//! cluster storage config (`GET /storage`) through `pve::decode_data`. Never panics.
//!
//! Input: status (2 bytes), shape selector (1 byte), body.
#![no_main]

use felhom_fuzz::{status, Input};
use pve::{StorageConfig, StorageContent, StorageStatus};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let status = status(&mut input);
    let shape = input.byte();
    let body = input.rest();
    let path = "/nodes/pve1/storage/local/content";
    let Ok(data) = pve::decode_answer("GET", path, status, "Reason", body) else {
        return;
    };
    match shape % 3 {
        0 => {
            let _ = pve::decode_data::<Vec<StorageContent>>("GET", path, data);
        }
        1 => {
            let _ = pve::decode_data::<Vec<StorageStatus>>("GET", path, data);
        }
        _ => {
            let _ = pve::decode_data::<Vec<StorageConfig>>("GET", path, data);
        }
    }
});
