//! `dump`'s layer sink: the forward pass hands each layer's maps over as soon as the layer
//! is computed ([`Capture::stream`](crate::capture::Capture::stream)), and this writes them,
//! draws them and lets them go, so a dump holds one layer of maps at a time whatever the
//! model's size (issue 10; ripgrep's searcher pushes its matches to a `Sink` the same way).
//!
//! Per layer: its weights are appended to attention.npy (whose header is known up front),
//! every head's picture is drawn and its grid tile painted in parallel, the views that can be
//! computed a layer at a time (norm, rollout, the word merges) are written, and the page's
//! one-byte codes are packed. What needs every layer waits for [`DumpSink::finish`]: flow
//! (its Â_l, one `[seq, seq]` per layer), the norm pictures under `--scale fixed` (one range
//! over the whole dump: read back from norm.npy a layer at a time), and the grid's axes.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;

use crate::analysis::views::{flow_of_residuals, norm_layer, residual_attention, Rollout, View};
use crate::capture::{LayerMaps, LayerSink};
use crate::cli::{DumpArgs, ScaleArg};
use crate::error::{Error, Result};
use crate::output::npy::NpyReader;
use crate::output::{write_staged, NpyWriter};
use crate::render::html::PackedMaps;
use crate::render::{Colormap, GridOptions, GridPng, GridSvg, GridTile, HeatmapFrame, Mask, Scale};
use crate::tokenize::Encoded;

use super::views::{picture as view_picture, scale_of, Axis};
use super::{head_scale, head_title, map_frame, map_picture, Picture};

/// What a dump writes, decided before the forward pass.
pub(super) struct DumpPlan<'a> {
    pub root: &'a Path,
    /// The model's short name, for titles.
    pub name: &'a str,
    pub input: &'a Encoded,
    pub layers: usize,
    pub heads: usize,
    pub causal: bool,
    pub views: &'a [View],
    pub args: &'a DumpArgs,
    /// Draw each map's picture (heads/*.png, the views' pictures); `--no-pictures` turns it off.
    pub pictures: bool,
    /// Pack every map for view.html (the page fits).
    pub page: bool,
    pub progress: &'a indicatif::ProgressBar,
}

/// The arrays and pictures of one dump, written as its layers pass.
pub(super) struct DumpSink<'a> {
    plan: DumpPlan<'a>,
    seq: usize,
    tokens: Axis,
    words: Option<Axis>,
    attention: NpyWriter,
    grid: GridPng,
    grid_svg: Option<GridSvg>,
    /// What every head's picture shares, drawn once.
    frame: Option<HeatmapFrame>,
    norm: Option<NpyWriter>,
    /// The largest norm so far: `--scale fixed` draws every norm map on 0..this.
    norm_largest: f32,
    rollout: Option<(Rollout, NpyWriter)>,
    /// Â_l of every layer so far, when flow is asked for (refused past ~160 tokens, so small).
    flow: Option<Vec<Vec<f64>>>,
    word_arrays: BTreeMap<View, NpyWriter>,
    page: Option<BTreeMap<String, PackedMaps>>,
}

/// What the page needs once the last layer has passed: every view's packed maps, by name.
pub(super) struct Finished {
    pub page: Option<BTreeMap<String, PackedMaps>>,
    /// grid.png with every tile painted, not yet encoded: the caller encodes it while it
    /// assembles the page, the two single-threaded steps a dump ends with.
    pub grid: GridPng,
}

/// A view's array: file name and shape (`[layers, heads, seq, seq]` or `[layers, seq, seq]`).
pub(super) fn view_array(view: View, layers: usize, heads: usize, side: usize) -> (String, Vec<usize>) {
    let file = if view == View::Weights { "attention.npy".to_string() } else { format!("{}.npy", view.name()) };
    let shape = if view.per_head() { vec![layers, heads, side, side] } else { vec![layers, side, side] };
    (file, shape)
}

/// The picture file of one map of a view (`head` is ignored for per-layer views).
pub(super) fn picture_file(view: View, layer: usize, head: usize, svg: bool) -> String {
    let extension = if svg { "svg" } else { "png" };
    match view {
        View::Weights => format!("heads/L{layer:02}_H{head:02}.{extension}"),
        view if view.per_head() => format!("{}/L{layer:02}_H{head:02}.{extension}", view.name()),
        view => format!("{}/L{layer:02}.{extension}", view.name()),
    }
}

impl<'a> DumpSink<'a> {
    pub fn new(plan: DumpPlan<'a>) -> Result<Self> {
        let (root, input, args) = (plan.root, plan.input, plan.args);
        let (layers, heads, seq) = (plan.layers, plan.heads, input.len());
        let create_dir = |name: &str| std::fs::create_dir(root.join(name)).map_err(|e| Error::output(root.join(name), e));
        if plan.pictures {
            create_dir("heads")?;
        }
        let tokens = Axis { labels: input.labels.clone(), words: None };
        let words = args.words.then(|| {
            let words = crate::analysis::words::words(input);
            Axis { labels: crate::analysis::words::labels(&words), words: Some(words) }
        });
        if words.is_some() {
            create_dir("words")?;
        }
        let array = |view: View, side: usize| -> Result<NpyWriter> {
            let (file, shape) = view_array(view, layers, heads, side);
            let file = if side == seq { file } else { format!("words/{file}") };
            NpyWriter::create(&root.join(file), &shape)
        };
        let wants = |view: View| plan.views.contains(&view);
        for view in plan.views.iter().filter(|v| **v != View::Weights && plan.pictures) {
            create_dir(view.name())?;
        }
        let mut word_arrays = BTreeMap::new();
        if let Some(words) = &words {
            for &view in plan.views {
                word_arrays.insert(view, array(view, words.len())?);
            }
        }
        let grid_title = format!("{} · every head · {seq} tokens", plan.name);
        let grid_options = GridOptions {
            title: &grid_title,
            colormap: Colormap::from_name(&args.style.colormap).unwrap_or(Colormap::Viridis),
            scale_per_head: args.style.scale == ScaleArg::Auto,
            // As heads/*.png: --scale fixed puts every tile on 0..1.
            fixed_scale: (args.style.scale == ScaleArg::Fixed).then_some(Scale::Range { min: 0.0, max: 1.0 }),
            mask: if plan.causal { Mask::Causal } else { Mask::None },
            labels: &input.labels,
            ..GridOptions::default()
        };
        Ok(DumpSink {
            seq,
            tokens,
            attention: array(View::Weights, seq)?,
            grid: GridPng::new(layers, heads, seq, &grid_options)?,
            grid_svg: if args.svg { Some(GridSvg::new(layers, heads, seq, &grid_options)?) } else { None },
            frame: if plan.pictures { Some(map_frame(input, plan.causal, &head_title(plan.name, 0, 0), &args.style)?) } else { None },
            norm: if wants(View::Norm) { Some(array(View::Norm, seq)?) } else { None },
            norm_largest: 0.0,
            rollout: if wants(View::Rollout) { Some((Rollout::default(), array(View::Rollout, seq)?)) } else { None },
            flow: wants(View::Flow).then(Vec::new),
            word_arrays,
            page: plan.page.then(BTreeMap::new),
            words,
            plan,
        })
    }

    /// Write one layer's maps of `view` (`[heads, seq, seq]` or one `[seq, seq]`): the words'
    /// array, the page's codes and (unless held back for a dump-wide scale) the pictures.
    fn write_view_layer(&mut self, view: View, layer: usize, maps: &[f32], draw: bool) -> Result<()> {
        let seq = self.seq;
        if let Some(words) = &self.words {
            if let Some(array) = self.word_arrays.get_mut(&view) {
                array.append(&words.merge(maps, seq))?;
            }
        }
        if let Some(page) = &mut self.page {
            let packed = page.entry(view.name().to_string()).or_default();
            for (head, map) in maps.chunks_exact(seq * seq).enumerate() {
                packed.push(layer, head, map, seq)?;
            }
        }
        if draw && view != View::Weights {
            self.draw_view(view, layer, maps)?;
        }
        Ok(())
    }

    /// The pictures of one layer's maps of a view other than the weights, in parallel.
    fn draw_view(&self, view: View, layer: usize, maps: &[f32]) -> Result<()> {
        if !self.plan.pictures {
            return Ok(());
        }
        let (seq, name, style) = (self.seq, self.plan.name, &self.plan.args.style);
        maps.par_chunks_exact(seq * seq).enumerate().try_for_each(|(head, map)| {
            let title = if view.per_head() { format!("{name} · layer {layer} · head {head} · {}", view.name()) } else { format!("{name} · {} to layer {layer}", view.name()) };
            let scale = scale_of(view, map, style, self.norm_largest);
            let bytes = view_picture(map, &self.tokens, self.plan.causal, view, &title, self.plan.input.dropped, scale, style)?;
            write_staged(&self.plan.root.join(picture_file(view, layer, head, false)), &bytes)
        })
    }

    /// Close every array and draw what waited for the last layer.
    pub fn finish(mut self) -> Result<Finished> {
        let seq = self.seq;
        if let Some(residuals) = self.flow.take() {
            let flows = flow_of_residuals(&residuals, seq);
            drop(residuals);
            let (file, shape) = view_array(View::Flow, self.plan.layers, self.plan.heads, seq);
            let mut array = NpyWriter::create(&self.plan.root.join(file), &shape)?;
            for (layer, map) in flows.iter().enumerate() {
                array.append(map)?;
                self.write_view_layer(View::Flow, layer, map, true)?;
            }
            array.finish()?;
        }
        if let Some(array) = self.norm.take() {
            let path = array.path().to_path_buf();
            array.finish()?;
            if self.plan.args.style.scale == ScaleArg::Fixed {
                // One range over the whole dump, known only now: read norm.npy back a layer at a time.
                let unreadable = |e: String| Error::output(&path, format!("cannot be read back ({e})"));
                let mut reader = NpyReader::open(&path).map_err(unreadable)?;
                let per_layer = self.plan.heads * seq * seq;
                let mut maps = Vec::with_capacity(per_layer);
                for layer in 0..self.plan.layers {
                    maps.clear();
                    reader.read(per_layer, &mut maps).map_err(unreadable)?;
                    self.draw_view(View::Norm, layer, &maps)?;
                }
            }
        }
        if let Some((_, array)) = self.rollout.take() {
            array.finish()?;
        }
        self.attention.finish()?;
        for (_, array) in std::mem::take(&mut self.word_arrays) {
            array.finish()?;
        }
        if let Some(grid) = self.grid_svg.take() {
            write_staged(&self.plan.root.join("grid.svg"), &grid.finish())?;
        }
        self.plan.progress.inc(1);
        Ok(Finished { page: self.page, grid: self.grid })
    }
}

impl LayerSink for DumpSink<'_> {
    fn layer(&mut self, maps: LayerMaps) -> Result<()> {
        let LayerMaps { layer, heads, seq, patterns, value_norms } = maps;
        if heads != self.plan.heads || seq != self.seq {
            return Err(Error::Input(format!("layer {layer} has {heads} heads of {seq} tokens; the model said {} of {}", self.plan.heads, self.seq)));
        }
        self.attention.append(patterns)?;
        let (plan, painter, frame) = (&self.plan, self.grid.painter(), &self.frame);
        // Each head's picture and grid tile, in parallel: PNG encoding is most of a dump's time.
        let tiles: Vec<GridTile> = (0..heads)
            .into_par_iter()
            .map(|head| {
                let values = maps.head(head);
                if let Some(frame) = frame {
                    let title = head_title(plan.name, layer, head);
                    let png = frame.png(values, &title, head_scale(values, &plan.args.style))?;
                    write_staged(&plan.root.join(picture_file(View::Weights, layer, head, false)), &png)?;
                    if plan.args.svg {
                        let svg = map_picture(values, plan.input, plan.causal, &title, &plan.args.style, Picture::Svg)?;
                        write_staged(&plan.root.join(picture_file(View::Weights, layer, head, true)), &svg)?;
                    }
                }
                plan.progress.inc(1);
                Ok(painter.paint(layer, head, values)?)
            })
            .collect::<Result<_>>()?;
        for tile in tiles {
            self.grid.place(tile);
        }
        if let Some(grid) = &mut self.grid_svg {
            for head in 0..heads {
                grid.add(layer, head, maps.head(head))?;
            }
        }
        self.write_view_layer(View::Weights, layer, patterns, false)?;
        if self.norm.is_some() {
            let norms = value_norms.ok_or_else(|| Error::Input(format!("the value norms of layer {layer} were not captured")))?;
            let values = norm_layer(patterns, norms, seq);
            if let Some(array) = &mut self.norm {
                array.append(&values)?;
            }
            self.norm_largest = values.iter().copied().fold(self.norm_largest, f32::max);
            // Under --scale fixed every norm map shares one range, known after the last layer.
            let draw = self.plan.args.style.scale != ScaleArg::Fixed;
            self.write_view_layer(View::Norm, layer, &values, draw)?;
        }
        if let Some((rollout, array)) = &mut self.rollout {
            let map = rollout.push(patterns, heads, seq);
            array.append(&map)?;
            self.write_view_layer(View::Rollout, layer, &map, true)?;
        }
        if let Some(residuals) = &mut self.flow {
            residuals.push(residual_attention(patterns, heads, seq));
        }
        Ok(())
    }
}
