//! How attnmap talks to the person at the terminal: quiet, colour, progress bars.
//!
//! Every command gets one [`Ui`] from the command line and asks it, never the
//! environment, whether to draw a progress bar or colour a line, so `--quiet`,
//! `--color`, `NO_COLOR` and `CI` mean the same thing everywhere.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--color`: when to colour output and draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set or CI=true.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// The same choice for clap's own help and errors. clap's `auto` already stops in a pipe
    /// and under NO_COLOR, but colours CI logs; ours does not.
    pub fn for_clap(self) -> clap::ColorChoice {
        match self {
            ColorChoice::Always => clap::ColorChoice::Always,
            ColorChoice::Never => clap::ColorChoice::Never,
            ColorChoice::Auto if env_set("NO_COLOR") || ci() => clap::ColorChoice::Never,
            ColorChoice::Auto => clap::ColorChoice::Auto,
        }
    }
}

/// What the user asked of the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    /// `--quiet`: nothing on stderr but errors and warnings.
    pub quiet: bool,
    pub color: ColorChoice,
}

impl Ui {
    pub fn new(quiet: bool, color: ColorChoice) -> Self {
        Self { quiet, color }
    }

    /// Whether decorations (colour, progress) may go to a stream that is or is not a terminal.
    fn decorate(&self, is_terminal: bool) -> bool {
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && !env_set("NO_COLOR") && !ci(),
        }
    }

    /// Colour on stdout.
    pub fn color_stdout(&self) -> bool {
        self.decorate(std::io::stdout().is_terminal())
    }

    /// Colour on stderr.
    pub fn color_stderr(&self) -> bool {
        self.decorate(std::io::stderr().is_terminal())
    }

    /// Progress bars go to stderr, on a terminal, never under --quiet, in a pipe or in CI
    /// (unless `--color always`).
    pub fn progress(&self) -> bool {
        !self.quiet && self.decorate(std::io::stderr().is_terminal())
    }

    /// A progress bar for `total` steps of `unit` (hidden when [`Ui::progress`] says no).
    pub fn progress_bar(&self, total: u64, unit: &str) -> ProgressBar {
        if !self.progress() {
            return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        }
        // indicatif's stderr target stays blank off a terminal; `--color always` asked for the
        // bar anyway (a log that keeps it), so draw on stderr as it is.
        let target = match self.color {
            ColorChoice::Always => ProgressDrawTarget::term_like(Box::new(console::Term::stderr())),
            _ => ProgressDrawTarget::stderr(),
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) =
            ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} {{elapsed}}"))
        {
            bar.set_style(style);
        }
        bar
    }

    /// `attnmap: error: MESSAGE`, the `error:` in bold red where stderr may be coloured, as clap's own.
    pub fn error_line(&self, message: &str) -> String {
        if self.color_stderr() {
            format!("attnmap: \x1b[1;31merror:\x1b[0m {message}")
        } else {
            format!("attnmap: error: {message}")
        }
    }
}

/// NO_COLOR's rule: set and not empty.
fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// CI systems set CI=true (GitHub Actions, GitLab, CircleCI, ...).
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}
