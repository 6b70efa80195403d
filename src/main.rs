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
    let cli = match attnmap::cli::try_parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
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

/// clap's usage errors as one line in the house form (`attnmap: error: …` with its tip
/// and where to look), so the error is always the last line of stderr; help and
/// --version print as clap prints them.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
        error.exit();
    }
    let rendered = error.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let mut usage = None;
    for line in lines {
        if let Some(tip) = line.strip_prefix("tip: ") {
            message.push_str(&format!("; {tip}"));
        } else if let Some(text) = line.strip_prefix("Usage: ") {
            usage = Some(text.to_string());
        } else if usage.is_none() && !line.starts_with("For more information") {
            // The missing arguments, the possible values: part of the message.
            message.push_str(&format!(" {line}"));
        }
    }
    // "attnmap show [OPTIONS] ..." names the subcommand whose --help to suggest.
    let command = usage.as_deref().and_then(|u| u.split_whitespace().nth(1)).filter(|w| !w.starts_with(['[', '<', '-']));
    let help = command.map(|c| format!("attnmap {c} --help")).unwrap_or_else(|| "attnmap --help".into());
    // Coloured as every other error line: --color, NO_COLOR, CI, a terminal.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let ui = Ui::new(false, attnmap::cli::color_flag(&args).unwrap_or_default());
    eprintln!("{}", ui.error_line(&format!("{message} (see '{help}')")));
    ExitCode::from(2)
}
