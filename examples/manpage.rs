//! Writes the secure-api(1) man page, generated from the same clap
//! definitions as `--help`, to stdout (used by packaging/build-deb).

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let command = secure_api::cli::Cli::command();
    clap_mangen::Man::new(command).render(&mut std::io::stdout())
}
