//! `authstore`: the command-line tool. See `authstore --help` and the README.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
