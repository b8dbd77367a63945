//! `authstore completions SHELL` and `authstore man`: shell completions and the man page,
//! generated from the same clap definitions as the parser, so they can never disagree with it.

use std::io::Write;

use authstore::error::Error;
use clap::CommandFactory;

use super::{Cli, exit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Prints the completion script for `args.shell` on stdout.
pub(crate) fn run(args: &Args) -> Result<u8, Error> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "authstore", &mut script);
    Ok(print(&script))
}

/// Prints the man page (roff, section 1) on stdout.
pub(crate) fn run_man() -> Result<u8, Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Error::invalid_input(format!("cannot render the man page: {e}")))?;
    Ok(print(&page))
}

fn print(bytes: &[u8]) -> u8 {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not worth a panic.
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => exit::SUCCESS,
        Err(_) => exit::OTHER,
    }
}
