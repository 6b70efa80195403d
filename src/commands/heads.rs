//! `attnmap heads`: what every head does, over one text or a probe set, one
//! text's maps at a time. Also the steps `find` shares: the texts, where their
//! maps come from (a model, or a corpus of dumps), and each text's maps at token
//! or word level.

use std::path::Path;

use crate::analysis::stats::{Accumulator, HeadStats, Positions, COLUMNS};
use crate::analysis::words;
use crate::capture::Capture;
use crate::cli::{HeadsArgs, InputArgs, ModelArgs, ProbeArgs, StyleArgs};
use crate::error::{Error, Result};
use crate::output::{check_target_dir, write_staged, write_stdout, StagedDir};
use crate::render::{self, heads_report, CellMark, Colormap, HeatmapOptions, Scale};
use crate::tokenize::Encoded;
use crate::ui::Ui;

use super::read_dumps::{Corpus, TextDump};
use super::{encode, model_name, open_model, read_input, read_probe_file, Session};

pub fn run(args: &HeadsArgs, ui: &Ui) -> Result<()> {
    super::check_picture_flags(&args.style, args.out.as_deref(), args.force, false)?;
    let out_parent = match &args.out {
        Some(dir) => Some(check_target_dir(dir, args.force)?),
        None => None,
    };
    let texts = match &args.probe.corpus {
        Some(_) => Vec::new(),
        None => probe_texts(args.text.as_deref(), &args.probe)?,
    };
    let source = Source::open(&args.probe, &args.model, ui)?;
    let texts = source.texts().unwrap_or(texts);
    let (layers, heads_per_layer, causal) = source.shape();
    let mut totals = Accumulator::new(layers, heads_per_layer);
    let bar = ui.progress_bar(texts.len() as u64, "texts");
    for (index, text) in texts.iter().enumerate() {
        let mut open = source.open_text(index, text, args.probe.words)?;
        while let Some((layer, maps)) = open.next_layer()? {
            totals.add_layer(layer, &maps, &open.positions, causal);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let heads = totals.finish();
    let report = heads_report::HeadsReport {
        model: source.model_name(),
        texts: texts.len(),
        level: if args.probe.words { "words" } else { "tokens" },
        causal,
        layers,
        heads_per_layer,
        heads,
    };
    if let (Some(dir), Some(parent)) = (&args.out, out_parent) {
        write_pictures(dir, &parent, &report, &args.style)?;
    }
    let listed = sorted(&report.heads, args.sort.as_deref(), args.top);
    let text = if args.json {
        heads_report::json(&report)
    } else if args.csv {
        heads_report::csv(&report.heads)
    } else {
        heads_report::table(&report, &listed)
    };
    write_stdout(text.as_bytes())
}

/// The table's rows: by layer and head, or by a column (largest first; heads without a value last).
fn sorted(heads: &[HeadStats], column: Option<&str>, top: Option<usize>) -> Vec<HeadStats> {
    let mut rows = heads.to_vec();
    match column {
        None | Some("layer") => {}
        Some("pattern") => rows.sort_by(|a, b| a.pattern.cmp(b.pattern)),
        Some(name) => rows.sort_by(|a, b| {
            let (x, y) = (a.get(name).unwrap_or(f64::NEG_INFINITY), b.get(name).unwrap_or(f64::NEG_INFINITY));
            y.total_cmp(&x).then((a.layer, a.head).cmp(&(b.layer, b.head)))
        }),
    }
    rows.truncate(top.unwrap_or(usize::MAX));
    rows
}

/// One picture per column (layers down, heads across, each cell labelled with its value), heads.json, heads.csv.
fn write_pictures(dir: &Path, parent: &Path, report: &heads_report::HeadsReport, style: &StyleArgs) -> Result<()> {
    let staging = StagedDir::new(dir, parent)?;
    let root = staging.path();
    let colormap = Colormap::from_name(&style.colormap).unwrap_or(Colormap::Viridis);
    for (column, name) in COLUMNS.iter().enumerate() {
        if report.heads.iter().all(|h| h.values[column].is_none()) {
            continue;
        }
        let values: Vec<f32> = report.heads.iter().map(|h| h.values[column].unwrap_or(0.0) as f32).collect();
        let labels: Vec<Option<String>> = report.heads.iter().map(|h| h.values[column].map(|v| format!("{v:.2}"))).collect();
        let title = format!("{name} per head · {} · {} text{} ({})", report.model, report.texts, if report.texts == 1 { "" } else { "s" }, report.level);
        let bytes = layers_by_heads(&values, &labels, &[], report.layers, report.heads_per_layer, &title, name, colormap)?;
        write_staged(&root.join(format!("{name}.png")), &bytes)?;
    }
    write_staged(&root.join("heads.json"), heads_report::json(report).as_bytes())?;
    write_staged(&root.join("heads.csv"), heads_report::csv(&report.heads).as_bytes())?;
    staging.publish()
}

/// A layers x heads picture of one number per head, each cell labelled, some outlined.
#[allow(clippy::too_many_arguments)]
pub(super) fn layers_by_heads(values: &[f32], labels: &[Option<String>], outlined: &[bool], layers: usize, heads: usize, title: &str, what: &str, colormap: Colormap) -> Result<Vec<u8>> {
    let layer_labels: Vec<String> = (0..layers).map(|l| format!("L{l}")).collect();
    let head_labels: Vec<String> = (0..heads).map(|h| format!("H{h}")).collect();
    let max = values.iter().copied().fold(0f32, f32::max);
    let options = HeatmapOptions {
        title,
        row_labels: &layer_labels,
        col_labels: &head_labels,
        colormap,
        scale: Scale::Range { min: values.iter().copied().fold(0f32, f32::min), max: if max > 0.0 { max } else { 1.0 } },
        colorbar_label: what,
        row_caption: "layer",
        col_caption: "head",
        ..HeatmapOptions::default()
    };
    let png = render::heatmap_png(values, layers, heads, &options)?;
    let layout = render::heatmap::layout(layers, heads, &options)?;
    let marks: Vec<CellMark> = (0..layers * heads)
        .map(|i| CellMark { row: i / heads, col: i % heads, text: labels.get(i).cloned().flatten(), outline: outlined.get(i).copied().unwrap_or(false) })
        .collect();
    Ok(render::mark_cells(&png, &layout, &marks)?)
}

/// The texts: one TEXT ('-' for stdin), or --texts FILE.
pub(super) fn probe_texts(text: Option<&str>, probe: &ProbeArgs) -> Result<Vec<(String, Option<String>)>> {
    match (text, &probe.texts) {
        (Some(_), Some(_)) => Err(Error::Usage("give either a TEXT or --texts FILE, not both".into())),
        (None, None) => Err(Error::Usage("give a TEXT ('-' for stdin) or a probe set with --texts FILE".into())),
        (Some(text), None) => Ok(vec![read_input(&InputArgs { text: Some(text.to_string()), file: None, pair: probe.pair.clone() })?]),
        (None, Some(path)) => read_probe_file(path, probe.pair.as_deref()),
    }
}

/// Where each text's maps come from: a forward pass per text, or a corpus's dumps read
/// back (`--corpus`), which give the same maps without the model.
pub(super) enum Source {
    Model(Session),
    Corpus(Corpus),
}

impl Source {
    /// `--corpus DIR` (checked, nothing read but its index and first manifest), else `--model`.
    pub fn open(probe: &ProbeArgs, model: &ModelArgs, ui: &Ui) -> Result<Self> {
        match &probe.corpus {
            Some(dir) => {
                let corpus = Corpus::open(dir, "--corpus")?;
                if !ui.quiet {
                    let texts = corpus.texts.len();
                    eprintln!("attnmap: {} text{} dumped by {} in {}", texts, if texts == 1 { "" } else { "s" }, corpus.first.model, dir.display());
                }
                Ok(Source::Corpus(corpus))
            }
            None => Ok(Source::Model(open_model(model, ui)?)),
        }
    }

    /// Layers, heads per layer, and whether attention is causal.
    pub fn shape(&self) -> (usize, usize, bool) {
        match self {
            Source::Model(session) => {
                let info = session.loaded.model.info();
                (info.layers, info.heads, info.causal)
            }
            Source::Corpus(corpus) => (corpus.first.layers, corpus.first.heads, corpus.first.causal),
        }
    }

    pub fn model_name(&self) -> String {
        match self {
            Source::Model(session) => model_name(&session.files),
            Source::Corpus(corpus) => corpus.model_name(),
        }
    }

    /// A corpus's texts, in order; `None` for a model (the texts come from the command line).
    pub fn texts(&self) -> Option<Vec<(String, Option<String>)>> {
        match self {
            Source::Model(_) => None,
            Source::Corpus(corpus) => Some(corpus.texts.iter().map(|t| (t.text.clone(), t.pair.clone())).collect()),
        }
    }

    /// Open text `index`: `text` encoded and run through the model, or the corpus's
    /// `index`-th dump, whose maps are then read a layer at a time.
    pub fn open_text(&self, index: usize, text: &(String, Option<String>), by_words: bool) -> Result<OpenText> {
        match self {
            Source::Model(session) => OpenText::run(session, encode(session, text)?, by_words),
            Source::Corpus(corpus) => {
                let dumped = corpus.open_text(index)?;
                let input = dumped.input.clone();
                Ok(OpenText::new(input, Layers::Dump(dumped), by_words))
            }
        }
    }
}

/// Where an open text's layers come from.
enum Layers {
    Captured(Capture),
    Dump(TextDump),
}

/// One text with its positions (tokens or words) known and its maps to come, a layer at a
/// time: a corpus's text is never held whole.
pub(super) struct OpenText {
    pub input: Encoded,
    pub words: Vec<words::Word>,
    pub positions: Positions,
    by_words: bool,
    layers: Layers,
    next: usize,
}

impl OpenText {
    /// Run the model on `input`.
    pub fn run(session: &Session, input: Encoded, by_words: bool) -> Result<Self> {
        let capture = Capture::run(session.loaded.model.as_ref(), &input, None, &[])?.capture;
        Ok(Self::new(input, Layers::Captured(capture), by_words))
    }

    fn new(input: Encoded, layers: Layers, by_words: bool) -> Self {
        let words = words::words(&input);
        let positions = if by_words { Positions::words(&words) } else { Positions::tokens(&input) };
        OpenText { input, words, positions, by_words, layers, next: 0 }
    }

    /// The next layer and its maps, `[heads, n, n]` over tokens or words; `None` after the last.
    pub fn next_layer(&mut self) -> Result<Option<(usize, Vec<f32>)>> {
        let layer = self.next;
        let maps = match &mut self.layers {
            Layers::Captured(capture) if layer < capture.layers => {
                let maps = capture.layer(layer).ok_or_else(|| Error::Input("the capture is missing layers".into()))?;
                if self.by_words {
                    words::merge_maps(maps, self.input.len(), &self.words)
                } else {
                    maps.to_vec()
                }
            }
            Layers::Captured(_) => return Ok(None),
            Layers::Dump(dump) => match dump.next_layer()? {
                Some(maps) if self.by_words => words::merge_maps(&maps, self.input.len(), &self.words),
                Some(maps) => maps,
                None => return Ok(None),
            },
        };
        self.next += 1;
        Ok(Some((layer, maps)))
    }
}
