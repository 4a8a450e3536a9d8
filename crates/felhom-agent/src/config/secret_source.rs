//! Reading a secret from where the configuration says it is.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::raw::RawSecret;
use super::{ConfigError, Origin};
use pve::Secret;

/// Where a secret came from; shown by `check-config` instead of the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum SecretSource {
    /// Written in the file or the variable itself.
    Inline,
    /// Read from a file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential {
        /// The credential name.
        name: String,
        /// The file it was read from.
        path: PathBuf,
    },
}

/// A secret value and its source.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedSecret {
    /// The value (redacted in every print).
    pub value: Secret,
    /// Where it came from.
    #[serde(flatten)]
    pub source: SecretSource,
}

/// Reads `raw` for `key`. `credentials_dir` is `$CREDENTIALS_DIRECTORY`, if set.
pub(crate) fn read(
    key: &'static str,
    raw: RawSecret,
    origin: &Origin,
    credentials_dir: Option<&Path>,
) -> Result<ResolvedSecret, ConfigError> {
    let (value, source) = match raw {
        RawSecret::Inline(value) => (value, SecretSource::Inline),
        RawSecret::File(file) => {
            let path = PathBuf::from(file.file);
            (read_file(key, &path)?, SecretSource::File { path })
        }
        RawSecret::Credential(cred) => {
            let name = cred.credential;
            // systemd credential names are file names; refuse anything that could walk out.
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    origin: origin.clone(),
                    reason: format!("credential name {name:?} must be a plain file name"),
                });
            }
            let dir = credentials_dir.ok_or_else(|| ConfigError::NoCredentialsDirectory {
                key,
                name: name.clone(),
            })?;
            let path = dir.join(&name);
            (
                read_file(key, &path)?,
                SecretSource::Credential { name, path },
            )
        }
    };
    if value.is_empty() {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            origin: origin.clone(),
            reason: "the secret is empty".to_owned(),
        });
    }
    Ok(ResolvedSecret {
        value: Secret::new(value),
        source,
    })
}

/// Opens first and checks the opened file, so the file checked is the file read.
fn read_file(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let read_err = |source| ConfigError::SecretFileRead {
        key,
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(ConfigError::SecretFileNotRegular {
            key,
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::SecretFileMode {
            key,
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_err)?;
    // `echo secret > file` adds one newline; strip exactly that one.
    if let Some(stripped) = text.strip_suffix('\n') {
        let stripped = stripped.strip_suffix('\r').unwrap_or(stripped);
        text.truncate(stripped.len());
    }
    Ok(text)
}
