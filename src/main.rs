#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use secure_api::cli::{Cli, Command};
use secure_api::commands::{self, NegativeOutcome};

fn main() -> ExitCode {
    // clap exits 2 on usage errors and 0 for --help/--version.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(*args),
        Command::Migrate(args) => commands::migrate::run(args),
        Command::CreateAdmin(args) => commands::create_admin::run(args),
        Command::Backup(args) => commands::backup::run(args),
        Command::InitSecrets(args) => commands::init_secrets::run(args),
        Command::Unlock(args) => commands::unlock::run(args),
        Command::ResetTwoFactor(args) => commands::reset_two_factor::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<NegativeOutcome>() {
                Some(outcome) => eprintln!("secure-api: {outcome}"),
                // The whole cause chain, once, on one line.
                None => eprintln!("secure-api: error: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
