//! `sensors -j` output as chip → label → temperature.
//!
//! lm-sensors prints `{"chip": {"Adapter": "…", "Label": {"temp1_input": 45.0, "temp1_max": …},
//! …}, …}`. Only `tempN_input` values are temperatures; fans (`fanN_input`), voltages (`inN_input`)
//! and limits are skipped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// All temperature readings of the host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SensorReadings {
    /// Chips by name (e.g. `coretemp-isa-0000`).
    pub chips: BTreeMap<String, ChipReading>,
}

/// One chip's temperatures.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChipReading {
    /// The bus adapter, e.g. `ISA adapter`.
    pub adapter: Option<String>,
    /// Current temperature in °C by label (e.g. `Package id 0`, `Composite`).
    pub temperatures_c: BTreeMap<String, f64>,
}

fn is_temp_input(key: &str) -> bool {
    key.strip_prefix("temp")
        .and_then(|rest| rest.strip_suffix("_input"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses `sensors -j` output.
pub fn parse(stdout: &[u8]) -> Result<SensorReadings, Error> {
    let bad = |reason: String| Error::Parse {
        program: "sensors",
        reason,
    };
    let root: Value = serde_json::from_slice(stdout).map_err(|err| bad(err.to_string()))?;
    let chips = root
        .as_object()
        .ok_or_else(|| bad("top level is not an object".to_owned()))?;
    let mut readings = SensorReadings::default();
    for (chip, body) in chips {
        let body = body
            .as_object()
            .ok_or_else(|| bad(format!("chip {chip:?} is not an object")))?;
        let mut reading = ChipReading::default();
        for (label, value) in body {
            if label == "Adapter" {
                reading.adapter = value.as_str().map(str::to_owned);
                continue;
            }
            let Some(features) = value.as_object() else {
                continue;
            };
            let temp = features
                .iter()
                .find(|(key, _)| is_temp_input(key))
                .and_then(|(_, v)| v.as_f64());
            if let Some(temp) = temp {
                reading.temperatures_c.insert(label.clone(), temp);
            }
        }
        readings.chips.insert(chip.clone(), reading);
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_temperatures_only() {
        let json = br#"{
          "coretemp-isa-0000": {"Adapter": "ISA adapter",
             "Package id 0": {"temp1_input": 45.000, "temp1_max": 80.000, "temp1_crit": 100.000},
             "Core 0": {"temp2_input": 43.000}},
          "nct6775-isa-0290": {"Adapter": "ISA adapter",
             "fan1": {"fan1_input": 1200.000}, "in0": {"in0_input": 0.880}},
          "nvme-pci-0100": {"Adapter": "PCI adapter", "Composite": {"temp1_input": 38.850}}
        }"#;
        let r = parse(json).unwrap();
        let core = &r.chips["coretemp-isa-0000"];
        assert_eq!(core.adapter.as_deref(), Some("ISA adapter"));
        assert_eq!(core.temperatures_c["Package id 0"], 45.0);
        assert_eq!(core.temperatures_c["Core 0"], 43.0);
        assert!(r.chips["nct6775-isa-0290"].temperatures_c.is_empty());
        assert_eq!(r.chips["nvme-pci-0100"].temperatures_c["Composite"], 38.85);
    }

    #[test]
    fn rejects_non_object() {
        assert!(parse(b"[]").is_err());
        assert!(parse(b"{\"chip\": 3}").is_err());
        assert!(parse(b"{").is_err());
    }
}
