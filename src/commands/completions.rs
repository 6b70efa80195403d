//! `attnmap completions SHELL`: the shell's completion script, generated from the clap
//! Command, so every subcommand and flag (including ones added later) completes.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Result;
use crate::output::write_stdout;

pub fn run(args: &CompletionsArgs) -> Result<()> {
    write_stdout(&script(args.shell))
}

/// The completion script for `shell`, for the binary named `attnmap`.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "attnmap", &mut script);
    script
}
