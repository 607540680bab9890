use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use devcert::error::{Error, Result};
use devcert::output::{Mode, Staged, commit_all, stage, write_stdout};

use super::Cli;

/// Print the man page, or write one page per command into a folder
#[derive(Args)]
#[command(after_help = "\
Examples:
  devcert man | man -l -                  # read it now
  devcert man -o /usr/local/share/man/man1 # devcert.1, devcert-issue.1, ...")]
pub struct ManArgs {
    /// Folder for devcert.1 and one devcert-COMMAND.1 per command
    /// (absent: devcert.1 on standard output)
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace existing pages in the folder
    #[arg(long, requires = "out")]
    force: bool,
}

pub fn run(a: ManArgs) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building names the subcommands `devcert-issue` etc. for their pages.
    cmd.build();
    let Some(dir) = a.out else {
        return write_stdout(&render(&clap_mangen::Man::new(cmd), Path::new("-"))?);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io("cannot create output folder", dir.display().to_string(), &e))?;
    let mut staged = Vec::new();
    stage_pages(&cmd, &dir, &mut staged)?;
    // All pages or none, like `issue`'s five files.
    commit_all(staged, a.force)
}

fn stage_pages(cmd: &clap::Command, dir: &Path, staged: &mut Vec<Staged>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        stage_pages(sub, dir, staged)?;
    }
    let page = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(page.get_filename());
    staged.push(stage(&path, &render(&page, &path)?, Mode::Public)?);
    Ok(())
}

fn render(page: &clap_mangen::Man, path: &Path) -> Result<Vec<u8>> {
    let mut roff = Vec::new();
    page.render(&mut roff)
        .map_err(|e| Error::io("cannot write man page", path.display().to_string(), &e))?;
    Ok(roff)
}
