use clap::{Args, CommandFactory};
use clap_complete::Shell;
use devcert::error::Result;

use super::Cli;

/// Print a shell completion script (bash, zsh, fish, powershell, elvish)
#[derive(Args)]
#[command(after_help = "\
Examples:
  source <(devcert completions bash)                         # this bash session
  devcert completions bash > ~/.local/share/bash-completion/completions/devcert
  devcert completions zsh > \"${fpath[1]}/_devcert\"
  devcert completions fish > ~/.config/fish/completions/devcert.fish
  devcert completions powershell >> $PROFILE")]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

pub fn run(a: CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "devcert", &mut script);
    devcert::output::write_stdout(&script)
}
