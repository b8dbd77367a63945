//! `authstore`: the command-line tool. See `authstore --help` and the README.

mod cli;
mod demo;

fn main() -> std::process::ExitCode {
    cli::main()
}
