//! `attnmap diff`: compare the maps of two model versions, head by head, and
//! fail past a threshold. Either two dump folders, or two models run on the
//! same probe texts.

use std::path::{Path, PathBuf};

use crate::analysis::diff::{compare, ComparedText, DiffReport, HeadDiff, Metric, Rules};
use crate::analysis::views::{check_flow_size, view_all, View};
use crate::capture::Capture;
use crate::cli::{DiffArgs, InputArgs, MetricArg, ModelArgs};
use crate::error::{Error, Result};
use crate::ui::Ui;
use crate::output::{check_target_dir, read_npy_f32, write_file, write_stdout, StagedDir};
use crate::render::{self, report, Colormap, CompareOptions, HeatmapOptions, Mask, Scale};
use crate::source::DEFAULT_MODEL;

use super::views::view_of;
use super::{open_model, read_input, read_probe_file, Session};

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

/// Returns whether the comparison passed (no head above the threshold).
pub fn run(args: &DiffArgs, ui: &Ui) -> Result<bool> {
    let metric = match args.metric {
        MetricArg::MeanAbs => Metric::MeanAbs,
        MetricArg::MaxAbs => Metric::MaxAbs,
        MetricArg::Jsd => Metric::Jsd,
    };
    if !args.fail_above.is_finite() || args.fail_above < 0.0 {
        return Err(Error::Usage(format!("--fail-above {} must be a number >= 0", args.fail_above)));
    }
    let out_parent = match &args.out {
        Some(dir) => Some(check_target_dir(dir, args.force)?),
        None => None,
    };
    let view = view_of(args.view);
    let (old_label, new_label, probes) = match &args.against {
        Some(against) => from_models(args, against, view, ui)?,
        None => from_dumps(args, view)?,
    };
    let (old_label, new_label) = if view == View::Weights { (old_label, new_label) } else { (format!("{old_label} · {}", view.name()), format!("{new_label} · {}", view.name())) };
    let mut compared = Vec::with_capacity(probes.len());
    for (index, probe) in probes.iter().enumerate() {
        check_comparable(index, probes.len(), probe)?;
        let old = &probe.old;
        compared.push(ComparedText {
            text: probe.text.clone(),
            pair: probe.pair.clone(),
            tokens: old.seq,
            heads: compare_view(view, &old.values, &probe.new.values, old.layers, old.heads, old.seq),
        });
    }
    let first = &probes[0].old;
    let rules = Rules { metric, threshold: args.fail_above, top: args.top };
    let report = DiffReport::build(old_label, new_label, &compared, first.layers, first.heads, rules);
    if let (Some(dir), Some(parent)) = (&args.out, out_parent) {
        write_pictures(dir, &parent, &report, &probes, &compared, args)?;
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

/// Head-by-head differences of one view. Norm rows are not distributions: their JSD compares
/// the rows normalised to 1 (where the head's output comes from), the absolute measures the norms.
fn compare_view(view: View, old: &[f32], new: &[f32], layers: usize, heads: usize, seq: usize) -> Vec<HeadDiff> {
    let mut diffs = compare(old, new, layers, heads, seq);
    if view == View::Norm {
        let normalised = |values: &[f32]| -> Vec<f32> {
            values.chunks(seq).flat_map(|row| {
                let sum: f32 = row.iter().sum();
                row.iter().map(move |&v| if sum > 0.0 { v / sum } else { 0.0 })
            }).collect()
        };
        for (diff, shares) in diffs.iter_mut().zip(compare(&normalised(old), &normalised(new), layers, heads, seq)) {
            diff.jsd = shares.jsd;
        }
    }
    diffs
}

/// `attnmap diff OLD_DUMP NEW_DUMP`.
fn from_dumps(args: &DiffArgs, view: View) -> Result<(String, String, Vec<Probe>)> {
    let [old_dir, new_dir] = args.inputs.as_slice() else {
        return Err(Error::Usage(
            "give two dump folders (attnmap diff OLD_DUMP NEW_DUMP), or two models with --model OLD --against NEW and a TEXT or --texts FILE".into(),
        ));
    };
    let (old_model, old, old_text, old_pair) = read_dump(Path::new(old_dir), view)?;
    let (new_model, new, new_text, new_pair) = read_dump(Path::new(new_dir), view)?;
    if (&old_text, &old_pair) != (&new_text, &new_pair) {
        eprintln!("attnmap: warning: the two dumps were made from different texts; comparing them token by token anyway");
    }
    let label = |dir: &str, model: String| format!("{dir} ({model})");
    Ok((label(old_dir, old_model), label(new_dir, new_model), vec![Probe { text: old_text, pair: old_pair, old, new }]))
}

/// Read a dump folder: its model, maps of `view` (per-layer views as one "head"), text and pair.
fn read_dump(dir: &Path, view: View) -> Result<(String, SideMaps, String, Option<String>)> {
    let bad = |message: String| Error::Input(format!("{}: {message}", dir.display()));
    if !dir.is_dir() {
        return Err(bad("no such folder; give a folder written by attnmap dump".into()));
    }
    let manifest_path = dir.join("manifest.json");
    let manifest: serde_json::Value = std::fs::read(&manifest_path)
        .map_err(|e| bad(format!("cannot read manifest.json ({e}); is it a folder written by attnmap dump?")))
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest.json is not valid JSON ({e})"))))?;
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
    let file = if view == View::Weights { "attention.npy".to_string() } else { format!("{}.npy", view.name()) };
    let heads = if view.per_head() { heads } else { 1 };
    let npy = std::fs::read(dir.join(&file)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if view != View::Weights => {
            bad(format!("this dump holds no {} view; make it with attnmap dump --views {}", view.name(), view.name()))
        }
        _ => bad(format!("cannot read {file} ({e})")),
    })?;
    let (shape, values) = read_npy_f32(&npy).map_err(|e| bad(format!("{file}: {e}")))?;
    let expected: Vec<usize> = if view.per_head() { vec![layers, heads, seq, seq] } else { vec![layers, seq, seq] };
    if shape != expected || ids.len() != seq || tokens.len() != seq {
        return Err(bad(format!(
            "{file} has shape {shape:?} but manifest.json says {expected:?} with {} ids; the dump is damaged, make it again",
            ids.len()
        )));
    }
    Ok((model, SideMaps { ids, tokens, labels, layers, heads, seq, causal, values }, text, pair))
}

/// `attnmap diff --model OLD --against NEW [TEXT | --texts FILE]`.
fn from_models(args: &DiffArgs, against: &str, view: View, ui: &Ui) -> Result<(String, String, Vec<Probe>)> {
    let texts = probe_texts(args)?;
    let old_args = ModelArgs { model: args.model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_string()), revision: args.revision.clone(), quantized: false };
    let new_args = ModelArgs { model: against.to_string(), revision: args.against_revision.clone(), quantized: false };
    let old = open_model(&old_args, ui)?;
    let new = open_model(&new_args, ui)?;
    let mut probes = Vec::with_capacity(texts.len());
    for (text, pair) in texts {
        let old_maps = side_maps(&old, &text, pair.as_deref(), view)?;
        let new_maps = side_maps(&new, &text, pair.as_deref(), view)?;
        probes.push(Probe { text, pair, old: old_maps, new: new_maps });
    }
    Ok((old_args.model, new_args.model, probes))
}

fn side_maps(session: &Session, text: &str, pair: Option<&str>, view: View) -> Result<SideMaps> {
    let input = session.loaded.tokenizer.encode(text, pair)?;
    if view == View::Flow {
        check_flow_size(session.loaded.model.info().layers, input.len())?;
    }
    let capture = Capture::run(session.loaded.model.as_ref(), &input, None, view.hooks())?.capture;
    let values = view_all(&capture, view)?;
    Ok(SideMaps {
        ids: input.ids.clone(),
        tokens: input.tokens.clone(),
        labels: input.labels.clone(),
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

/// old | new | difference for the top heads, and a layers x heads grid of the metric.
fn write_pictures(dir: &Path, parent: &Path, report: &DiffReport, probes: &[Probe], compared: &[ComparedText], args: &DiffArgs) -> Result<()> {
    let staging = StagedDir::new(dir, parent)?;
    let root = staging.path();
    let colormap = Colormap::from_name(&args.style.colormap).unwrap_or(Colormap::Viridis);
    let metric = report.metric;
    let mut files: Vec<PathBuf> = Vec::new();
    for head in &report.top {
        // Draw the text on which this head changed most.
        let index = (0..compared.len())
            .max_by(|&a, &b| {
                let per_head = |t: usize| metric.of(&compared[t].heads[head.layer * report.heads_per_layer + head.head]);
                per_head(a).total_cmp(&per_head(b)).then(b.cmp(&a))
            })
            .unwrap_or(0);
        let probe = &probes[index];
        let seq = probe.old.seq;
        let offset = (head.layer * report.heads_per_layer + head.head) * seq * seq;
        let range = offset..offset + seq * seq;
        let title = |side: &str| format!("{side} · layer {} · head {}", head.layer, head.head);
        let bytes = render::compare_png(
            &probe.old.values[range.clone()],
            &probe.new.values[range],
            seq,
            &CompareOptions {
                title_old: &title("old"),
                title_new: &title("new"),
                title_diff: &format!("new - old · {} {:.4}", metric.name(), metric.of(head)),
                labels: &probe.old.labels,
                colormap,
                mask: if probe.old.causal { Mask::Causal } else { Mask::None },
            },
        )?;
        let name = PathBuf::from(format!("L{:02}_H{:02}.png", head.layer, head.head));
        write_file(&root.join(&name), &bytes)?;
        files.push(name);
    }
    let values: Vec<f32> = report.heads.iter().map(|h| metric.of(h) as f32).collect();
    let layer_labels: Vec<String> = (0..report.layers).map(|l| format!("L{l}")).collect();
    let head_labels: Vec<String> = (0..report.heads_per_layer).map(|h| format!("H{h}")).collect();
    let title = format!("{} per head, over {} text{}", metric.name(), compared.len(), if compared.len() == 1 { "" } else { "s" });
    let grid = render::heatmap_png(
        &values,
        report.layers,
        report.heads_per_layer,
        &HeatmapOptions {
            title: &title,
            row_labels: &layer_labels,
            col_labels: &head_labels,
            colormap,
            scale: Scale::zero_to_max(&values),
            colorbar_label: metric.name(),
            row_caption: "layer",
            col_caption: "head",
            ..HeatmapOptions::default()
        },
    )?;
    write_file(&root.join("grid.png"), &grid)?;
    write_file(&root.join("report.md"), report::markdown(report).as_bytes())?;
    write_file(&root.join("report.json"), report::json(report).as_bytes())?;
    staging.publish()
}
