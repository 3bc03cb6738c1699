//! One file per subcommand. Each returns `anyhow::Result`; `main` prints the
//! error chain once and picks the exit code.

pub mod backup;
pub mod create_admin;
pub mod init_secrets;
pub mod migrate;
pub mod reset_two_factor;
pub mod serve;
pub mod unlock;

/// A command that ran but has a negative answer (e.g. `migrate --check` with a
/// pending migration): exit 1 after printing `message`, which is not an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NegativeOutcome(pub String);
