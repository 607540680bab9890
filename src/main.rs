//! The `devcert` binary: parse arguments, run, map the outcome to an exit
//! code (0 ok, 1 failed, 2 usage — clap's own, 3 a verdict said no).

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches};

mod cli;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    protect_passphrase_vars(&matches);
    let args = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            cli::report_error(&e);
            ExitCode::from(1)
        }
    }
}

/// Every variable named by a `*passphrase_env` option, in any subcommand,
/// is one a config's `$ENV::` must not copy.
fn protect_passphrase_vars(m: &ArgMatches) {
    for id in m.ids().filter(|id| id.as_str().ends_with("passphrase_env")) {
        if let Ok(Some(vars)) = m.try_get_many::<String>(id.as_str()) {
            vars.for_each(|v| devcert::passphrase::protect_env_var(v));
        }
    }
    if let Some((_, sub)) = m.subcommand() {
        protect_passphrase_vars(sub);
    }
}
