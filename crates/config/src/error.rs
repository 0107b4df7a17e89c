//! Errors from reading and validating a topology file.

use std::path::PathBuf;

/// A topology file that cannot be used.
///
/// `Display` names the file, the key path (`nodes[2].role`) and what was expected, so an
/// operator can fix the file without reading code. Nothing is started when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type or an unknown key.
    #[error("{file}: {key}: {message}{location}")]
    Parse {
        /// The file, or `<built-in default farm>`.
        file: String,
        /// The key path, such as `nodes[2].role`; `.` for the top level.
        key: String,
        /// What is wrong and what is expected.
        message: String,
        /// ` (line L, column C)` when known, else empty.
        location: String,
    },
    /// The file parses, but describes a farm that cannot run.
    #[error("{file}: {}", .problems.join(&format!("\n{file}: ")))]
    Invalid {
        /// The file, or `<built-in default farm>`.
        file: String,
        /// One line per problem: `key.path: what is wrong; what is expected`.
        problems: Vec<String>,
    },
}
