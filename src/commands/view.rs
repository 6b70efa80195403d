//! `attnmap view`: the interactive HTML viewer of a dump (also written by
//! `dump` as DIR/view.html, and by `show -o FILE.html` for one head).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::capture::Capture;
use crate::cli::{StyleArgs, ViewArgs};
use crate::error::{Error, Result};
use crate::output::{read_npy_f32, write_file};
use crate::render::html::{self, Maps, PackedMaps, Page, View};
use crate::ui::Ui;

use super::{colormap, head_subtitle, head_values};

/// The README's "Reading maps honestly", shown on every page.
pub const HONEST_NOTE: &str = "A map shows where one head's weights go. It does not show what the values it mixes carry (a head can put most of its weight on [CLS] or [SEP] while contributing almost nothing), nor how layers combine. With many heads, some map will always seem to support a theory: look at many heads and many texts before concluding, and compare against shuffled inputs. \"0 .. map max\" colours each map up to its own maximum (the colour bar shows it); \"fixed 0 .. 1\" compares maps at a glance; sqrt lifts faint weights. Attention sinks (the first token) dominate many heads: hide it to see the rest.";

pub fn run(args: &ViewArgs, ui: &Ui) -> Result<()> {
    let dir = &args.dump;
    let output = args.output.clone().unwrap_or_else(|| dir.join("view.html"));
    crate::output::check_target_file(&output)?;
    let manifest = read_manifest(dir)?;
    let bytes = dump_page(dir, &manifest, None, args.layers.as_deref(), args.heads.as_deref(), &args.style)?;
    write_file(&output, &bytes)?;
    if !ui.quiet {
        eprintln!("attnmap: wrote {}", output.display());
    }
    Ok(())
}

fn read_manifest(dir: &Path) -> Result<Value> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Input(format!("cannot read {} ({e}); give a folder written by `attnmap dump`", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Input(format!("{} is not valid JSON ({e}); write the dump again with `attnmap dump`", path.display())))
}

/// The viewer of a dump folder, from its manifest. `packed` holds every view's maps by name
/// ("weights", "norm", ...), packed as a dump computed them: nothing is then read back (a
/// dump passes them, with every layer and head).
pub fn dump_page(dir: &Path, manifest: &Value, packed: Option<&BTreeMap<String, PackedMaps>>, layers: Option<&str>, heads: Option<&str>, style: &StyleArgs) -> Result<Vec<u8>> {
    let field = |name: &str| manifest.get(name).and_then(Value::as_u64).map(|n| n as usize);
    let (Some(layer_count), Some(head_count), Some(seq)) = (field("layers"), field("heads"), field("seq_len")) else {
        return Err(Error::Input(format!("{}/manifest.json lacks layers, heads or seq_len; write the dump again with `attnmap dump`", dir.display())));
    };
    let strings = |name: &str| -> Vec<String> {
        manifest.get(name).and_then(Value::as_array).map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default()
    };
    let tokens = strings("tokens");
    let mut labels = strings("labels");
    if labels.len() != seq {
        labels = tokens.clone();
    }
    if labels.len() != seq {
        labels = (0..seq).map(|i| i.to_string()).collect();
    }
    let tokens = if tokens.len() == seq { tokens } else { labels.clone() };
    let layer_pick = parse_indices(layers, layer_count, "--layers", "layer")?;
    let head_pick = parse_indices(heads, head_count, "--heads", "head")?;

    // Refuse an oversized page before reading anything big.
    check_page_size(dir, seq, std::iter::once(4), &layer_pick, &head_pick, layer_count)?;

    if let Some(packed) = packed {
        // Every view of the dump in the order a page read back from files has: the weights,
        // then whatever else the manifest lists.
        let mut names = vec![("weights".to_string(), "attention weight".to_string())];
        names.extend(listed_views(manifest).into_iter().filter(|(name, _)| name != "weights" && name != "attention").map(|(name, _)| (name.clone(), name)));
        let mut views = Vec::new();
        for (name, description) in names {
            let maps = packed.get(&name).ok_or_else(|| Error::Input(format!("view {name} was not packed for the page")))?;
            let heads = if view_rank(manifest, &name) == Some(3) { vec!["all".to_string()] } else { head_pick.iter().map(|h| h.to_string()).collect() };
            views.push((name, description, heads, maps));
        }
        let ranks: Vec<usize> = views.iter().map(|(_, _, heads, _)| if heads.len() == 1 && heads[0] == "all" { 3 } else { 4 }).collect();
        check_page_size(dir, seq, ranks.into_iter(), &layer_pick, &head_pick, layer_count)?;
        let page_views = views
            .into_iter()
            .map(|(name, description, heads, maps)| View { name, description, layers: layer_pick.clone(), heads, maps: Maps::Packed(maps) })
            .collect();
        return Ok(html::view_html(&page_of(manifest, &labels, &tokens, seq, layer_count, head_count, style, page_views))?);
    }

    // Every view of the dump: the weights, then whatever else the manifest lists.
    let mut sources: Vec<(String, String, Vec<f32>, Vec<usize>)> = Vec::new();
    let (shape, attention) = read_npy(&dir.join("attention.npy"))?;
    if shape != [layer_count, head_count, seq, seq] {
        return Err(Error::Input(format!(
            "{}/attention.npy has shape {shape:?} but its manifest says [{layer_count}, {head_count}, {seq}, {seq}]; write the dump again with `attnmap dump`",
            dir.display()
        )));
    }
    sources.push(("weights".into(), "attention weight".into(), attention, shape));
    for (name, file) in listed_views(manifest) {
        if name == "weights" || name == "attention" {
            continue;
        }
        let path = dir.join(&file);
        match read_npy(&path) {
            Ok((shape, values)) => sources.push((name.clone(), name, values, shape)),
            Err(error) => eprintln!("attnmap: warning: view {name} left out of the page: {error}"),
        }
    }

    check_page_size(dir, seq, sources.iter().map(|(_, _, _, shape)| shape.len()), &layer_pick, &head_pick, layer_count)?;

    let mut narrowed: Vec<Narrowed> = Vec::new();
    for (name, description, values, shape) in sources {
        let map_len = seq * seq;
        let view_heads = match shape.as_slice() {
            [l, h, q, k] if *l == layer_count && *h == head_count && *q == seq && *k == seq => *h,
            [l, q, k] if *l == layer_count && *q == seq && *k == seq => 1,
            other => {
                eprintln!("attnmap: warning: view {name} left out of the page: shape {other:?} does not match {layer_count} layers x {head_count} heads x {seq} tokens");
                continue;
            }
        };
        let head_list: Vec<usize> = if view_heads == 1 && shape.len() == 3 { vec![0] } else { head_pick.clone() };
        let mut picked = Vec::with_capacity(layer_pick.len() * head_list.len() * map_len);
        for &layer in &layer_pick {
            for &head in &head_list {
                let start = (layer * view_heads + head) * map_len;
                picked.extend_from_slice(&values[start..start + map_len]);
            }
        }
        let head_names = if shape.len() == 3 { vec!["all".to_string()] } else { head_list.iter().map(|h| h.to_string()).collect() };
        narrowed.push(Narrowed { name, description, heads: head_names, values: picked });
    }

    let page_views = narrowed
        .iter()
        .map(|view| View { name: view.name.clone(), description: view.description.clone(), layers: layer_pick.clone(), heads: view.heads.clone(), maps: Maps::Values(&view.values) })
        .collect();
    Ok(html::view_html(&page_of(manifest, &labels, &tokens, seq, layer_count, head_count, style, page_views))?)
}

/// A manifest view's array rank (4: a map per head, 3: one per layer), from its "shape".
fn view_rank(manifest: &Value, name: &str) -> Option<usize> {
    manifest.get("views")?.get(name)?.get("shape")?.as_array().map(Vec::len)
}

/// The page around a dump's views: title, subtitle, tokens and style, from the manifest.
#[allow(clippy::too_many_arguments)]
fn page_of<'a>(manifest: &Value, labels: &'a [String], tokens: &'a [String], seq: usize, layer_count: usize, head_count: usize, style: &StyleArgs, views: Vec<View<'a>>) -> Page<'a> {
    let field = |name: &str| manifest.get(name).and_then(Value::as_u64).map(|n| n as usize);
    let model = manifest.get("model").and_then(Value::as_str).unwrap_or("model");
    let short = model.trim_end_matches(['/', '\\']).rsplit(['/', '\\']).next().unwrap_or(model).trim_end_matches(".gguf");
    let dropped = field("truncated_tokens").unwrap_or(0);
    let truncated = if dropped > 0 { format!(" (truncated, {dropped} dropped)") } else { String::new() };
    Page {
        title: format!("{short} · {seq} tokens"),
        subtitle: format!("{} layers x {} heads{truncated} · attention weights only: not what the values carry", layer_count, head_count),
        labels,
        tokens,
        seq,
        causal: manifest.get("causal").and_then(Value::as_bool).unwrap_or(false),
        colormap: colormap(style),
        scale: scale_name(style),
        note: HONEST_NOTE,
        views,
    }
}

/// One view's maps for the chosen layers and heads.
struct Narrowed {
    name: String,
    description: String,
    heads: Vec<String>,
    values: Vec<f32>,
}

/// Refuse a page past [`html::MAX_CODES`], naming the flags that narrow it.
/// `ranks` are the views' array ranks: 4 for per-head views, 3 for one map per layer.
pub(super) fn check_page_size(dir: &Path, seq: usize, ranks: impl Iterator<Item = usize>, layer_pick: &[usize], head_pick: &[usize], layer_count: usize) -> Result<()> {
    let maps: usize = ranks.map(|rank| if rank == 4 { layer_pick.len() * head_pick.len() } else { layer_pick.len() }).sum();
    let needed = html::packed_size(seq, maps);
    if needed > html::MAX_CODES {
        let per_map = (seq * seq).max(1);
        let fit = (html::MAX_CODES / per_map).max(1);
        return Err(Error::Input(format!(
            "a viewer of {maps} maps of {seq}x{seq} tokens would hold {:.0} MB (the limit is {:.0} MB, to stay quick in a browser); narrow it to at most {fit} maps, e.g. `attnmap view {} --layers 0-{} --heads 0-{}`",
            needed as f64 * 4.0 / 3.0 / 1e6,
            html::MAX_CODES as f64 * 4.0 / 3.0 / 1e6,
            dir.display(),
            (fit / head_pick.len().max(1)).clamp(1, layer_count) - 1,
            head_pick.len().min(fit).max(1) - 1,
        )));
    }

    Ok(())
}

/// A one-head page, for `show -o FILE.html`.
pub fn head_page(capture: &Capture, layer: usize, head: usize, title: &str, style: &StyleArgs) -> Result<Vec<u8>> {
    let values = head_values(capture, layer, head)?;
    let page = Page {
        title: title.to_string(),
        subtitle: head_subtitle(capture),
        labels: &capture.input.labels,
        tokens: &capture.input.tokens,
        seq: capture.seq,
        causal: capture.causal,
        colormap: colormap(style),
        scale: scale_name(style),
        note: HONEST_NOTE,
        views: vec![View { name: "weights".into(), description: "attention weight".into(), layers: vec![layer], heads: vec![head.to_string()], maps: Maps::Values(values) }],
    };
    Ok(html::view_html(&page)?)
}

fn scale_name(style: &StyleArgs) -> &'static str {
    match style.scale {
        crate::cli::ScaleArg::Auto => "max",
        crate::cli::ScaleArg::Fixed => "fixed",
    }
}

/// `views` in a manifest: names (file NAME.npy), `{name, file}` objects, or a `{name: file}` map.
fn listed_views(manifest: &Value) -> Vec<(String, String)> {
    let entry = |name: &str, value: &Value| -> Option<(String, String)> {
        let file = match value {
            Value::String(file) => file.clone(),
            Value::Object(object) => object.get("file").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("{name}.npy")),
            _ => format!("{name}.npy"),
        };
        Some((name.to_string(), file))
    };
    match manifest.get("views") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(name) => Some((name.clone(), format!("{name}.npy"))),
                Value::Object(object) => object.get("name").and_then(Value::as_str).and_then(|name| entry(name, item)),
                _ => None,
            })
            .collect(),
        Some(Value::Object(map)) => map.iter().filter_map(|(name, value)| entry(name, value)).collect(),
        _ => Vec::new(),
    }
}

fn read_npy(path: &PathBuf) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Input(format!("cannot read {} ({e}); is this a folder written by `attnmap dump`?", path.display())))?;
    read_npy_f32(&bytes).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}

/// `--layers 0-3,7`: sorted, distinct indices below `count`; all of them when not given.
pub fn parse_indices(spec: Option<&str>, count: usize, flag: &str, what: &str) -> Result<Vec<usize>> {
    let Some(spec) = spec else { return Ok((0..count).collect()) };
    let bad = |part: &str| Error::Usage(format!("{flag} {spec}: `{part}` is not a {what} number or range such as 0-3 (this dump has {what}s 0-{})", count.saturating_sub(1)));
    let mut picked = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>().map_err(|_| bad(part))?, b.trim().parse::<usize>().map_err(|_| bad(part))?),
            None => {
                let n = part.parse::<usize>().map_err(|_| bad(part))?;
                (n, n)
            }
        };
        if first > last || last >= count {
            return Err(bad(part));
        }
        picked.extend(first..=last);
    }
    picked.sort_unstable();
    picked.dedup();
    if picked.is_empty() {
        return Err(bad(spec));
    }
    Ok(picked)
}
