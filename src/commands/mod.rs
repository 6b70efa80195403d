//! One file per subcommand: load -> capture -> analyse -> render -> write.
//! This file holds the steps they share.

pub mod completions;
pub mod corpus;
pub mod diff;
pub mod dump;
mod dump_sink;
pub mod find;
pub mod heads;
pub mod info;
pub mod man;
pub mod read_dumps;
pub mod show;
pub mod view;
pub mod views;

use std::io::Read;
use std::path::Path;

use crate::cli::{InputArgs, ModelArgs, ScaleArg, StyleArgs};
use crate::capture::Capture;
use crate::error::{Error, Result};
use crate::ui::Ui;
use crate::model::{self, LoadOptions, Loaded};
use crate::render::{self, Colormap, HeatmapOptions, Mask, Scale};
use crate::source::{self, HubEnv, ModelFiles};
use crate::tokenize::Encoded;

/// A resolved and loaded model.
pub struct Session {
    pub files: ModelFiles,
    pub loaded: Loaded,
}

/// `--colormap`, `--scale` and `--force` act only on the pictures `--out DIR` writes: without
/// it they are refused, not accepted and ignored. `scale_honoured` is false where a command's
/// pictures are scaled to their own figures, so `--scale` would do nothing even with --out.
pub fn check_picture_flags(style: &StyleArgs, out: Option<&Path>, force: bool, scale_honoured: bool) -> Result<()> {
    let given = [(style.colormap != "viridis", "--colormap"), (style.scale != ScaleArg::Auto, "--scale"), (force, "--force")];
    if let Some((_, flag)) = given.iter().find(|(given, _)| *given).filter(|_| out.is_none()) {
        return Err(Error::Usage(format!("{flag} applies to the pictures written with --out DIR; add --out DIR, or leave {flag} out")));
    }
    if !scale_honoured && style.scale != ScaleArg::Auto {
        return Err(Error::Usage("--scale does not apply here: these pictures are coloured over their figures' own range; leave --scale out".into()));
    }
    Ok(())
}

/// Resolve `--model`, load it, and say on stderr where it came from.
pub fn open_model(args: &ModelArgs, ui: &Ui) -> Result<Session> {
    load_found(find_model(args, ui)?, args)
}

/// Load the model [`find_model`] found, and say its warnings on stderr.
pub fn load_found(files: ModelFiles, args: &ModelArgs) -> Result<Session> {
    let loaded = model::load_with(&files, &LoadOptions { quantized: args.quantized })?;
    for warning in &loaded.warnings {
        eprintln!("attnmap: warning: {warning}");
    }
    Ok(Session { files, loaded })
}

/// Where the model's files are (downloading them if need be), said on stderr unless quiet.
pub fn find_model(args: &ModelArgs, ui: &Ui) -> Result<ModelFiles> {
    // A local folder or file has no revisions: --revision would silently do nothing.
    if args.revision != "main" && Path::new(&args.model).exists() {
        return Err(Error::Usage(format!(
            "--revision {} applies to Hub models; {} is a local path, which has no revisions (check out the version you want there, or leave --revision out)",
            args.revision, args.model
        )));
    }
    let mut env = HubEnv::from_env()?;
    env.progress = ui.progress();
    let files = source::resolve(&args.model, &args.revision, &env)?;
    if !ui.quiet {
        eprintln!("attnmap: {}", files.describe());
    }
    Ok(files)
}

/// The most text read from a file or stdin: far more than any model keeps after
/// truncation (tokenizing stops once truncation is decided, see `TextTokenizer::encode`),
/// and a bound on what `--file /dev/urandom` or an endless pipe can cost.
pub const INPUT_LIMIT: usize = 16 << 20;

/// The text (and pair) the user gave: argument, '-' for stdin, or --file. Read before
/// the model is loaded, so bad input fails fast.
pub fn read_input(args: &InputArgs) -> Result<(String, Option<String>)> {
    let text = match (&args.text, &args.file) {
        (_, Some(path)) => {
            let what = format!("--file {}", path.display());
            let file = std::fs::File::open(path).map_err(|e| Error::Input(format!("cannot read {what}: {e}")))?;
            read_text(file, &what)?
        }
        (Some(dash), None) if dash == "-" => read_text(std::io::stdin().lock(), "the text on stdin")?,
        (Some(text), None) => text.clone(),
        (None, None) => return Err(Error::Usage("give a TEXT, '-' for stdin, or --file PATH".into())),
    };
    // One trailing line ending comes from `echo` or an editor, not from the user's text.
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    // Checked here too, so an empty input fails before a model is loaded.
    if text.trim().is_empty() {
        return Err(Error::Input("the text is empty; pass some text as an argument, with --file PATH, or on stdin with '-'".into()));
    }
    Ok((text.to_string(), args.pair.clone()))
}

/// Read at most [`INPUT_LIMIT`] bytes of UTF-8 text; refuse binary data (NUL bytes, as
/// /dev/zero gives) and invalid UTF-8, naming the byte offset.
fn read_text(reader: impl Read, what: &str) -> Result<String> {
    let mut bytes = Vec::new();
    reader
        .take(INPUT_LIMIT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Input(format!("cannot read {what}: {e}")))?;
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(Error::Input(format!("{what} is not text: it holds a NUL byte at offset {offset} (a binary file or a device?); give a UTF-8 text file")));
    }
    let cut = bytes.len() > INPUT_LIMIT;
    if cut {
        bytes.truncate(INPUT_LIMIT);
        eprintln!(
            "attnmap: warning: {what} is longer than {} MiB; only its first {} MiB are read (far more than any model keeps after truncation)",
            INPUT_LIMIT >> 20,
            INPUT_LIMIT >> 20
        );
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        // A character split by the size limit is not an encoding error.
        Err(e) if cut && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            Ok(String::from_utf8(bytes).unwrap_or_default())
        }
        Err(e) => Err(Error::Input(format!(
            "{what} is not UTF-8 text (invalid byte at offset {}); convert it first, e.g. iconv -f LATIN1 -t UTF-8",
            e.utf8_error().valid_up_to()
        ))),
    }
}

/// A probe set (`--texts FILE`): one text per line, or JSON lines `{"text": ..., "pair": ...}`;
/// `pair` applies to the plain lines. Blank lines are skipped; an empty set is an error.
pub fn read_probe_file(path: &Path, pair: Option<&str>) -> Result<Vec<(String, Option<String>)>> {
    let content = std::fs::read_to_string(path).map_err(|e| Error::Input(format!("cannot read --texts {}: {e}", path.display())))?;
    let mut texts = Vec::new();
    for (number, line) in content.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.trim_start().starts_with('{') {
            #[derive(serde::Deserialize)]
            struct ProbeLine {
                text: String,
                pair: Option<String>,
            }
            let probe: ProbeLine = serde_json::from_str(line).map_err(|e| {
                Error::Input(format!("{} line {}: not a JSON object with a \"text\" ({e})", path.display(), number + 1))
            })?;
            texts.push((probe.text, probe.pair));
        } else {
            texts.push((line.to_string(), pair.map(str::to_string)));
        }
    }
    if texts.is_empty() {
        return Err(Error::Input(format!("--texts {} holds no texts; write one text per line", path.display())));
    }
    Ok(texts)
}

/// Tokenize the input with the model's tokenizer, warning when truncation drops tokens
/// (naming which of text and --pair lost how many).
pub fn encode(session: &Session, (text, pair): &(String, Option<String>)) -> Result<Encoded> {
    let tokenizer = &session.loaded.tokenizer;
    let encoded = tokenizer.encode(text, pair.as_deref())?;
    if encoded.dropped > 0 {
        let max = tokenizer.max_len();
        // Long inputs are tokenized only as far as truncation needs: the count is then a lower bound.
        let cut = encoded.text.len() < text.len() || encoded.pair.as_ref().map(String::len) < pair.as_ref().map(String::len);
        let total = encoded.len() + encoded.dropped;
        let total = if cut { format!("more than {total}") } else { total.to_string() };
        let from = match pair {
            None if cut => format!("everything after the first {} was dropped", encoded.len()),
            None => format!("the last {} were dropped", encoded.dropped),
            Some(_) => {
                let kept = |sequence: u8| encoded.sequence.iter().filter(|s| **s == Some(sequence)).count();
                let alone = |t: &str| tokenizer.count_tokens(t);
                let text_dropped = alone(&encoded.text)?.saturating_sub(kept(0));
                let pair_dropped = alone(encoded.pair.as_deref().unwrap_or_default())?.saturating_sub(kept(1));
                let more = if cut { "at least " } else { "" };
                format!("{more}{text_dropped} were dropped from the end of the text and {more}{pair_dropped} from the end of --pair (longest first)")
            }
        };
        eprintln!(
            "attnmap: warning: the input has {total} tokens but this model reads at most {max}; {from} (as transformers does with truncation=True, max_length={max})"
        );
    }
    Ok(encoded)
}

/// The model's short name, for titles and file names.
pub fn model_name(files: &ModelFiles) -> String {
    short_name(&files.id).unwrap_or_else(|| files.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()))
}

/// The last part of a model id or path (`None` when it names no folder, as "." does).
pub fn short_name(id: &str) -> Option<String> {
    let trimmed = id.trim_end_matches(['/', '\\']);
    let last = trimmed.rsplit(['/', '\\']).next().unwrap_or(trimmed);
    // A GGUF file's name says the model and its quantization; the extension says nothing.
    let last = last.strip_suffix(".gguf").filter(|stem| !stem.is_empty()).unwrap_or(last);
    (!(last.is_empty() || last == "." || last == "..")).then(|| last.to_string())
}

/// Render one head of a capture as a PNG heatmap.
pub fn heatmap(capture: &Capture, layer: usize, head: usize, title: &str, style: &StyleArgs) -> Result<Vec<u8>> {
    picture(capture, layer, head, title, style, Picture::Png)
}

/// The surfaces one head's picture is drawn on: the same plan on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    Png,
    Svg,
}

/// Render one head of a capture as a PNG or SVG heatmap.
pub fn picture(capture: &Capture, layer: usize, head: usize, title: &str, style: &StyleArgs, surface: Picture) -> Result<Vec<u8>> {
    map_picture(head_values(capture, layer, head)?, &capture.input, capture.causal, title, style, surface)
}

/// [`picture`] of one head's `[query, key]` weights over `input`'s tokens (a layer a dump streams).
pub fn map_picture(values: &[f32], input: &Encoded, causal: bool, title: &str, style: &StyleArgs, surface: Picture) -> Result<Vec<u8>> {
    let seq = input.len();
    let subtitle = map_subtitle(seq, input.dropped);
    let options = map_options(input, causal, title, &subtitle, head_scale(values, style), style);
    Ok(match surface {
        Picture::Png => render::heatmap_png(values, seq, seq, &options)?,
        Picture::Svg => render::heatmap_svg(values, seq, seq, &options)?,
    })
}

/// The title of one head's picture (`show`'s and every head of a `dump`).
pub fn head_title(name: &str, layer: usize, head: usize) -> String {
    format!("{name} · layer {layer} · head {head}")
}

/// What every head's picture of `input` shares, drawn once ([`HeatmapFrame`]): a dump paints
/// each head's title, cells and scale onto it, the same pixels [`map_picture`] gives.
/// `example_title` is one of the titles to come.
pub fn map_frame(input: &Encoded, causal: bool, example_title: &str, style: &StyleArgs) -> Result<render::HeatmapFrame> {
    let subtitle = map_subtitle(input.len(), input.dropped);
    let options = map_options(input, causal, example_title, &subtitle, Scale::Range { min: 0.0, max: 1.0 }, style);
    Ok(render::HeatmapFrame::new(input.len(), input.len(), &options)?)
}

fn map_options<'a>(input: &'a Encoded, causal: bool, title: &'a str, subtitle: &'a str, scale: Scale, style: &StyleArgs) -> HeatmapOptions<'a> {
    HeatmapOptions {
        title,
        subtitle: Some(subtitle),
        row_labels: &input.labels,
        col_labels: &input.labels,
        colormap: colormap(style),
        scale,
        mask: if causal { Mask::Causal } else { Mask::None },
        colorbar_label: "attention weight",
        ..HeatmapOptions::default()
    }
}

/// One head's `[query, key]` weights.
pub fn head_values(capture: &Capture, layer: usize, head: usize) -> Result<&[f32]> {
    capture.head(layer, head).ok_or_else(|| Error::Input(format!("layer {layer} was not captured")))
}

/// `--scale` for one map: 0..its maximum, or 0..1.
pub fn head_scale(values: &[f32], style: &StyleArgs) -> Scale {
    match style.scale {
        ScaleArg::Auto => Scale::zero_to_max(values),
        ScaleArg::Fixed => Scale::Range { min: 0.0, max: 1.0 },
    }
}

/// The line under every head's title: how many tokens, and what a map does not show.
pub fn head_subtitle(capture: &Capture) -> String {
    map_subtitle(capture.seq, capture.input.dropped)
}

fn map_subtitle(seq: usize, dropped: usize) -> String {
    let truncated = if dropped > 0 { format!(" (truncated, {dropped} dropped)") } else { String::new() };
    format!("{seq} tokens{truncated} · attention weights only: not what the values carry")
}

pub fn colormap(style: &StyleArgs) -> Colormap {
    Colormap::from_name(&style.colormap).unwrap_or(Colormap::Viridis)
}

pub fn mask(capture: &Capture) -> Mask {
    if capture.causal { Mask::Causal } else { Mask::None }
}
