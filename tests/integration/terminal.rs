//! attnmap as an installed command: help and examples for every subcommand, completion
//! scripts, the man page, and colour and progress that follow --color, NO_COLOR and CI.
//! The subcommand list comes from the clap Command, so subcommands added later are covered.

use std::process::{Command, Output};

use attnmap::cli::Cli;
use clap::CommandFactory;

use crate::helpers::{attnmap, stderr, tiny_bert_dir};

const ESC: u8 = 0x1b;

/// Every subcommand a user can type, clap's `help` aside.
fn subcommands() -> Vec<String> {
    Cli::command().get_subcommands().map(|sub| sub.get_name().to_string()).collect()
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&ESC)
}

/// The binary run in a pseudo-terminal by util-linux's `script`, so its stdout and stderr
/// are a terminal; returns what the terminal showed.
fn on_a_terminal(args: &str, envs: &[(&str, &str)]) -> Vec<u8> {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_attnmap"));
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]).env_remove("NO_COLOR").env_remove("CI");
    for (key, value) in envs {
        script.env(key, value);
    }
    let output = script.output().expect("`script` (Debian's bsdutils) runs the binary in a pseudo-terminal");
    assert!(output.status.success(), "{args}: {}", String::from_utf8_lossy(&output.stdout));
    output.stdout
}

/// Run a shell command, returning its output (and failing the test if the shell is missing).
fn sh(shell: &str, script: &str) -> Output {
    Command::new(shell).args(["-c", script]).output().unwrap_or_else(|e| panic!("{shell}: {e}"))
}

#[test]
fn help_of_every_subcommand_teaches_by_example() {
    let names = subcommands();
    assert!(names.len() >= 6, "{names:?}");
    for name in &names {
        let by_help = attnmap(&["help", name], &[("NO_COLOR", "1")]);
        let by_flag = attnmap(&[name, "--help"], &[("NO_COLOR", "1")]);
        for output in [&by_help, &by_flag] {
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "attnmap help {name}: {}", stderr(output));
            assert!(text.contains("Examples:\n  "), "attnmap help {name} has no examples:\n{text}");
            assert!(text.contains(&format!("attnmap {name}")), "attnmap help {name}: no example runs it:\n{text}");
        }
        assert_eq!(by_help.stdout, by_flag.stdout, "`attnmap help {name}` and `attnmap {name} --help` agree");
    }
    let top = attnmap(&["help"], &[]);
    assert!(top.status.success() && String::from_utf8_lossy(&top.stdout).contains("Examples:"));
}

/// In a pipe (as here) and under NO_COLOR, nothing carries escape bytes: help, an error
/// from clap, and an error from attnmap. `--color always` does colour them, so the check
/// can fail.
#[test]
fn pipes_and_no_color_get_no_escape_bytes() {
    let missing = std::env::temp_dir().join("attnmap-no-such-model");
    let missing = missing.to_str().unwrap();
    let mut runs: Vec<Vec<&str>> = vec![vec!["--help"], vec!["--frobnicate"], vec!["info", "--model", missing]];
    let names = subcommands();
    for name in &names {
        runs.push(vec!["help", name]);
        runs.push(vec![name, "--help"]);
    }
    for args in &runs {
        for envs in [&[][..], &[("NO_COLOR", "1")][..], &[("CI", "true")][..], &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "0")][..]] {
            let output = attnmap(args, envs);
            assert!(!has_escape(&output.stdout) && !has_escape(&output.stderr), "attnmap {args:?} with {envs:?} wrote escape bytes:\n{}{}", String::from_utf8_lossy(&output.stdout), stderr(&output));
        }
        let mut never = vec!["--color", "never"];
        never.extend(args);
        let output = attnmap(&never, &[]);
        assert!(!has_escape(&output.stdout) && !has_escape(&output.stderr), "attnmap {never:?}");
    }
    let help = attnmap(&["--color", "always", "--help"], &[("NO_COLOR", "1")]);
    assert!(has_escape(&help.stdout), "--color always colours help even in a pipe, over NO_COLOR");
    let clap_error = attnmap(&["--color=always", "--frobnicate"], &[]);
    assert!(has_escape(&clap_error.stderr) && clap_error.status.code() == Some(2));
    let our_error = attnmap(&["info", "--color", "always", "--model", missing], &[]);
    assert_eq!(our_error.status.code(), Some(2));
    assert!(stderr(&our_error).contains("attnmap: \u{1b}[1;31merror:\u{1b}[0m "), "{}", stderr(&our_error));
}

/// On a terminal, clap's help is coloured; NO_COLOR, CI=true and --color never stop it
/// (clap alone would colour under CI), and --color always wins over CI.
#[test]
fn a_terminal_gets_colour_unless_no_color_or_ci() {
    assert!(has_escape(&on_a_terminal("--help", &[])), "help on a terminal is coloured");
    assert!(!has_escape(&on_a_terminal("--help", &[("NO_COLOR", "1")])));
    assert!(!has_escape(&on_a_terminal("--help", &[("CI", "true")])));
    assert!(!has_escape(&on_a_terminal("--color never --help", &[])));
    assert!(!has_escape(&on_a_terminal("dump --help", &[("CI", "true")])));
    assert!(has_escape(&on_a_terminal("--color always --help", &[("CI", "true")])));
}

/// The progress bar of `dump`: drawn on a terminal, never in a pipe or under CI=true or
/// --quiet, and drawn anyway with --color always (asked for).
#[test]
fn progress_bars_follow_the_terminal_rules() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_bert_dir();
    let dump = |name: &str, extra: &str, envs: &[(&str, &str)]| {
        let out = dir.path().join(name);
        on_a_terminal(&format!("dump 'the cat sat' --model {} --out {} {extra}", model.display(), out.display()), envs)
    };
    // Any drawn state of the bar ("N/9 maps"): indicatif limits its redraw rate, so which
    // states reach the terminal depends on timing; that one does, or none, does not.
    let bar = "/9 maps".as_bytes();
    let contains = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&dump("tty", "", &[]), bar), "a terminal shows the bar");
    for (name, extra, envs) in [("ci", "", &[("CI", "true")][..]), ("no-color", "", &[("NO_COLOR", "1")][..]), ("quiet", "-q", &[][..]), ("never", "--color never", &[][..])] {
        let shown = dump(name, extra, envs);
        assert!(!contains(&shown, bar) && !has_escape(&shown), "{name}: {}", String::from_utf8_lossy(&shown));
    }
    let piped = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["dump", "the cat sat", "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend(extra);
        let output = attnmap(&args, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        output.stderr
    };
    let plain = piped("pipe", &[]);
    assert!(!contains(&plain, bar) && !has_escape(&plain), "{}", String::from_utf8_lossy(&plain));
    assert!(contains(&piped("always", &["--color", "always"]), bar), "--color always draws the bar in a pipe");
}

#[test]
fn completion_scripts_load_in_their_shells() {
    let dir = tempfile::tempdir().unwrap();
    let names = subcommands();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = attnmap(&["completions", shell], &[]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.len() > 1000, "{shell}: a short script:\n{script}");
        for name in &names {
            assert!(script.contains(name.as_str()), "{shell} completes no {name}");
        }
        std::fs::write(dir.path().join(shell), &script).unwrap();
    }
    let bash = dir.path().join("bash");
    let bash = bash.to_str().unwrap();
    let syntax = sh("bash", &format!("bash -n {bash}"));
    assert!(syntax.status.success(), "{}", stderr(&syntax));
    // Sourced, it registers a completion for attnmap, which offers the subcommands.
    let loaded = sh("bash", &format!("source {bash} && complete -p attnmap && COMP_WORDS=(attnmap d) COMP_CWORD=1 COMP_LINE='attnmap d' COMP_POINT=9 && _attnmap attnmap d attnmap && echo \"${{COMPREPLY[@]}}\""));
    let shown = String::from_utf8_lossy(&loaded.stdout);
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    assert!(shown.contains("-F _attnmap attnmap"), "{shown}");
    let offered: Vec<&str> = shown.lines().last().unwrap_or_default().split_whitespace().collect();
    assert!(offered.contains(&"dump") && offered.contains(&"diff") && !offered.contains(&"info"), "{shown}");
    // zsh and fish check their syntax where installed (CI installs neither: generated and non-empty above).
    for (shell, check) in [("zsh", "zsh -n"), ("fish", "fish --no-execute")] {
        if Command::new(shell).arg("--version").output().is_ok() {
            let output = sh("bash", &format!("{check} {}", dir.path().join(shell).display()));
            assert!(output.status.success(), "{shell}: {}", stderr(&output));
        }
    }
    let wrong = attnmap(&["completions", "tcsh"], &[]);
    assert_eq!(wrong.status.code(), Some(2));
}

/// The man page renders with groff's warnings on and none given, through man(1) too, and
/// covers every subcommand with its options and examples, the exit codes and the environment.
#[test]
fn man_page_renders_without_warnings_and_covers_every_subcommand() {
    let output = attnmap(&["man"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("attnmap.1");
    std::fs::write(&page, &output.stdout).unwrap();
    let groff = Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]).arg(&page).output();
    let groff = groff.expect("groff is needed to check the man page: apt-get install groff-base (.ci/run does)");
    assert!(groff.status.success() && groff.stderr.is_empty(), "groff warns:\n{}", stderr(&groff));
    let man = Command::new("man").args(["--warnings", "-l"]).arg(&page).env("MANWIDTH", "100").env("MANPAGER", "cat").env_remove("MAN_KEEP_FORMATTING").output();
    let man = man.expect("man is needed to check the man page: apt-get install man-db (.ci/run does)");
    assert!(man.status.success() && man.stderr.is_empty(), "man -l warns:\n{}", stderr(&man));
    let text = String::from_utf8_lossy(&man.stdout);
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXAMPLES", "EXIT STATUS", "ENVIRONMENT"] {
        assert!(text.lines().any(|line| line == section), "no {section} section:\n{text}");
    }
    let command = Cli::command();
    for sub in command.get_subcommands() {
        let name = sub.get_name();
        assert!(text.lines().any(|line| line == format!("ATTNMAP {}", name.to_uppercase())), "no section for {name}");
        for arg in sub.get_arguments().filter_map(|arg| arg.get_long()) {
            assert!(text.contains(&format!("--{arg}")), "{name} --{arg} missing from the page");
        }
        let help = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
        let first_example = help.lines().find(|line| line.starts_with("  attnmap")).unwrap().trim();
        assert!(text.contains(first_example), "{name}'s example {first_example:?} missing from the page");
    }
    assert!(text.contains("--fail-above") && text.contains("HF_HUB_OFFLINE") && text.contains("NO_COLOR"));
}

