//! `attnmap dump --texts FILE --out DIR [--shard K/N]`: a corpus, one dump per text.
//!
//! ```text
//! DIR/00001/ ...     the dump of the 1st text of FILE (the layout of a single `dump`)
//! DIR/index.jsonl    one line per dump present: {"line", "of", "text", "pair", "tokens", "folder"}
//! ```
//! Each text's folder is built beside itself and renamed into place, so a folder holding
//! manifest.json is complete: a rerun keeps those (same text, same model) and computes the
//! rest. The index is rebuilt from the folders present, never from what this run did, so
//! shards writing into one DIR (each rewriting the index under a lock) or copied together
//! afterwards give the same bytes as one unsharded run. Nothing in a corpus names the
//! machine, the time or the run.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::dump::{check_input, hash_weights, requested_views, weight_files, write_dump};
use super::{encode, open_model, read_probe_file};
use crate::cli::DumpArgs;
use crate::error::{Error, Result};
use crate::output::{check_target_dir, with_lock, write_file};
use crate::ui::Ui;

use super::read_dumps::INDEX;

/// `--shard K/N`: this run takes the texts whose 0-based position p has p % N == K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parse `K/N` (K in 0..N-1).
    pub fn parse(value: &str) -> Result<Self> {
        let bad = |why: &str| Error::Usage(format!("--shard {value:?}: {why}; write K/N with K in 0..N-1, e.g. --shard 0/4 (Slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"));
        let (k, n) = value.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: usize = k.trim().parse().map_err(|_| bad("K is not a whole number"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("N is not a whole number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad(&format!("K must be below N (shards count from 0: 0/{count} .. {}/{count})", count - 1)));
        }
        Ok(Self { index, count })
    }

    fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// The folder of the text at 1-based `number`.
fn folder_name(number: usize) -> String {
    format!("{number:05}")
}

pub fn run(args: &DumpArgs, texts: &Path, ui: &Ui) -> Result<()> {
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?.unwrap_or(Shard { index: 0, count: 1 });
    let target = args.out.clone();
    // The usual checks (parent exists, not a file, not the current folder); emptiness is ours.
    check_target_dir(&target, true)?;
    check_is_corpus(&target)?;
    let probes = read_probe_file(texts, args.input.pair.as_deref())?;
    let session = open_model(&args.model, ui)?;
    let model = session.loaded.model.as_ref();
    let views = requested_views(&args.views);
    let weights = weight_files(&session.files);
    let hashes = hash_weights(&weights)?;
    match fs::create_dir(&target) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::output(&target, e)),
        _ => {}
    }

    let mine: Vec<usize> = (0..probes.len()).filter(|&p| shard.takes(p)).collect();
    let progress = ui.progress_bar(mine.len() as u64, "texts");
    let hidden = indicatif::ProgressBar::hidden();
    let (mut written, mut kept) = (0usize, 0usize);
    for position in mine {
        let number = position + 1;
        let folder = target.join(folder_name(number));
        let probe = &probes[position];
        match existing(&folder, probe, &session.files.id, &hashes, &views, args.words) {
            Existing::Same if !args.force => {
                kept += 1;
                progress.inc(1);
                continue;
            }
            Existing::Other(what) if !args.force => {
                return Err(Error::output(&folder, format!("holds {what}, not text {number} of {} with this model and these options; pass --force to recompute it, or choose another --out", texts.display())));
            }
            _ => {}
        }
        let input = encode(&session, probe)?;
        check_input(model.info(), &input, &views, args, &target).map_err(|e| at_text(e, number))?;
        write_dump(&folder, &target, args.force, &session, &weights, || Ok(hashes.clone()), &input, &views, args, &hidden, true)?;
        written += 1;
        progress.inc(1);
    }
    let indexed = with_lock(&target.join(INDEX), || write_index(&target, probes.len()))?;
    progress.finish_and_clear();
    if !ui.quiet {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        eprintln!(
            "attnmap: wrote {written} dump{}, kept {kept} complete one{}; {} holds {indexed} of {} texts",
            plural(written),
            plural(kept),
            target.display(),
            probes.len()
        );
    }
    Ok(())
}

/// Name the text an input error is about.
fn at_text(error: Error, number: usize) -> Error {
    match error {
        Error::Input(message) => Error::Input(format!("text {number}: {message}")),
        other => other,
    }
}

/// Refuse a non-empty DIR that is not a corpus (anything besides NNNNN/ folders, the index
/// and hidden work files): a corpus is resumed in place, so it never replaces a folder whole.
fn check_is_corpus(target: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(target) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text_folder = name.len() == 5 && name.bytes().all(|b| b.is_ascii_digit()) && entry.path().is_dir();
        if !(name.starts_with('.') || name == INDEX || text_folder) {
            return Err(Error::output(
                target,
                format!("exists and is not an attnmap corpus (it holds {name:?}); choose another --out (a corpus folder holds only 00001/, 00002/, ... and index.jsonl, and is resumed without --force)"),
            ));
        }
    }
    Ok(())
}

enum Existing {
    Missing,
    Same,
    Other(String),
}

/// What a text's folder holds: nothing, a complete dump of this text with this model and
/// these options, or something else (described).
fn existing(folder: &Path, (text, pair): &(String, Option<String>), model: &str, hashes: &[String], views: &[crate::analysis::views::View], words: bool) -> Existing {
    if !folder.exists() {
        return Existing::Missing;
    }
    let Some(manifest) = fs::read(folder.join("manifest.json")).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) else {
        return Existing::Other("no readable manifest.json".into());
    };
    let views_there: Vec<&str> = manifest["views"].as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    let mut wanted: Vec<&str> = views.iter().map(|v| v.name()).collect();
    let mut there = views_there.clone();
    wanted.sort_unstable();
    there.sort_unstable();
    if manifest["text"].as_str() != Some(text) || manifest["pair"].as_str() != pair.as_deref() {
        Existing::Other("the dump of another text".into())
    } else if manifest["model"].as_str() != Some(model) || manifest["weights_sha256"].as_str() != hashes.first().map(String::as_str) {
        Existing::Other("a dump by another model".into())
    } else if wanted != there || manifest["words"].is_null() == words {
        Existing::Other("a dump with other --views or --words".into())
    } else {
        Existing::Same
    }
}

/// Rewrite DIR/index.jsonl from the complete text folders present, in order; returns their count.
/// Each line says how many texts the probe file holds ("of"), so a reader sees texts missing at the end.
fn write_index(target: &Path, total: usize) -> Result<usize> {
    let mut folders: Vec<(usize, PathBuf)> = fs::read_dir(target)
        .map_err(|e| Error::output(target, e))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = (name.len() == 5).then(|| name.parse::<usize>().ok()).flatten()?;
            Some((number, entry.path()))
        })
        .collect();
    folders.sort();
    let mut index = String::new();
    let mut count = 0;
    for (number, folder) in folders {
        let Some(manifest) = fs::read(folder.join("manifest.json")).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) else { continue };
        let line = json!({
            "line": number,
            "of": total,
            "text": manifest["text"],
            "pair": manifest["pair"],
            "tokens": manifest["seq_len"],
            "folder": folder_name(number),
        });
        index.push_str(&line.to_string());
        index.push('\n');
        count += 1;
    }
    write_file(&target.join(INDEX), index.as_bytes())?;
    Ok(count)
}
