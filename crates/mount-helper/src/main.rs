//! `felhom-mount-helper mount|unmount <UUID>`, run as root by sudo for the agent. Fixed paths
//! only ([`Paths::system`]); the exit code says which check refused (`mount_helper::Error::exit_code`).

use std::error::Error as _;
use std::ffi::OsString;
use std::process::ExitCode;

use mount_helper::{execute, Paths, Request, SystemRunner};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = Request::parse(&args)
        .and_then(|request| execute(&request, &Paths::system(), &SystemRunner));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error, then its cause if it has one.
            let mut line = format!("felhom-mount-helper: {err}");
            if let Some(source) = err.source() {
                line.push_str(&format!(": {source}"));
            }
            eprintln!("{line}");
            ExitCode::from(err.exit_code())
        }
    }
}
