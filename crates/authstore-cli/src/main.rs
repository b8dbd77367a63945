//! `authstore`: the command-line tool. See `authstore --help` and the README; the command line
//! itself is the `authstore_cli` library, which the Python package's `authstore` command runs too.

fn main() -> std::process::ExitCode {
    authstore_cli::main()
}
