//! The `devcert` binary: parse arguments, run, map the outcome to an exit
//! code (0 ok, 1 failed, 2 usage — clap's own, 3 a verdict said no).

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            cli::report_error(&e);
            ExitCode::from(1)
        }
    }
}
