//! The argument list: `mount <UUID>` or `unmount <UUID>`, exactly two arguments.

use std::ffi::OsString;

use crate::uuid::FsUuid;
use crate::Error;

/// What the helper was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `mount <UUID>`: check the device, then `systemd-mount` it under the mount root.
    Mount(FsUuid),
    /// `unmount <UUID>`: `systemd-umount` the mount point of that UUID.
    Unmount(FsUuid),
}

impl Request {
    /// Parses the arguments after the program name. Anything but exactly a verb and a UUID is
    /// refused; no option, no `--`, no second UUID.
    pub fn parse(args: &[OsString]) -> Result<Request, Error> {
        let [verb, uuid] = args else {
            return Err(Error::Usage {
                reason: "expected exactly two arguments",
            });
        };
        let uuid = uuid.to_str().ok_or(Error::InvalidUuid {
            value: uuid.to_string_lossy().chars().take(64).collect(),
        })?;
        match verb.to_str() {
            Some("mount") => Ok(Request::Mount(FsUuid::parse(uuid)?)),
            Some("unmount") => Ok(Request::Unmount(FsUuid::parse(uuid)?)),
            _ => Err(Error::Usage {
                reason: "the first argument must be mount or unmount",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Request, Error> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        Request::parse(&args)
    }

    const U: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

    #[test]
    fn mount_and_unmount() {
        let uuid = FsUuid::parse(U).unwrap();
        assert_eq!(parse(&["mount", U]).unwrap(), Request::Mount(uuid.clone()));
        assert_eq!(parse(&["unmount", U]).unwrap(), Request::Unmount(uuid));
    }

    #[test]
    fn wrong_argument_count_is_usage() {
        for args in [
            &[][..],
            &["mount"][..],
            &[U][..],
            &["mount", U, U][..],
            &["mount", U, "/srv/felhom/mounts/x"][..],
            &["mount", "--", U][..],
        ] {
            assert!(matches!(parse(args), Err(Error::Usage { .. })), "{args:?}");
        }
    }

    #[test]
    fn unknown_verb_is_usage() {
        for verb in ["Mount", "umount", "--mount", "", "mount "] {
            assert!(
                matches!(parse(&[verb, U]), Err(Error::Usage { .. })),
                "{verb:?}"
            );
        }
    }

    #[test]
    fn bad_uuid_is_invalid_uuid() {
        for uuid in [
            "/dev/sda1",
            "../x",
            "--options=exec",
            U.to_uppercase().as_str(),
        ] {
            assert!(
                matches!(parse(&["mount", uuid]), Err(Error::InvalidUuid { .. })),
                "{uuid:?}"
            );
        }
    }

    #[test]
    fn non_utf8_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("mount"),
            OsString::from_vec(vec![0xff, b'a']),
        ];
        assert!(matches!(
            Request::parse(&args),
            Err(Error::InvalidUuid { .. })
        ));
        let args = vec![OsString::from_vec(vec![0xff]), OsString::from(U)];
        assert!(matches!(Request::parse(&args), Err(Error::Usage { .. })));
    }
}
