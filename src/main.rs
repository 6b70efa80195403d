//! The attnmap binary: parse, dispatch, map errors to exit codes.

use std::process::ExitCode;

use attnmap::cli::Command;
use attnmap::commands;
use attnmap::ui::Ui;

fn main() -> ExitCode {
    // A bug must still end in one readable line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        if attnmap::error::panic_is_contained() {
            return;
        }
        eprintln!("attnmap: internal error: {info}; please report this with the command you ran");
    }));
    attnmap::output::clean_up_on_interrupt();
    let cli = attnmap::cli::parse(std::env::args_os());
    // Ok(false) is diff(1)'s "a difference was found": exit 1.
    let ui = Ui::new(cli.quiet, cli.color);
    let result = match &cli.command {
        Command::Show(args) => commands::show::run(args, &ui).map(|()| true),
        Command::Dump(args) => commands::dump::run(args, &ui).map(|()| true),
        Command::Diff(args) => commands::diff::run(args, &ui),
        Command::Info(args) => commands::info::run(args, &ui).map(|()| true),
        Command::View(args) => commands::view::run(args, &ui).map(|()| true),
        Command::Heads(args) => commands::heads::run(args, &ui).map(|()| true),
        Command::Find(args) => commands::find::run(args, &ui).map(|()| true),
        Command::Completions(args) => commands::completions::run(args).map(|()| true),
        Command::Man(args) => commands::man::run(args).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("{}", ui.error_line(&error.to_string()));
            ExitCode::from(2)
        }
    }
}
