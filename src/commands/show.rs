//! `attnmap show`: one head's map as a PNG, .npy or .json.

use std::path::{Path, PathBuf};

use crate::capture::{check_head, check_layer, Capture};
use crate::cli::{FormatArg, ScaleArg, ShowArgs};
use crate::error::{Error, Result};
use crate::ui::Ui;
use crate::output::{check_target_file, npy_f32, write_file, write_stdout};

use super::{encode, heatmap, model_name, open_model, read_input};

pub fn run(args: &ShowArgs, ui: &Ui) -> Result<()> {
    let format = output_format(args)?;
    if let Some(path) = args.output.as_deref().filter(|p| p.as_os_str() != "-") {
        check_target_file(path)?;
    }
    let text = read_input(&args.input)?;
    let session = open_model(&args.model, ui)?;
    let info = session.loaded.model.info().clone();
    let (Some(layer), Some(head)) = (args.layer, args.head) else {
        return Err(Error::Usage(format!(
            "choose the map with --layer L --head H: this model has layers 0-{} and heads 0-{}",
            info.layers - 1,
            info.heads - 1
        )));
    };
    check_layer(&info, layer)?;
    check_head(&info, head)?;
    let input = encode(&session, &text)?;
    let run = Capture::run(session.loaded.model.as_ref(), &input, Some(vec![layer]), &[])?;
    let capture = run.capture;
    let name = model_name(&session.files);
    let bytes = match format {
        FormatArg::Png => heatmap(&capture, layer, head, &format!("{name} · layer {layer} · head {head}"), &args.style)?,
        FormatArg::Npy => npy_f32(&[capture.seq, capture.seq], capture.head(layer, head).unwrap_or_default()),
        FormatArg::Json => {
            let values = capture.head(layer, head).unwrap_or_default();
            let rows: Vec<&[f32]> = values.chunks(capture.seq).collect();
            let json = serde_json::json!({
                "model": session.files.id,
                "layer": layer,
                "head": head,
                "hook": format!("blocks.{layer}.attn.hook_pattern"),
                "tokens": capture.tokens(),
                "ids": capture.input.ids,
                "attention": rows,
            });
            let mut text = serde_json::to_string_pretty(&json).map_err(|e| Error::output("<json>", e))?;
            text.push('\n');
            text.into_bytes()
        }
    };
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
            let path = PathBuf::from(format!("{}_L{layer:02}_H{head:02}.{}", sanitize(&name), extension(format)));
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
        return Ok(FormatArg::Png);
    }
    match extension_of(path).as_deref() {
        Some("png") => Ok(FormatArg::Png),
        Some("npy") => Ok(FormatArg::Npy),
        Some("json") => Ok(FormatArg::Json),
        other => Err(Error::Usage(format!(
            "cannot tell the format of -o {} ({}); use a .png, .npy or .json file name, or --format",
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
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}
