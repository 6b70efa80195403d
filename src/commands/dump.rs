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

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::analysis::views::{check_flow_size, view_all, View};
use crate::capture::Capture;
use crate::cli::{DumpArgs, ScaleArg};
use crate::hooks::HookKind;
use crate::error::{Error, Result};
use crate::ui::Ui;
use crate::output::{check_target_dir, npy_f32, write_file, StagedDir};
use crate::render::{self, Colormap, GridOptions, Mask, Scale};

use super::views::{picture as view_picture, scale_of, Axis};
use super::{encode, heatmap, model_name, open_model, picture, read_input, Picture};

/// Version of the dump layout; bumped only when a script reading dumps would break.
pub const LAYOUT_VERSION: u32 = 1;

/// The most attention a dump holds in memory (it keeps every map, then writes them): long
/// contexts of decoders would otherwise end in the OOM killer instead of a message.
const MAX_DUMP_BYTES: usize = 2 << 30;

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
    let session = open_model(&args.model, ui)?;
    let input = encode(&session, &text)?;
    let model = session.loaded.model.as_ref();
    let views = requested_views(&args.views);
    check_input(model.info(), input.len(), &views)?;
    let hooks = hooks_of(&views);
    let weights = weight_files(&session);
    // Hash the weights while the model runs: the manifest needs it and it is I/O-bound.
    let (run, hashes) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| hash_weights(&weights));
        let run = Capture::run(model, &input, None, &hooks);
        let hashes = hashing.join().unwrap_or_else(|_| Err(Error::Input("hashing the weights failed".into())));
        (run, hashes)
    });
    let capture = run?.capture;
    let hashes = hashes?;
    let progress = ui.progress_bar((model.info().layers * model.info().heads) as u64 + 1, "maps");
    let written = write_dump(&target, &parent, args.force, &session, &weights, &hashes, &capture, &views, args, &progress, false)?;
    progress.finish_and_clear();
    if !ui.quiet {
        eprintln!("attnmap: wrote {} ({} heads, {} tokens)", target.display(), written, capture.seq);
    }
    Ok(())
}

/// The weight files of the model, in the manifest's order.
pub(super) fn weight_files(session: &super::Session) -> Vec<PathBuf> {
    session.files.weights.files().iter().map(|p| p.to_path_buf()).collect()
}

/// sha256 of every weight file.
pub(super) fn hash_weights(weights: &[PathBuf]) -> Result<Vec<String>> {
    weights.iter().map(|p| weights_sha256(p)).collect()
}

/// The hooks the views need.
pub(super) fn hooks_of(views: &[View]) -> Vec<HookKind> {
    views.iter().flat_map(|v| v.hooks().iter().copied()).collect()
}

/// Refuse, before the forward pass, an input whose maps would not fit (or flow would take forever).
pub(super) fn check_input(info: &crate::model::ArchInfo, seq: usize, views: &[View]) -> Result<()> {
    check_size(info, seq, views)?;
    if views.contains(&View::Flow) {
        check_flow_size(info.layers, seq)?;
    }
    Ok(())
}

/// Write one text's dump (the layout above) into `target`, built beside it in `parent` and
/// renamed into place; returns the number of heads. `portable` leaves out what names this
/// machine (the model's folder in "source"), so a corpus is the same wherever it was computed.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_dump(
    target: &Path,
    parent: &Path,
    force: bool,
    session: &super::Session,
    weights: &[PathBuf],
    hashes: &[String],
    capture: &Capture,
    views: &[View],
    args: &DumpArgs,
    progress: &indicatif::ProgressBar,
    portable: bool,
) -> Result<usize> {
    let model = session.loaded.model.as_ref();
    let dense = capture.dense().ok_or_else(|| Error::Input("the capture is missing layers".into()))?;

    let staging = StagedDir::create(target, parent, force)?;
    let root = staging.path();
    let heads_dir = root.join("heads");
    fs::create_dir(&heads_dir).map_err(|e| Error::output(&heads_dir, e))?;

    let name = model_name(&session.files);
    let jobs: Vec<(usize, usize)> = (0..capture.layers).flat_map(|l| (0..capture.heads).map(move |h| (l, h))).collect();
    let mut files = vec!["attention.npy".to_string()];
    let head_files: Vec<Vec<String>> = jobs
        .par_iter()
        .map(|&(layer, head)| {
            let title = format!("{name} · layer {layer} · head {head}");
            let bytes = heatmap(capture, layer, head, &title, &args.style)?;
            let file = format!("heads/L{layer:02}_H{head:02}.png");
            write_file(&root.join(&file), &bytes)?;
            let mut written = vec![file];
            if args.svg {
                let svg = picture(capture, layer, head, &title, &args.style, Picture::Svg)?;
                let file = format!("heads/L{layer:02}_H{head:02}.svg");
                write_file(&root.join(&file), &svg)?;
                written.push(file);
            }
            progress.inc(1);
            Ok(written)
        })
        .collect::<Result<Vec<Vec<String>>>>()?;
    files.extend(head_files.into_iter().flatten());

    let grid_title = format!("{name} · every head · {} tokens", capture.seq);
    let grid_options = GridOptions {
        title: &grid_title,
        colormap: Colormap::from_name(&args.style.colormap).unwrap_or(Colormap::Viridis),
        scale_per_head: args.style.scale == ScaleArg::Auto,
        // As heads/*.png: --scale fixed puts every tile on 0..1.
        fixed_scale: (args.style.scale == ScaleArg::Fixed).then_some(Scale::Range { min: 0.0, max: 1.0 }),
        mask: if capture.causal { Mask::Causal } else { Mask::None },
        labels: &capture.input.labels,
        ..GridOptions::default()
    };
    let grid = render::grid_png(&dense, capture.layers, capture.heads, capture.seq, &grid_options)?;
    write_file(&root.join("grid.png"), &grid)?;
    files.push("grid.png".into());
    if args.svg {
        let grid = render::grid_svg(&dense, capture.layers, capture.heads, capture.seq, &grid_options)?;
        write_file(&root.join("grid.svg"), &grid)?;
        files.push("grid.svg".into());
    }
    progress.inc(1);
    write_file(&root.join("attention.npy"), &npy_f32(&[capture.layers, capture.heads, capture.seq, capture.seq], &dense))?;
    let (view_manifest, words_manifest) = write_views(root, capture, &dense, views, args, &name, &mut files)?;
    files.push("manifest.json".into());

    let files_meta = &session.files;
    let manifest = json!({
        "attnmap_version": env!("CARGO_PKG_VERSION"),
        "layout_version": LAYOUT_VERSION,
        "model": files_meta.id,
        "source": if portable { serde_json::Value::Null } else { files_meta.describe().into() },
        "revision": files_meta.revision,
        "commit": files_meta.commit,
        "weights": weights.iter().zip(hashes).map(|(path, sha)| json!({
            "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "sha256": sha,
        })).collect::<Vec<_>>(),
        "weights_sha256": hashes.first(),
        "weights_format": files_meta.weights.format(),
        "precision": session.loaded.precision,
        "architecture": session.loaded.model_type,
        "layers": capture.layers,
        "heads": capture.heads,
        "kv_heads": model.info().kv_heads,
        "causal": capture.causal,
        "seq_len": capture.seq,
        "text": capture.input.text,
        "pair": capture.input.pair,
        "ids": capture.input.ids,
        "type_ids": capture.input.type_ids,
        "tokens": capture.input.tokens,
        "labels": capture.input.labels,
        // What `heads`, `find` and `diff` need to read a dump without the tokenizer (`--corpus`).
        "sequence_ids": capture.input.sequence,
        "word_ids": capture.input.word_ids,
        "offsets": capture.input.offsets,
        "special": capture.input.special,
        "truncated_tokens": capture.input.dropped,
        "attention": {
            "file": "attention.npy",
            "dtype": "float32",
            "order": "C",
            "shape": [capture.layers, capture.heads, capture.seq, capture.seq],
            "axes": ["layer", "head", "query", "key"],
            "hook": "blocks.{layer}.attn.hook_pattern",
        },
        "views": view_manifest,
        "words": words_manifest,
        "files": files,
    });
    // The viewer reads the manifest's views (and their files, already written), so it comes last.
    let mut manifest = manifest;
    let view = super::view::dump_page(root, &manifest, Some(&dense), None, None, &args.style);
    match view {
        Ok(page) => {
            write_file(&root.join("view.html"), &page)?;
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
    write_file(&root.join("manifest.json"), text.as_bytes())?;

    staging.publish()?;
    Ok(jobs.len())
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

/// Every view besides the weights: its array and pictures, and (with --words) the word-level
/// arrays. Returns the manifest's "views" and "words" entries.
fn write_views(root: &Path, capture: &Capture, dense: &[f32], views: &[View], args: &DumpArgs, name: &str, files: &mut Vec<String>) -> Result<(serde_json::Value, serde_json::Value)> {
    let (layers, heads, seq) = (capture.layers, capture.heads, capture.seq);
    let tokens = Axis::of(capture, false);
    let word_axis = args.words.then(|| Axis::of(capture, true));
    let mut view_manifest = serde_json::Map::new();
    let mut word_files = Vec::new();
    if word_axis.is_some() {
        let dir = root.join("words");
        fs::create_dir(&dir).map_err(|e| Error::output(&dir, e))?;
    }
    for &view in views {
        let values = if view == View::Weights { dense.to_vec() } else { view_all(capture, view)? };
        let (file, shape, axes, pictures): (String, Vec<usize>, Vec<&str>, String) = if view == View::Weights {
            ("attention.npy".into(), vec![layers, heads, seq, seq], vec!["layer", "head", "query", "key"], "heads/L{ll}_H{hh}.png".into())
        } else if view.per_head() {
            (format!("{}.npy", view.name()), vec![layers, heads, seq, seq], vec!["layer", "head", "query", "key"], format!("{}/L{{ll}}_H{{hh}}.png", view.name()))
        } else {
            (format!("{}.npy", view.name()), vec![layers, seq, seq], vec!["layer", "output position", "input token"], format!("{}/L{{ll}}.png", view.name()))
        };
        if view != View::Weights {
            write_file(&root.join(&file), &npy_f32(&shape, &values))?;
            files.push(file.clone());
            let dir = root.join(view.name());
            fs::create_dir(&dir).map_err(|e| Error::output(&dir, e))?;
            let maps = values.len() / (seq * seq);
            let per_layer = if view.per_head() { heads } else { 1 };
            // --scale fixed for norm: one range for the whole dump, so heads compare.
            let largest = values.iter().copied().fold(0f32, f32::max);
            let pictures: Vec<String> = (0..maps)
                .into_par_iter()
                .map(|index| {
                    let (layer, head) = (index / per_layer, index % per_layer);
                    let map = &values[index * seq * seq..(index + 1) * seq * seq];
                    let (title, file) = if view.per_head() {
                        (format!("{name} · layer {layer} · head {head} · {}", view.name()), format!("{}/L{layer:02}_H{head:02}.png", view.name()))
                    } else {
                        (format!("{name} · {} to layer {layer}", view.name()), format!("{}/L{layer:02}.png", view.name()))
                    };
                    let scale = scale_of(view, map, &args.style, largest);
                    let bytes = view_picture(map, &tokens, capture.causal, view, &title, capture.input.dropped, scale, &args.style)?;
                    write_file(&root.join(&file), &bytes)?;
                    Ok(file)
                })
                .collect::<Result<_>>()?;
            files.extend(pictures);
        }
        if let Some(words) = &word_axis {
            let merged = words.merge(&values, seq);
            let mut word_shape = shape.clone();
            let count = word_shape.len();
            word_shape[count - 2..].fill(words.len());
            let word_file = format!("words/{file}");
            write_file(&root.join(&word_file), &npy_f32(&word_shape, &merged))?;
            files.push(word_file.clone());
            word_files.push(json!({"view": view.name(), "file": word_file, "shape": word_shape}));
        }
        view_manifest.insert(
            view.name().into(),
            json!({"file": file, "dtype": "float32", "order": "C", "shape": shape, "axes": axes, "formula": view.formula(), "pictures": pictures}),
        );
    }
    let words_manifest = match &word_axis {
        Some(words) => json!({
            "rule": "rows (from) are the mean over a word's tokens, columns (to) the sum; special tokens are words of their own",
            "labels": words.labels,
            "words": words.describe(),
            "files": word_files,
        }),
        None => serde_json::Value::Null,
    };
    Ok((serde_json::Value::Object(view_manifest), words_manifest))
}

/// Refuse a dump whose maps alone would not fit in [`MAX_DUMP_BYTES`].
fn check_size(info: &crate::model::ArchInfo, seq: usize, views: &[View]) -> Result<()> {
    // Per-head views hold a copy of every map each; per-layer ones a map per layer.
    let copies = views.iter().filter(|v| v.per_head()).count().max(1);
    let maps = info.layers * info.heads * copies + info.layers * views.iter().filter(|v| !v.per_head()).count();
    let bytes = maps.saturating_mul(seq).saturating_mul(seq).saturating_mul(4);
    if bytes > MAX_DUMP_BYTES {
        let fits = ((MAX_DUMP_BYTES / 4 / maps) as f64).sqrt() as usize;
        return Err(Error::Input(format!(
            "a dump of {seq} tokens holds {maps} maps of {seq}x{seq} ({:.1} GB); dumps are capped at {} GB: shorten the text to at most {fits} tokens, or draw single heads with `attnmap show`",
            bytes as f64 / 1e9,
            MAX_DUMP_BYTES >> 30
        )));
    }
    Ok(())
}

/// sha256 of a weight file; a Hugging Face cache blob is already named by it.
fn weights_sha256(path: &Path) -> Result<String> {
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
        hasher.update(&buffer[..read]);
    }
    Ok(crate::source::hex(&hasher.finalize()))
}
