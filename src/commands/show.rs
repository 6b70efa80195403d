//! `attnmap show`: one map as a PNG, SVG, HTML page, .npy, .json or terminal text: a
//! head's weights or norms, or a layer's rollout or flow, over tokens or words.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::capture::{check_head, check_layer, Capture};
use crate::cli::{FormatArg, ScaleArg, ShowArgs};
use crate::error::{Error, Result};
use crate::ui::Ui;
use crate::output::{check_target_file, npy_f32, write_file, write_stdout};

use crate::analysis::views::{check_flow_size, norm_layer, view_map, View};
use crate::render::{self, terminal::{TermColour, TermOptions}};

use super::views::{picture as view_picture, scale_of, view_of, Axis};
use super::{encode, head_scale, head_title, head_values, model_name, open_model, picture, read_input, Picture};

pub fn run(args: &ShowArgs, ui: &Ui) -> Result<()> {
    // The path first: `-o existing-folder` is "a folder", not "no extension".
    if let Some(path) = args.output.as_deref().filter(|p| p.as_os_str() != "-") {
        check_target_file(path)?;
    }
    let format = output_format(args)?;
    let view = view_of(args.view);
    // Cheap checks before the model loads: a head where none applies, or none where one must.
    if let (false, Some(head)) = (view.per_head(), args.head) {
        return Err(Error::Usage(format!(
            "--view {} mixes every head of layers 0..L (their mean, with the residual), so --head {head} does not apply: drop --head",
            view.name()
        )));
    }
    let text = read_input(&args.input)?;
    let session = open_model(&args.model, ui)?;
    let info = session.loaded.model.info().clone();
    let (Some(layer), Some(head)) = (args.layer, args.head.or((!view.per_head()).then_some(0))) else {
        return Err(Error::Usage(format!(
            "choose the map with --layer L --head H: this model has layers 0-{} and heads 0-{}",
            info.layers - 1,
            info.heads - 1
        )));
    };
    check_layer(&info, layer)?;
    check_head(&info, head)?;
    let head = view.per_head().then_some(head);
    let input = encode(&session, &text)?;
    if view == View::Flow {
        check_flow_size(layer + 1, input.len())?;
    }
    let model = session.loaded.model.as_ref();
    let run = match head {
        // Only this head's map is kept: long inputs then need memory for one map, not every head's
        // (norm with --scale fixed spans the whole layer, so it keeps every head).
        Some(head) if !(view == View::Norm && args.style.scale == ScaleArg::Fixed) => {
            Capture::run_heads(model, &input, Some(vec![layer]), Some(vec![head]), view.hooks())?
        }
        Some(_) => Capture::run(model, &input, Some(vec![layer]), view.hooks())?,
        None => Capture::run(model, &input, Some((0..=layer).collect()), view.hooks())?,
    };
    let capture = run.capture;
    let name = model_name(&session.files);
    let bytes = if view == View::Weights && !args.words {
        let head = head.unwrap_or(0);
        let title = head_title(&name, layer, head);
        match format {
            FormatArg::Png => picture(&capture, layer, head, &title, &args.style, Picture::Png)?,
            FormatArg::Svg => picture(&capture, layer, head, &title, &args.style, Picture::Svg)?,
            FormatArg::Npy => npy_f32(&[capture.seq, capture.seq], head_values(&capture, layer, head)?),
            FormatArg::Json => render::json::head_json(
                head_values(&capture, layer, head)?,
                capture.seq,
                &render::json::HeadJson { model: &session.files.id, layer, head, tokens: capture.tokens(), ids: &capture.input.ids },
            ),
            FormatArg::Html => super::view::head_page(&capture, layer, head, &title, &args.style)?,
            FormatArg::Term => terminal(&capture, layer, head, &title, &args.style, ui)?,
        }
    } else {
        let axis = Axis::of(&capture, args.words);
        let values = axis.merge(&view_map(&capture, view, layer, head)?, capture.seq);
        let side = axis.len();
        match format {
            FormatArg::Png => {
                let title = match head {
                    Some(head) if view == View::Weights => head_title(&name, layer, head),
                    Some(head) => format!("{name} · layer {layer} · head {head} · {}", view.name()),
                    None => format!("{name} · {} to layer {layer}", view.name()),
                };
                // --scale fixed for norm: 0 to the largest value of the layer's heads, so heads compare.
                let layer_max = match (view, capture.layer(layer), capture.value_norms(layer)) {
                    (View::Norm, Some(patterns), Some(norms)) => axis.merge(&norm_layer(patterns, norms, capture.seq), capture.seq).into_iter().fold(0f32, f32::max),
                    _ => 1.0,
                };
                let scale = scale_of(view, &values, &args.style, layer_max);
                view_picture(&values, &axis, capture.causal, view, &title, capture.input.dropped, scale, &args.style)?
            }
            FormatArg::Npy => npy_f32(&[side, side], &values),
            FormatArg::Json => {
                let hook = match view {
                    View::Weights => format!("blocks.{layer}.attn.hook_pattern"),
                    View::Norm => format!("blocks.{layer}.attn.hook_pattern * blocks.{layer}.attn.hook_value_norm"),
                    View::Rollout | View::Flow => format!("blocks.{{0..{layer}}}.attn.hook_pattern"),
                };
                let words = axis.describe();
                render::json::view_json(
                    &values,
                    side,
                    &render::json::ViewJson {
                        model: &session.files.id,
                        layer,
                        head,
                        view: view.name(),
                        formula: view.formula(),
                        hook: &hook,
                        tokens: capture.tokens(),
                        ids: &capture.input.ids,
                        labels: &axis.labels,
                        words: words.as_ref(),
                    },
                )
            }
            other => {
                return Err(Error::Usage(format!(
                    "--view {} and --words write .png, .npy or .json; {} output shows the weights of one head only",
                    view.name(),
                    extension(other)
                )))
            }
        }
    };
    if format == FormatArg::Term && args.output.as_deref().is_none_or(|p| p.as_os_str() == "-") {
        return write_stdout(&bytes);
    }
    match &args.output {
        Some(path) if path.as_os_str() == "-" => write_stdout(&bytes),
        Some(path) => {
            write_file(path, &bytes)?;
            if !ui.quiet {
                eprintln!("attnmap: wrote {}", path.display());
            }
            Ok(())
        }
        None => {
            let head_part = head.map(|h| format!("_H{h:02}")).unwrap_or_default();
            let view_part = if view == View::Weights { String::new() } else { format!("_{}", view.name()) };
            let words_part = if args.words { "_words" } else { "" };
            let path = PathBuf::from(format!("{}_L{layer:02}{head_part}{view_part}{words_part}.{}", sanitize(&name), extension(format)));
            write_file(&path, &bytes)?;
            // Always said, even with --quiet: the user did not choose this name.
            eprintln!("attnmap: wrote {}", path.display());
            Ok(())
        }
    }
}

fn output_format(args: &ShowArgs) -> Result<FormatArg> {
    let format = picture_or_numbers(args)?;
    // Colours only exist in a picture: .npy and .json carry the weights themselves.
    if format != FormatArg::Png {
        let style = [(args.style.colormap != "viridis", "--colormap"), (args.style.scale != ScaleArg::Auto, "--scale")];
        if let Some((_, flag)) = style.iter().find(|(given, _)| *given) {
            return Err(Error::Usage(format!("{flag} applies to PNG pictures; {} output carries the weights themselves, so leave {flag} out", extension(format))));
        }
    }
    Ok(format)
}

fn picture_or_numbers(args: &ShowArgs) -> Result<FormatArg> {
    if let Some(format) = args.format {
        return Ok(format);
    }
    let Some(path) = &args.output else { return Ok(FormatArg::Png) };
    if path.as_os_str() == "-" {
        // A terminal shown PNG bytes is garbage and may be left in a strange state.
        return Ok(if std::io::stdout().is_terminal() { FormatArg::Term } else { FormatArg::Png });
    }
    match extension_of(path).as_deref() {
        Some("png") => Ok(FormatArg::Png),
        Some("svg") => Ok(FormatArg::Svg),
        Some("html" | "htm") => Ok(FormatArg::Html),
        Some("npy") => Ok(FormatArg::Npy),
        Some("json") => Ok(FormatArg::Json),
        other => Err(Error::Usage(format!(
            "cannot tell the format of -o {} ({}); use a .png, .svg, .html, .npy or .json file name, or --format",
            path.display(),
            other.map(|e| format!("unknown extension .{e}")).unwrap_or_else(|| "no extension".into())
        ))),
    }
}

fn extension_of(path: &Path) -> Option<String> {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase())
}

fn extension(format: FormatArg) -> &'static str {
    match format {
        FormatArg::Png => "png",
        FormatArg::Npy => "npy",
        FormatArg::Json => "json",
        FormatArg::Svg => "svg",
        FormatArg::Html => "html",
        FormatArg::Term => "txt",
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

/// The map as terminal text, sized to the terminal (COLUMNS/LINES override it, as in ls).
fn terminal(capture: &Capture, layer: usize, head: usize, title: &str, style: &crate::cli::StyleArgs, ui: &Ui) -> Result<Vec<u8>> {
    let values = head_values(capture, layer, head)?;
    let size = console::Term::stdout().size_checked();
    let from_env = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0);
    let columns = from_env("COLUMNS").or(size.map(|(_, columns)| usize::from(columns))).unwrap_or(80);
    let lines = from_env("LINES").or(size.map(|(lines, _)| usize::from(lines))).unwrap_or(24);
    let colour = TermColour::detect(ui.color_stdout(), std::env::var("COLORTERM").ok().as_deref());
    let options = TermOptions {
        title,
        view: "attention weights",
        labels: &capture.input.labels,
        colormap: super::colormap(style),
        scale: head_scale(values, style),
        mask: super::mask(capture),
        columns,
        lines,
        colour,
    };
    Ok(render::terminal::heatmap_term(values, capture.seq, &options).into_bytes())
}
