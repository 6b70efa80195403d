//! `attnmap diff`: compare the maps of two model versions, head by head, and
//! fail past a threshold. Either two dump folders, two corpora of dumps over the
//! same texts (`dump --texts`), or two models run on the same probe texts.

use std::path::Path;
use std::rc::Rc;

use crate::analysis::views::{check_flow_size, view_all, View};
use crate::analysis::diff::{compare, HeadDiff, Aggregate, ComparedText, DiffReport, Metric, Rules};
use crate::analysis::patterns::check_patterns;
use crate::capture::Capture;
use crate::cli::{AggregateArg, DiffArgs, InputArgs, MetricArg, ModelArgs, ScaleArg};
use crate::error::{Error, Result};
use crate::ui::Ui;
use crate::output::npy::read_npy_f32_file;
use crate::output::{check_target_dir, read_npy_f32, write_staged, write_stdout, StagedDir};
use crate::render::{self, report, Colormap, CompareOptions, HeatmapOptions, Mask, Scale};

use super::read_dumps::{read_manifest, Corpus, INDEX};
use super::views::view_of;
use super::{check_picture_flags, open_model, read_input, read_probe_file, Session};

/// One side's maps of one text.
struct SideMaps {
    ids: Vec<u32>,
    tokens: Vec<String>,
    /// Axis labels (dumps from before labels existed fall back to tokens).
    labels: Vec<String>,
    layers: usize,
    heads: usize,
    seq: usize,
    causal: bool,
    values: Vec<f32>,
}

/// One probe text with both sides' maps.
struct Probe {
    text: String,
    pair: Option<String>,
    old: SideMaps,
    new: SideMaps,
}

/// One head's maps on the text it changed most on so far: what `--out` draws.
struct DrawnHead {
    seq: usize,
    causal: bool,
    labels: Rc<Vec<String>>,
    old: Vec<f32>,
    new: Vec<f32>,
}

/// Compares probes one at a time, keeping per-text metrics and, when pictures are
/// wanted, only the maps `--out` can draw: each head's maps on the text it changed
/// most on, and under `--aggregate worst` only for the `--top` heads so far. A long
/// probe set then costs what its longest text does, not every text's maps for both models.
struct Comparison {
    metric: Metric,
    /// Which view of the maps is compared (`--view`).
    view: View,
    /// How many heads' maps to keep under `--aggregate worst`; `None` keeps every head's
    /// (no pictures: `Some(0)`; `--aggregate mean`: the ranking is known only at the end).
    keep: Option<usize>,
    shape: Option<(usize, usize)>,
    compared: Vec<ComparedText>,
    /// Per head: the largest metric so far (the first text on ties) ...
    worst: Vec<f64>,
    /// ... and its maps on that text, while the head may still be drawn.
    drawn: Vec<Option<DrawnHead>>,
}

impl Comparison {
    fn new(metric: Metric, aggregate: Aggregate, pictures: Option<usize>) -> Self {
        let keep = match (pictures, aggregate) {
            (None, _) => Some(0),
            (Some(top), Aggregate::Worst) => Some(top),
            (Some(_), Aggregate::Mean) => None,
        };
        Comparison { metric, view: View::Weights, keep, shape: None, compared: Vec::new(), worst: Vec::new(), drawn: Vec::new() }
    }

    fn add(&mut self, index: usize, count: usize, probe: Probe) -> Result<()> {
        check_comparable(index, count, &probe)?;
        let Probe { text, pair, old, new } = probe;
        if let Some((layers, heads)) = self.shape.filter(|&shape| shape != (old.layers, old.heads)) {
            return Err(Error::Input(format!(
                "cannot compare: text {} gives {} layers x {} heads, the texts before it {layers} x {heads}",
                index + 1,
                old.layers,
                old.heads
            )));
        }
        self.shape = Some((old.layers, old.heads));
        let heads = compare_view(self.view, &old.values, &new.values, old.layers, old.heads, old.seq);
        self.worst.resize(heads.len(), f64::NEG_INFINITY);
        self.drawn.resize_with(heads.len(), || None);
        let labels = Rc::new(old.labels.clone());
        let cells = old.seq * old.seq;
        for (position, head) in heads.iter().enumerate() {
            let value = self.metric.of(head);
            // Strictly larger: on ties the first text is drawn, as the report names it.
            if value > self.worst[position] {
                self.worst[position] = value;
                let range = position * cells..(position + 1) * cells;
                self.drawn[position] = (self.keep != Some(0)).then(|| DrawnHead {
                    seq: old.seq,
                    causal: old.causal,
                    labels: Rc::clone(&labels),
                    old: old.values[range.clone()].to_vec(),
                    new: new.values[range].to_vec(),
                });
            }
        }
        // Under --aggregate worst the top heads are those with the largest worst so far
        // (ties by layer, head, as the report ranks them). A head's worst never falls, so a
        // head dropped here can only come back with a larger value on a later text, whose
        // maps are at hand then.
        if let Some(keep) = self.keep.filter(|&keep| keep > 0) {
            let mut order: Vec<usize> = (0..self.worst.len()).collect();
            order.sort_by(|&a, &b| self.worst[b].total_cmp(&self.worst[a]).then(a.cmp(&b)));
            for &position in &order[keep.min(order.len())..] {
                self.drawn[position] = None;
            }
        }
        self.compared.push(ComparedText { text, pair, tokens: old.seq, heads });
        Ok(())
    }
}

/// Returns whether the comparison passed (no head above the threshold).
pub fn run(args: &DiffArgs, ui: &Ui) -> Result<bool> {
    let metric = match args.metric {
        MetricArg::MeanAbs => Metric::MeanAbs,
        MetricArg::MaxAbs => Metric::MaxAbs,
        MetricArg::Jsd => Metric::Jsd,
    };
    let aggregate = match args.aggregate {
        AggregateArg::Worst => Aggregate::Worst,
        AggregateArg::Mean => Aggregate::Mean,
    };
    if !args.fail_above.is_finite() || args.fail_above < 0.0 {
        return Err(Error::Usage(format!("--fail-above {} must be a number >= 0", args.fail_above)));
    }
    check_flags(args)?;
    let out_parent = match &args.out {
        Some(dir) => Some(check_target_dir(dir, args.force)?),
        None => None,
    };
    let mut comparison = Comparison::new(metric, aggregate, args.out.as_ref().map(|_| args.top));
    let view = view_of(args.view);
    comparison.view = view;
    // check_flags has refused --against without --model.
    let (old_label, new_label) = match (&args.against, &args.model) {
        (Some(against), Some(model)) => from_models(args, model, against, ui, &mut comparison)?,
        _ => from_dumps(args, ui, &mut comparison)?,
    };
    let (old_label, new_label) = if view == View::Weights { (old_label, new_label) } else { (format!("{old_label} · {}", view.name()), format!("{new_label} · {}", view.name())) };
    let (layers, heads) = comparison.shape.unwrap_or((0, 0));
    let rules = Rules { metric, aggregate, threshold: args.fail_above, top: args.top };
    let report = DiffReport::build(old_label, new_label, &comparison.compared, layers, heads, rules);
    if let (Some(dir), Some(parent)) = (&args.out, out_parent) {
        write_pictures(dir, &parent, &report, &comparison, args, ui)?;
    }
    let text = if args.json {
        report::json(&report)
    } else if args.markdown {
        report::markdown(&report)
    } else {
        report::text(&report)
    };
    write_stdout(text.as_bytes())?;
    Ok(report.passed())
}

/// Refuse flags that would otherwise be accepted and silently do nothing.
fn check_flags(args: &DiffArgs) -> Result<()> {
    if args.against.is_some() && args.model.is_none() {
        return Err(Error::Usage("--against NEW needs --model OLD: name both models (attnmap diff --model OLD --against NEW TEXT)".into()));
    }
    if args.against.is_none() {
        if args.revision != "main" {
            return Err(Error::Usage("--revision applies to --model, which is used with --against; a dump folder records its own revision".into()));
        }
        if args.against_revision != "main" {
            return Err(Error::Usage("--against-revision applies to --against NEW; a dump folder records its own revision".into()));
        }
    }
    check_picture_flags(&args.style, args.out.as_deref(), args.force, true)
}

/// `attnmap diff OLD_DUMP NEW_DUMP` (or two corpora).
fn from_dumps(args: &DiffArgs, ui: &Ui, comparison: &mut Comparison) -> Result<(String, String)> {
    let [old_dir, new_dir] = args.inputs.as_slice() else {
        return Err(Error::Usage(
            "give two dump folders (attnmap diff OLD_DUMP NEW_DUMP), or two models with --model OLD --against NEW and a TEXT or --texts FILE".into(),
        ));
    };
    match (Path::new(old_dir).join(INDEX).is_file(), Path::new(new_dir).join(INDEX).is_file()) {
        (true, true) => return from_corpora(old_dir, new_dir, ui, comparison),
        (false, false) => {}
        (old_is, _) => {
            let (corpus, dump) = if old_is { (old_dir, new_dir) } else { (new_dir, old_dir) };
            return Err(Error::Usage(format!(
                "{corpus} is a corpus (it holds {INDEX}) but {dump} is not; compare two dump folders, or two corpora of attnmap dump --texts over the same texts"
            )));
        }
    }
    let (old_model, old, old_text, old_pair) = read_dump(Path::new(old_dir), comparison.view)?;
    let (new_model, new, new_text, new_pair) = read_dump(Path::new(new_dir), comparison.view)?;
    if (&old_text, &old_pair) != (&new_text, &new_pair) {
        eprintln!("attnmap: warning: the two dumps were made from different texts; comparing them token by token anyway");
    }
    comparison.add(0, 1, Probe { text: old_text, pair: old_pair, old, new })?;
    let label = |dir: &str, model: String| format!("{dir} ({model})");
    Ok((label(old_dir, old_model), label(new_dir, new_model)))
}

/// `attnmap diff OLD_CORPUS NEW_CORPUS`: text by text, as `--model OLD --against NEW --texts
/// FILE` would run them, one text's dumps (old and new) read at a time.
fn from_corpora(old_dir: &str, new_dir: &str, ui: &Ui, comparison: &mut Comparison) -> Result<(String, String)> {
    let old = Corpus::open(Path::new(old_dir), "OLD")?;
    let new = Corpus::open(Path::new(new_dir), "NEW")?;
    let count = old.texts.len();
    if count != new.texts.len() {
        return Err(Error::Input(format!(
            "cannot compare: {old_dir} holds {count} texts, {new_dir} {}; dump the same --texts FILE with both models",
            new.texts.len()
        )));
    }
    for (o, n) in old.texts.iter().zip(&new.texts) {
        if (o.line, &o.text, &o.pair) != (n.line, &n.text, &n.pair) {
            return Err(Error::Input(format!(
                "cannot compare: text {} of {old_dir} is {:?}{}, of {new_dir} {:?}{}; dump the same --texts FILE with both models",
                o.line,
                o.text,
                o.pair.as_ref().map(|p| format!(" (pair {p:?})")).unwrap_or_default(),
                n.text,
                n.pair.as_ref().map(|p| format!(" (pair {p:?})")).unwrap_or_default(),
            )));
        }
    }
    let progress = ui.progress_bar(count as u64, "texts");
    for (index, (o, n)) in old.texts.iter().zip(&new.texts).enumerate() {
        let (_, old_maps, text, pair) = read_dump(&o.folder, comparison.view)?;
        let (_, new_maps, ..) = read_dump(&n.folder, comparison.view)?;
        comparison.add(index, count, Probe { text, pair, old: old_maps, new: new_maps })?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let label = |dir: &str, corpus: &Corpus| format!("{dir} ({})", corpus.first.model);
    Ok((label(old_dir, &old), label(new_dir, &new)))
}

/// Read a dump folder: its model, maps, text and pair. A dump attnmap could not
/// have written (unknown layout, shapes that disagree, weights that are not a
/// softmax's) is refused, naming the field or the cell.
/// With a `view` other than the weights, its own array (`dump --views`) replaces them; rollout
/// and flow have one map per layer, compared as one "head".
fn read_dump(dir: &Path, view: View) -> Result<(String, SideMaps, String, Option<String>)> {
    let bad = |message: String| Error::Input(format!("{}: {message}", dir.display()));
    if !dir.is_dir() {
        return Err(bad("no such folder; give a folder written by attnmap dump".into()));
    }
    let manifest = read_manifest(dir)?;
    let field = |name: &str| manifest.get(name).ok_or_else(|| bad(format!("manifest.json has no {name:?}")));
    let count = |name: &str| field(name).and_then(|v| v.as_u64().map(|n| n as usize).ok_or_else(|| bad(format!("manifest.json {name:?} is not a count"))));
    let (layers, heads, seq) = (count("layers")?, count("heads")?, count("seq_len")?);
    let ids: Vec<u32> = serde_json::from_value(field("ids")?.clone()).map_err(|e| bad(format!("manifest.json ids: {e}")))?;
    let tokens: Vec<String> = serde_json::from_value(field("tokens")?.clone()).map_err(|e| bad(format!("manifest.json tokens: {e}")))?;
    let labels: Vec<String> = manifest
        .get("labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .filter(|l: &Vec<String>| l.len() == tokens.len())
        .unwrap_or_else(|| tokens.clone());
    let text = field("text")?.as_str().unwrap_or_default().to_string();
    let pair = manifest.get("pair").and_then(|p| p.as_str()).map(str::to_string);
    let model = manifest.get("model").and_then(|m| m.as_str()).unwrap_or("unknown model").to_string();
    let causal = manifest.get("causal").and_then(|c| c.as_bool()).unwrap_or(false);
    let (shape, values) = read_npy_f32_file(&dir.join("attention.npy")).map_err(|e| bad(format!("attention.npy: {e}")))?;
    let said = [layers, heads, seq, seq];
    if shape != said {
        return Err(bad(format!("attention.npy has shape {shape:?} but manifest.json says [{layers}, {heads}, {seq}, {seq}] (layers, heads, seq_len); the dump is damaged, make it again")));
    }
    if let Some(listed) = manifest.get("attention").and_then(|a| a.get("shape")) {
        if listed.as_array().map(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<Vec<_>>>()) != Some(Some(said.to_vec())) {
            return Err(bad(format!("manifest.json \"attention\".\"shape\" is {listed} but attention.npy and \"layers\", \"heads\", \"seq_len\" say {said:?}; the dump is damaged, make it again")));
        }
    }
    for (name, length) in [("ids", ids.len()), ("tokens", tokens.len())] {
        if length != seq {
            return Err(bad(format!("manifest.json has {length} {name} but \"seq_len\" is {seq}; the dump is damaged, make it again")));
        }
    }
    check_patterns(&values, layers, heads, seq).map_err(|fault| bad(format!("attention.npy: {fault}; attnmap never writes such a dump: it is damaged, make it again")))?;
    let (heads, values) = if view == View::Weights { (heads, values) } else { read_view(dir, view, layers, heads, seq)? };
    Ok((model, SideMaps { ids, tokens, labels, layers, heads, seq, causal, values }, text, pair))
}

/// A view's array in a dump: `{view}.npy`, `[layers, heads, seq, seq]` or `[layers, seq, seq]`.
fn read_view(dir: &Path, view: View, layers: usize, heads: usize, seq: usize) -> Result<(usize, Vec<f32>)> {
    let bad = |message: String| Error::Input(format!("{}: {message}", dir.display()));
    let file = format!("{}.npy", view.name());
    let npy = std::fs::read(dir.join(&file)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad(format!("this dump holds no {} view; make it with attnmap dump --views {}", view.name(), view.name())),
        _ => bad(format!("cannot read {file} ({e})")),
    })?;
    let (shape, values) = read_npy_f32(&npy).map_err(|e| bad(format!("{file}: {e}")))?;
    let heads = if view.per_head() { heads } else { 1 };
    let expected: Vec<usize> = if view.per_head() { vec![layers, heads, seq, seq] } else { vec![layers, seq, seq] };
    if shape != expected {
        return Err(bad(format!("{file} has shape {shape:?} but manifest.json says {expected:?}; the dump is damaged, make it again")));
    }
    Ok((heads, values))
}

/// Head-by-head differences of one view. Norm rows are not distributions: their JSD compares
/// the rows normalised to 1 (where the head's output comes from), the absolute measures the norms.
fn compare_view(view: View, old: &[f32], new: &[f32], layers: usize, heads: usize, seq: usize) -> Vec<HeadDiff> {
    let mut diffs = compare(old, new, layers, heads, seq);
    if view == View::Norm {
        let normalised = |values: &[f32]| -> Vec<f32> {
            values
                .chunks(seq)
                .flat_map(|row| {
                    let sum: f32 = row.iter().sum();
                    row.iter().map(move |&v| if sum > 0.0 { v / sum } else { 0.0 })
                })
                .collect()
        };
        for (diff, shares) in diffs.iter_mut().zip(compare(&normalised(old), &normalised(new), layers, heads, seq)) {
            diff.jsd = shares.jsd;
        }
    }
    diffs
}

/// `attnmap diff --model OLD --against NEW [TEXT | --texts FILE]`: both models run on one
/// text at a time, and only what the comparison keeps outlives it.
fn from_models(args: &DiffArgs, model: &str, against: &str, ui: &Ui, comparison: &mut Comparison) -> Result<(String, String)> {
    let texts = probe_texts(args)?;
    let old_args = ModelArgs { model: model.to_string(), revision: args.revision.clone(), quantized: false };
    let new_args = ModelArgs { model: against.to_string(), revision: args.against_revision.clone(), quantized: false };
    let old = open_model(&old_args, ui)?;
    let new = open_model(&new_args, ui)?;
    let count = texts.len();
    let progress = ui.progress_bar(count as u64, "texts");
    for (index, (text, pair)) in texts.into_iter().enumerate() {
        let old_maps = side_maps(&old, &text, pair.as_deref(), comparison.view)?;
        let new_maps = side_maps(&new, &text, pair.as_deref(), comparison.view)?;
        comparison.add(index, count, Probe { text, pair, old: old_maps, new: new_maps })?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok((old_args.model, new_args.model))
}

fn side_maps(session: &Session, text: &str, pair: Option<&str>, view: View) -> Result<SideMaps> {
    let input = session.loaded.tokenizer.encode(text, pair)?;
    if view == View::Flow {
        check_flow_size(session.loaded.model.info().layers, input.len())?;
    }
    let capture = Capture::run(session.loaded.model.as_ref(), &input, None, view.hooks())?.capture;
    let values = view_all(&capture, view)?;
    Ok(SideMaps {
        ids: input.ids,
        tokens: input.tokens,
        labels: input.labels,
        layers: capture.layers,
        heads: if view.per_head() { capture.heads } else { 1 },
        seq: capture.seq,
        causal: capture.causal,
        values,
    })
}

/// The probe set: one TEXT (or '-'), or --texts FILE with one text or JSON object per line.
fn probe_texts(args: &DiffArgs) -> Result<Vec<(String, Option<String>)>> {
    match (&args.texts, args.inputs.as_slice()) {
        (Some(_), [_, ..]) => Err(Error::Usage("give either a TEXT or --texts FILE, not both".into())),
        (None, []) => Err(Error::Usage("give a TEXT to run both models on, or a probe set with --texts FILE".into())),
        (None, [_, _, ..]) => Err(Error::Usage(
            "with --against, give one TEXT (or --texts FILE); two folders are compared without --model/--against".into(),
        )),
        (None, [text]) => {
            let input = InputArgs { text: Some(text.clone()), file: None, pair: args.pair.clone() };
            Ok(vec![read_input(&input)?])
        }
        (Some(path), []) => read_probe_file(path, args.pair.as_deref()),
    }
}

/// The maps can only be compared cell by cell if shapes and tokens agree.
fn check_comparable(index: usize, count: usize, probe: &Probe) -> Result<()> {
    let (old, new) = (&probe.old, &probe.new);
    let which = if count > 1 { format!("text {} of {count}", index + 1) } else { "the text".to_string() };
    if (old.layers, old.heads) != (new.layers, new.heads) {
        return Err(Error::Input(format!(
            "cannot compare cell by cell: old has {} layers x {} heads, new has {} x {}",
            old.layers, old.heads, new.layers, new.heads
        )));
    }
    if old.ids != new.ids {
        let first = old.ids.iter().zip(&new.ids).position(|(a, b)| a != b);
        let detail = match first {
            Some(i) => format!(
                "first difference at token {i}: old {:?} (id {}), new {:?} (id {})",
                old.tokens[i], old.ids[i], new.tokens[i], new.ids[i]
            ),
            None => format!(
                "old has {} tokens, new has {}; they agree on the first {}",
                old.ids.len(),
                new.ids.len(),
                old.ids.len().min(new.ids.len())
            ),
        };
        return Err(Error::Input(format!("cannot compare cell by cell: the two sides tokenize {which} differently; {detail}")));
    }
    Ok(())
}

/// old | new | difference for the top heads that changed, and a layers x heads grid of the metric.
fn write_pictures(dir: &Path, parent: &Path, report: &DiffReport, comparison: &Comparison, args: &DiffArgs, ui: &Ui) -> Result<()> {
    let staging = StagedDir::create(dir, parent, args.force)?;
    let root = staging.path();
    let colormap = Colormap::from_name(&args.style.colormap).unwrap_or(Colormap::Viridis);
    let fixed = args.style.scale == ScaleArg::Fixed;
    let metric = report.metric;
    // A head whose maps are equal on every text (max_abs 0) has nothing to show.
    let changed: Vec<_> = report.top.iter().filter(|head| head.over_texts.max_abs > 0.0).collect();
    for head in &changed {
        let index = head.layer() * report.heads_per_layer + head.head();
        let Some(Some(maps)) = comparison.drawn.get(index) else { continue };
        let title = |side: &str| format!("{side} · layer {} · head {}", head.layer(), head.head());
        let text_note = if comparison.compared.len() > 1 { format!(" · text {}", head.worst_text + 1) } else { String::new() };
        let bytes = render::compare_png(
            &maps.old,
            &maps.new,
            maps.seq,
            &CompareOptions {
                title_old: &title("old"),
                title_new: &title("new"),
                title_diff: &format!("new - old · {} {:.4}{text_note}", metric.name(), head.worst),
                labels: &maps.labels,
                colormap,
                mask: if maps.causal { Mask::Causal } else { Mask::None },
                fixed_scale: fixed,
            },
        )?;
        write_staged(&root.join(format!("L{:02}_H{:02}.png", head.layer(), head.head())), &bytes)?;
    }
    if changed.is_empty() && !ui.quiet {
        eprintln!("attnmap: no head changed, so {} holds no old | new | difference pictures (only grid.png and the report)", dir.display());
    }
    let values: Vec<f32> = report.heads.iter().map(|h| h.judged as f32).collect();
    let layer_labels: Vec<String> = (0..report.layers).map(|l| format!("L{l}")).collect();
    let head_labels: Vec<String> = (0..report.heads_per_layer).map(|h| format!("H{h}")).collect();
    let texts = comparison.compared.len();
    let judged = match report.aggregate {
        Aggregate::Worst => "worst",
        Aggregate::Mean => "mean",
    };
    let title = format!("{judged} {} per head, over {texts} text{}", metric.name(), if texts == 1 { "" } else { "s" });
    // Fixed: the metric's whole range (jsd 0..ln 2, the others 0..1), so grids compare across runs.
    let scale = match (fixed, metric) {
        (false, _) => Scale::zero_to_max(&values),
        (true, Metric::Jsd) => Scale::Range { min: 0.0, max: std::f32::consts::LN_2 },
        (true, _) => Scale::Range { min: 0.0, max: 1.0 },
    };
    let grid = render::heatmap_png(
        &values,
        report.layers,
        report.heads_per_layer,
        &HeatmapOptions {
            title: &title,
            row_labels: &layer_labels,
            col_labels: &head_labels,
            colormap,
            scale,
            colorbar_label: metric.name(),
            row_caption: "layer",
            col_caption: "head",
            ..HeatmapOptions::default()
        },
    )?;
    write_staged(&root.join("grid.png"), &grid)?;
    write_staged(&root.join("report.md"), report::markdown(report).as_bytes())?;
    write_staged(&root.join("report.json"), report::json(report).as_bytes())?;
    staging.publish()
}
