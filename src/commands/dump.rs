//! `attnmap dump`: every head of a model to a folder with a stable layout.
//!
//! ```text
//! DIR/attention.npy          float32, C order, [layers, heads, seq, seq]
//! DIR/manifest.json          model, revision, weights sha256, tokens, ids, files
//! DIR/heads/L{ll}_H{hh}.png  one heatmap per head
//! DIR/grid.png               every head at a glance (layers x heads)
//! DIR/view.html              the interactive viewer of every head (self-contained)
//! DIR/heads/*.svg, grid.svg  with --svg
//! DIR/norm.npy, norm/L{ll}_H{hh}.png        with --views norm: [layers, heads, seq, seq]
//! DIR/rollout.npy, rollout/L{ll}.png        with --views rollout: [layers, seq, seq]
//! DIR/flow.npy, flow/L{ll}.png              with --views flow: [layers, seq, seq]
//! DIR/words/{attention,norm,...}.npy        with --words: the same arrays over words
//! ```
//! The folder is built as a hidden sibling and renamed into place when
//! complete, so an interrupted dump never leaves a half folder at DIR.
//! The maps stream: each layer is written, drawn and dropped as the forward pass
//! computes it (`dump_sink`), so memory holds one layer whatever the model's size;
//! what limits a dump is the disk, checked up front ([`check_disk`]).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::analysis::views::{check_flow_size, View};
use crate::capture::Capture;
use crate::cli::DumpArgs;
use crate::error::{Error, Result};
use crate::output::{check_target_dir, npy_header, write_staged, StagedDir};
use crate::render::html;
use crate::tokenize::Encoded;
use crate::ui::Ui;

use super::dump_sink::{picture_file, view_array, DumpPlan, DumpSink, Finished};
use super::{encode, find_model, load_found, model_name, read_input};

/// Version of the dump layout; bumped only when a script reading dumps would break.
pub const LAYOUT_VERSION: u32 = 1;

pub fn run(args: &DumpArgs, ui: &Ui) -> Result<()> {
    if let Some(texts) = &args.texts {
        return super::corpus::run(args, texts, ui);
    }
    if args.shard.is_some() {
        return Err(Error::Usage("--shard splits a corpus: use it with --texts FILE".into()));
    }
    let target = args.out.clone();
    let parent = check_target_dir(&target, args.force)?;
    let text = read_input(&args.input)?;
    let files = find_model(&args.model, ui)?;
    let weights = weight_files(&files);
    // Hash the weights while the model loads and runs: the manifest needs it, and it takes
    // one core while loading (the tokenizer above all) takes the other.
    // A refusal (bad input, no room) stops the hashing rather than waiting for it: a model
    // of many GB takes seconds to hash.
    let stop = AtomicBool::new(false);
    let (written, seq) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| hash_weights_until(&weights, &stop));
        let hashes = || hashing.join().unwrap_or_else(|_| Err(Error::Input("hashing the weights failed".into())));
        let dumped = (|| {
            let session = load_found(files, &args.model)?;
            let input = encode(&session, &text)?;
            let model = session.loaded.model.as_ref();
            let views = requested_views(&args.views);
            check_input(model.info(), &input, &views, args, &parent)?;
            let progress = ui.progress_bar((model.info().layers * model.info().heads) as u64 + 1, "maps");
            let written = write_dump(&target, &parent, args.force, &session, &weights, hashes, &input, &views, args, &progress, false)?;
            progress.finish_and_clear();
            Ok::<_, Error>((written, input.len()))
        })();
        stop.store(true, Ordering::Relaxed);
        dumped
    })?;
    if !ui.quiet {
        eprintln!("attnmap: wrote {} ({} heads, {} tokens)", target.display(), written, seq);
    }
    Ok(())
}

/// The weight files of the model, in the manifest's order.
pub(super) fn weight_files(files: &crate::source::ModelFiles) -> Vec<PathBuf> {
    files.weights.files().iter().map(|p| p.to_path_buf()).collect()
}

/// sha256 of every weight file.
pub(super) fn hash_weights(weights: &[PathBuf]) -> Result<Vec<String>> {
    hash_weights_until(weights, &AtomicBool::new(false))
}

/// [`hash_weights`], giving up (with an error nobody reads) once `stop` is set.
fn hash_weights_until(weights: &[PathBuf], stop: &AtomicBool) -> Result<Vec<String>> {
    weights.iter().map(|p| weights_sha256(p, stop)).collect()
}

/// Refuse, before the forward pass, an input whose dump would not fit on the disk under
/// `parent` (or whose flow would take forever).
pub(super) fn check_input(info: &crate::model::ArchInfo, input: &Encoded, views: &[View], args: &DumpArgs, parent: &Path) -> Result<()> {
    if views.contains(&View::Flow) {
        check_flow_size(info.layers, input.len())?;
    }
    let words = if args.words { crate::analysis::words::words(input).len() } else { 0 };
    check_disk(parent, estimate_bytes(info.layers, info.heads, input.len(), words, views, !args.no_pictures, args.svg))
}

/// Bytes a dump will take: its arrays exactly, its pictures and page as estimates.
pub(super) fn estimate_bytes(layers: usize, heads: usize, seq: usize, words: usize, views: &[View], pictures: bool, svg: bool) -> u64 {
    let array = |view: View, side: usize| -> u64 {
        let (_, shape) = view_array(view, layers, heads, side);
        npy_header(&shape).len() as u64 + 4 * shape.iter().map(|&d| d as u64).product::<u64>()
    };
    // A heatmap PNG: its labels and colour bar (~60 KB), plus the cells, which grow with the
    // tokens until the picture's size cap (measured on MiniLM: 59, 221 and 806 KB at most
    // at 20, 133 and 512 tokens). An SVG of the same map: about 4 times that.
    let picture = 64 * 1024 + 1600 * seq.min(1024) as u64;
    let mut bytes = 4 * 1024 * 1024; // grid.png (its tiles fit in ~2048 x 2048 pixels) and manifest.json
    for &view in views {
        bytes += array(view, seq);
        if words > 0 {
            bytes += array(view, words);
        }
        let maps = if view.per_head() { layers * heads } else { layers } as u64;
        if pictures {
            bytes += maps * picture * if svg && view == View::Weights { 5 } else { 1 };
        }
    }
    // view.html: 4/3 of a byte per weight (base64), when it fits on one page.
    let page_maps: usize = views.iter().map(|v| if v.per_head() { layers * heads } else { layers }).sum();
    let codes = html::packed_size(seq, page_maps);
    if codes <= html::MAX_CODES {
        bytes += codes as u64 * 4 / 3 + 64 * 1024;
    }
    bytes
}

/// Refuse a dump of `needed` bytes when the file system holding `parent` has less free
/// space (for an unprivileged user), naming both: nothing is written then.
fn check_disk(parent: &Path, needed: u64) -> Result<()> {
    let Some(free) = free_bytes(parent) else { return Ok(()) };
    if needed > free {
        return Err(Error::Input(format!(
            "this dump needs about {} but {} has {} free; free some space, choose another --out, or write less (--no-pictures, fewer --views, a shorter text)",
            human_bytes(needed),
            parent.display(),
            human_bytes(free)
        )));
    }
    Ok(())
}

/// Free bytes for this user on the file system holding `path` (statvfs), `None` if unknown.
/// ATTNMAP_FREE_BYTES stands in for the answer: for the tests only (no test can fill a disk).
fn free_bytes(path: &Path) -> Option<u64> {
    if let Some(bytes) = std::env::var("ATTNMAP_FREE_BYTES").ok().and_then(|v| v.parse().ok()) {
        return Some(bytes);
    }
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a statvfs the call fills.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    // A file system with no size (proc, sysfs, some FUSE ones) says nothing about space.
    if stats.f_blocks == 0 {
        return None;
    }
    Some((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

/// Run the model on `input` and write its dump (the layout above) into `target`, built
/// beside it in `parent` and renamed into place; returns the number of heads. Each layer is
/// written and dropped as it is computed (`dump_sink`). `portable` leaves out what names this
/// machine (the model's folder in "source"), so a corpus is the same wherever it was computed.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_dump(
    target: &Path,
    parent: &Path,
    force: bool,
    session: &super::Session,
    weights: &[PathBuf],
    hashes: impl FnOnce() -> Result<Vec<String>>,
    input: &Encoded,
    views: &[View],
    args: &DumpArgs,
    progress: &indicatif::ProgressBar,
    portable: bool,
) -> Result<usize> {
    let model = session.loaded.model.as_ref();
    let info = model.info();
    let (layers, heads, seq, causal) = (info.layers, info.heads, input.len(), info.causal);
    let pictures = !args.no_pictures;

    let staging = StagedDir::create(target, parent, force)?;
    let root = staging.path();
    let name = model_name(&session.files);
    // The page holds every map: pack them as they pass only if it will be written.
    let ranks: Vec<usize> = views.iter().map(|&v| view_array(v, layers, heads, seq).1.len()).collect();
    let all: Vec<usize> = (0..layers).collect();
    let page_fits = super::view::check_page_size(target, seq, ranks.iter().copied(), &all, &(0..heads).collect::<Vec<_>>(), layers);
    let plan = DumpPlan { root, name: &name, input, layers, heads, causal, views, args, pictures, page: page_fits.is_ok(), progress };
    let mut sink = DumpSink::new(plan)?;
    Capture::stream(model, input, views.contains(&View::Norm), &mut sink)?;
    let Finished { page: packed, grid } = sink.finish()?;
    let hashes = hashes()?;

    let mut files = vec!["attention.npy".to_string()];
    if pictures {
        for layer in 0..layers {
            for head in 0..heads {
                files.push(picture_file(View::Weights, layer, head, false));
                if args.svg {
                    files.push(picture_file(View::Weights, layer, head, true));
                }
            }
        }
    }
    files.push("grid.png".into());
    if args.svg {
        files.push("grid.svg".into());
    }
    let (view_manifest, words_manifest) = view_entries(input, layers, heads, views, args, pictures, &mut files);
    files.push("manifest.json".into());

    let files_meta = &session.files;
    let manifest = json!({
        "attnmap_version": env!("CARGO_PKG_VERSION"),
        "layout_version": LAYOUT_VERSION,
        "model": files_meta.id,
        "source": if portable { serde_json::Value::Null } else { files_meta.describe().into() },
        "revision": files_meta.revision,
        "commit": files_meta.commit,
        "weights": weights.iter().zip(&hashes).map(|(path, sha)| json!({
            "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "sha256": sha,
        })).collect::<Vec<_>>(),
        "weights_sha256": hashes.first(),
        "weights_format": files_meta.weights.format(),
        "precision": session.loaded.precision,
        "architecture": session.loaded.model_type,
        "layers": layers,
        "heads": heads,
        "kv_heads": info.kv_heads,
        "causal": causal,
        "seq_len": seq,
        "text": input.text,
        "pair": input.pair,
        "ids": input.ids,
        "type_ids": input.type_ids,
        "tokens": input.tokens,
        "labels": input.labels,
        // What `heads`, `find` and `diff` need to read a dump without the tokenizer (`--corpus`).
        "sequence_ids": input.sequence,
        "word_ids": input.word_ids,
        "offsets": input.offsets,
        "special": input.special,
        "truncated_tokens": input.dropped,
        "attention": {
            "file": "attention.npy",
            "dtype": "float32",
            "order": "C",
            "shape": [layers, heads, seq, seq],
            "axes": ["layer", "head", "query", "key"],
            "hook": "blocks.{layer}.attn.hook_pattern",
        },
        "views": view_manifest,
        "words": words_manifest,
        "files": files,
    });
    let mut manifest = manifest;
    // grid.png is encoded while the page is put together: the two steps a dump ends with,
    // each on one thread.
    let (grid, page) = rayon::join(
        || write_staged(&root.join("grid.png"), &grid.finish()?),
        || match (page_fits, &packed) {
            (Ok(()), Some(packed)) => super::view::dump_page(root, &manifest, Some(packed), None, None, &args.style),
            (Err(error), _) => Err(error),
            (Ok(()), None) => Err(Error::Input("the page's maps were not packed".into())),
        },
    );
    grid?;
    drop(packed);
    match page {
        Ok(page) => {
            write_staged(&root.join("view.html"), &page)?;
            if let Some(files) = manifest.get_mut("files").and_then(|f| f.as_array_mut()) {
                files.push("view.html".into());
            }
        }
        // Too big for one page: the dump is still whole; say how to get a narrower page.
        Err(Error::Input(message)) => eprintln!("attnmap: warning: no view.html: {message}"),
        Err(other) => return Err(other),
    }
    let mut text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::output("manifest.json", e))?;
    text.push('\n');
    write_staged(&root.join("manifest.json"), text.as_bytes())?;

    staging.publish()?;
    Ok(layers * heads)
}

/// The views `--views` names (`all` for every one); the weights are always written.
pub(super) fn requested_views(names: &[String]) -> Vec<View> {
    let mut views = vec![View::Weights];
    for name in names {
        let named: Vec<View> = if name == "all" { View::ALL.to_vec() } else { View::parse(name).into_iter().collect() };
        views.extend(named.into_iter().filter(|v| !views.contains(v)).collect::<Vec<_>>());
    }
    views.sort();
    views
}

/// The manifest's "views" and "words" entries, adding every view's files (arrays, pictures,
/// word arrays) to `files` in the order a reader lists them.
fn view_entries(input: &Encoded, layers: usize, heads: usize, views: &[View], args: &DumpArgs, pictures: bool, files: &mut Vec<String>) -> (serde_json::Value, serde_json::Value) {
    let seq = input.len();
    let words = args.words.then(|| crate::analysis::words::words(input));
    let mut view_manifest = serde_json::Map::new();
    let mut word_files = Vec::new();
    for &view in views {
        let (file, shape) = view_array(view, layers, heads, seq);
        let axes: Vec<&str> = if view.per_head() { vec!["layer", "head", "query", "key"] } else { vec!["layer", "output position", "input token"] };
        let pattern = match view {
            View::Weights => "heads/L{ll}_H{hh}.png".to_string(),
            view if view.per_head() => format!("{}/L{{ll}}_H{{hh}}.png", view.name()),
            view => format!("{}/L{{ll}}.png", view.name()),
        };
        if view != View::Weights {
            files.push(file.clone());
            if pictures {
                for layer in 0..layers {
                    for head in 0..if view.per_head() { heads } else { 1 } {
                        files.push(picture_file(view, layer, head, false));
                    }
                }
            }
        }
        if let Some(words) = &words {
            let (_, word_shape) = view_array(view, layers, heads, words.len());
            let word_file = format!("words/{file}");
            files.push(word_file.clone());
            word_files.push(json!({"view": view.name(), "file": word_file, "shape": word_shape}));
        }
        let pictures = if pictures { serde_json::Value::from(pattern) } else { serde_json::Value::Null };
        view_manifest.insert(
            view.name().into(),
            json!({"file": file, "dtype": "float32", "order": "C", "shape": shape, "axes": axes, "formula": view.formula(), "pictures": pictures}),
        );
    }
    let words_manifest = match &words {
        Some(words) => json!({
            "rule": "rows (from) are the mean over a word's tokens, columns (to) the sum; special tokens are words of their own",
            "labels": crate::analysis::words::labels(words),
            "words": super::views::Axis { labels: Vec::new(), words: Some(words.clone()) }.describe(),
            "files": word_files,
        }),
        None => serde_json::Value::Null,
    };
    (serde_json::Value::Object(view_manifest), words_manifest)
}

/// sha256 of a weight file; a Hugging Face cache blob is already named by it.
fn weights_sha256(path: &Path, stop: &AtomicBool) -> Result<String> {
    if let Ok(target) = fs::read_link(path) {
        if let Some(name) = target.file_name().and_then(|n| n.to_str()) {
            if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                return Ok(name.to_ascii_lowercase());
            }
        }
    }
    let mut file = fs::File::open(path).map_err(|e| Error::model_file(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error::model_file(path, e))?;
        if read == 0 {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Input("hashing the weights was stopped".into()));
        }
        hasher.update(&buffer[..read]);
    }
    Ok(crate::source::hex(&hasher.finalize()))
}
