//! `smartctl --json=c -a` output and exit status, as typed readings.

use serde::{Deserialize, Serialize};

use crate::Error;

/// smartctl's exit status, a bit mask (smartctl(8), "RETURN VALUES").
///
/// Bits 0 and 1 mean smartctl could not talk to the device (bad command line, open failed,
/// device asleep): there is no reading. Bits 2-7 describe the disk and come *with* a reading, so
/// they are information, not failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SmartStatus(u8);

impl SmartStatus {
    /// Wraps a raw exit status (only the low 8 bits are meaningful).
    pub fn from_exit_code(code: i32) -> Self {
        SmartStatus((code & 0xff) as u8)
    }

    /// The raw mask.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Bit 0 or 1: the command line did not parse or the device could not be opened.
    pub fn is_fatal(self) -> bool {
        self.0 & 0b11 != 0
    }

    /// Bit 2: some SMART or ATA command failed, or a SMART structure had a bad checksum.
    pub fn command_failed(self) -> bool {
        self.0 & (1 << 2) != 0
    }

    /// Bit 3: the SMART overall health self-assessment says "DISK FAILING".
    pub fn disk_failing(self) -> bool {
        self.0 & (1 << 3) != 0
    }

    /// Bit 4: pre-failure attributes are at or below their threshold now.
    pub fn prefail_below_threshold(self) -> bool {
        self.0 & (1 << 4) != 0
    }

    /// Bit 5: attributes were at or below their threshold in the past.
    pub fn past_below_threshold(self) -> bool {
        self.0 & (1 << 5) != 0
    }

    /// Bit 6: the device error log has entries.
    pub fn error_log_has_errors(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// Bit 7: the self-test log has errors.
    pub fn self_test_log_has_errors(self) -> bool {
        self.0 & (1 << 7) != 0
    }
}

/// What the agent reports about one disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmartReading {
    /// The device that was read, e.g. `/dev/sda`.
    pub device: String,
    /// Model name, when the device reports one.
    pub model: Option<String>,
    /// Serial number, when the device reports one.
    pub serial: Option<String>,
    /// The overall health self-assessment; `None` when the device did not give one.
    pub health_passed: Option<bool>,
    /// Current temperature in °C.
    pub temperature_c: Option<i64>,
    /// Power-on hours.
    pub power_on_hours: Option<u64>,
    /// smartctl's exit status bits (information only; fatal bits never yield a reading).
    pub status: SmartStatus,
}

#[derive(Deserialize)]
struct Json {
    model_name: Option<String>,
    serial_number: Option<String>,
    smart_status: Option<JsonSmartStatus>,
    temperature: Option<JsonTemperature>,
    power_on_time: Option<JsonPowerOn>,
    nvme_smart_health_information_log: Option<JsonNvmeLog>,
}

#[derive(Deserialize)]
struct JsonSmartStatus {
    passed: Option<bool>,
}

#[derive(Deserialize)]
struct JsonTemperature {
    current: Option<i64>,
}

#[derive(Deserialize)]
struct JsonPowerOn {
    hours: Option<u64>,
}

#[derive(Deserialize)]
struct JsonNvmeLog {
    temperature: Option<i64>,
    power_on_hours: Option<u64>,
}

/// Parses the JSON smartctl printed for `device`, with the exit status it ended with.
///
/// The status is applied the way smartmontools documents it: fatal bits (0-1) are an error
/// even if some JSON was printed; bit 3 ("DISK FAILING") forces `health_passed = false` even
/// if the JSON lacks `smart_status`.
pub fn parse(
    device: &str,
    code: i32,
    stdout: &[u8],
    stderr_tail: String,
) -> Result<SmartReading, Error> {
    let status = SmartStatus::from_exit_code(code);
    if status.is_fatal() {
        return Err(Error::NonZeroExit {
            program: "smartctl",
            code: Some(code),
            stderr_tail,
        });
    }
    let json: Json = serde_json::from_slice(stdout).map_err(|err| Error::Parse {
        program: "smartctl",
        reason: err.to_string(),
    })?;
    let nvme = json.nvme_smart_health_information_log.as_ref();
    let mut health_passed = json.smart_status.and_then(|s| s.passed);
    if status.disk_failing() {
        health_passed = Some(false);
    }
    Ok(SmartReading {
        device: device.to_owned(),
        model: json.model_name,
        serial: json.serial_number,
        health_passed,
        temperature_c: json
            .temperature
            .and_then(|t| t.current)
            .or_else(|| nvme.and_then(|n| n.temperature)),
        power_on_hours: json
            .power_on_time
            .and_then(|p| p.hours)
            .or_else(|| nvme.and_then(|n| n.power_on_hours)),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SATA: &str = r#"{"json_format_version":[1,0],"smartctl":{"version":[7,3],"exit_status":0},
        "device":{"name":"/dev/sda","type":"sat","protocol":"ATA"},
        "model_name":"Samsung SSD 870 EVO 1TB","serial_number":"S6PUNX0T123456",
        "smart_status":{"passed":true},"temperature":{"current":31},
        "power_on_time":{"hours":12345}}"#;

    const NVME: &str = r#"{"device":{"name":"/dev/nvme0n1","type":"nvme","protocol":"NVMe"},
        "model_name":"WD Blue SN570","serial_number":"2222","smart_status":{"passed":true},
        "nvme_smart_health_information_log":{"temperature":44,"power_on_hours":777}}"#;

    #[test]
    fn parses_sata_reading() {
        let r = parse("/dev/sda", 0, SATA.as_bytes(), String::new()).unwrap();
        assert_eq!(r.model.as_deref(), Some("Samsung SSD 870 EVO 1TB"));
        assert_eq!(r.serial.as_deref(), Some("S6PUNX0T123456"));
        assert_eq!(r.health_passed, Some(true));
        assert_eq!(r.temperature_c, Some(31));
        assert_eq!(r.power_on_hours, Some(12345));
    }

    #[test]
    fn nvme_falls_back_to_health_log() {
        let r = parse("/dev/nvme0n1", 0, NVME.as_bytes(), String::new()).unwrap();
        assert_eq!(r.temperature_c, Some(44));
        assert_eq!(r.power_on_hours, Some(777));
    }

    #[test]
    fn information_bits_still_give_a_reading() {
        // 64 = bit 6: error log has entries; 8 = bit 3: disk failing.
        let r = parse("/dev/sda", 64 | 8, SATA.as_bytes(), String::new()).unwrap();
        assert!(r.status.error_log_has_errors());
        assert!(r.status.disk_failing());
        assert_eq!(r.health_passed, Some(false), "bit 3 overrides the JSON");
    }

    #[test]
    fn fatal_bits_are_errors() {
        for code in [1, 2, 3, 2 | 64] {
            let err = parse("/dev/sda", code, SATA.as_bytes(), "open failed".into()).unwrap_err();
            assert!(
                matches!(err, Error::NonZeroExit { code: Some(c), .. } if c == code),
                "{err}"
            );
        }
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let err = parse("/dev/sda", 0, b"not json", String::new()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Parse {
                    program: "smartctl",
                    ..
                }
            ),
            "{err}"
        );
    }
}
