//! One map as terminal text, for a look over SSH: Unicode half blocks (two
//! rows of cells per line), max-pooled to fit the terminal, tokens along the
//! axes where they fit, and a legend line that says the view, the pooling and
//! the scale.
//!
//! Colour is 24-bit, 256-colour, or none at all: then cells are a character
//! ramp (` .:-=+*#%@`, masked cells `/`) and the output holds no escape byte.

use std::fmt::Write;

use super::colormap::Colormap;
use super::scale::{Mask, Scale};

/// How colours reach the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermColour {
    /// `COLORTERM=truecolor|24bit`: exact colormap colours.
    TrueColour,
    /// The xterm 256-colour palette's 6x6x6 cube and grey ramp.
    Ansi256,
    /// No escapes: a character ramp.
    None,
}

impl TermColour {
    /// What `COLORTERM` says the terminal can show, when colour is allowed at all.
    pub fn detect(colour_allowed: bool, colorterm: Option<&str>) -> TermColour {
        match (colour_allowed, colorterm) {
            (false, _) => TermColour::None,
            (true, Some(value)) if value.eq_ignore_ascii_case("truecolor") || value.eq_ignore_ascii_case("24bit") => TermColour::TrueColour,
            (true, _) => TermColour::Ansi256,
        }
    }
}

/// What to draw and into how much room.
#[derive(Debug, Clone, Copy)]
pub struct TermOptions<'a> {
    pub title: &'a str,
    /// What the numbers are, for the legend ("attention weights").
    pub view: &'a str,
    /// One per token (rows and columns of a square map), or empty for indices.
    pub labels: &'a [String],
    pub colormap: Colormap,
    pub scale: Scale,
    pub mask: Mask,
    /// The terminal's size in character cells.
    pub columns: usize,
    pub lines: usize,
    pub colour: TermColour,
}

const RAMP: &[u8] = b" .:-=+*#%@";
const MASKED_CHAR: char = '/';
const ROW_LABEL_MAX: usize = 12;

/// `values` is row-major `[seq, seq]`. Returns lines ending in '\n', none wider than `columns`.
pub fn heatmap_term(values: &[f32], seq: usize, opts: &TermOptions) -> String {
    let labels: Vec<String> = (0..seq).map(|i| opts.labels.get(i).map(|l| clean(l)).unwrap_or_else(|| i.to_string())).collect();
    let columns = opts.columns.max(20);
    // Room for the map: a title line, a legend line, key labels under it.
    let label_width = labels.iter().map(|l| text_width(l)).max().unwrap_or(1).min(ROW_LABEL_MAX);
    let gutter = label_width + 1;
    let map_columns = columns.saturating_sub(gutter + 1).max(4);
    // Each character column shows `col_pool` keys; each line shows two pixel rows.
    let col_pool = seq.div_ceil(map_columns).max(1);
    // The legend's length depends on the pooling, which depends on the room the
    // legend leaves: size it for the worst case (pooled both ways), then pool.
    let reserved = 2 + legend(opts, seq, 2, col_pool.max(2), columns).len();
    let map_lines = opts.lines.saturating_sub(reserved).max(2);
    let width = seq.div_ceil(col_pool);
    // A short map gets wider cells (up to four characters a key), so key labels have room.
    let stretch = if col_pool == 1 { (map_columns / seq.max(1)).clamp(1, 4) } else { 1 };
    let row_pool = seq.div_ceil(map_lines * 2).max(1);
    let pixel_rows = seq.div_ceil(row_pool);
    let legend = legend(opts, seq, row_pool, col_pool, columns);

    // Max over each block (as the PNG pools): a one-token spike must stay visible.
    let pooled: Vec<Option<f32>> = (0..pixel_rows)
        .flat_map(|py| (0..width).map(move |px| (py, px)))
        .map(|(py, px)| {
            let mut strongest: Option<f32> = None;
            for row in py * row_pool..((py + 1) * row_pool).min(seq) {
                let visible = opts.mask.visible_keys(row, seq);
                for col in px * col_pool..((px + 1) * col_pool).min(visible) {
                    let value = values[row * seq + col];
                    strongest = Some(strongest.map_or(value, |s: f32| s.max(value)));
                }
            }
            strongest
        })
        .collect();
    // `None` past the map's end, `Some(None)` for a masked block.
    let at = |py: usize, px: usize| if py < pixel_rows { Some(pooled[py * width + px]) } else { None };

    let mut out = String::new();
    let _ = writeln!(out, "{}", fit(&clean(opts.title), columns));
    let reset = if opts.colour == TermColour::None { "" } else { "\x1b[0m" };
    for line in 0..pixel_rows.div_ceil(2) {
        let (top_row, bottom_row) = (line * 2, line * 2 + 1);
        // A line shows two pixel rows: it is labelled with the first query it shows.
        let label = fit(&labels[top_row * row_pool], label_width);
        let _ = write!(out, "{}{label} ", " ".repeat(label_width - text_width(&label)));
        for px in 0..width {
            out.push_str(&cell(at(top_row, px), at(bottom_row, px), opts).repeat(stretch));
        }
        out.push_str(reset);
        out.push('\n');
    }

    // Key labels under the map, left to right, where they fit without touching.
    let mut axis = String::new();
    let mut next_free = 0;
    for px in 0..width {
        let column = px * stretch;
        if column < next_free {
            continue;
        }
        let label = &labels[px * col_pool];
        let room = width * stretch - column;
        let text = fit(label, room.min(ROW_LABEL_MAX));
        if text.is_empty() {
            continue;
        }
        while text_width(&axis) < column {
            axis.push(' ');
        }
        axis.push_str(&text);
        next_free = column + text_width(&text) + 1;
    }
    let _ = writeln!(out, "{:gutter$}{}", "", axis);

    for line in &legend {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The legend: what the numbers are, how cells were pooled, the scale; wrapped
/// between its parts rather than losing the scale off the edge.
fn legend(opts: &TermOptions, seq: usize, row_pool: usize, col_pool: usize, columns: usize) -> Vec<String> {
    let pooling = if row_pool == 1 && col_pool == 1 {
        "1 token per cell".to_string()
    } else {
        format!("max-pooled: {row_pool} queries x {col_pool} keys per cell")
    };
    let scale = format!("scale {:.3}..{:.3}", opts.scale.min(), opts.scale.max());
    let key = match opts.colour {
        TermColour::None => format!("ramp \"{}\" low..high, {MASKED_CHAR} masked", String::from_utf8_lossy(RAMP)),
        _ => String::new(),
    };
    // The legend wraps between its parts rather than losing the scale off the edge.
    let parts = [format!("{} · {seq} tokens", opts.view), pooling, scale, key, "rows query, columns key".to_string()];
    let mut lines = Vec::new();
    let mut line = String::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !line.is_empty() && text_width(&line) + 3 + text_width(part) > columns {
            lines.push(fit(&line, columns));
            line.clear();
        }
        if !line.is_empty() {
            line.push_str(" · ");
        }
        line.push_str(part);
    }
    lines.push(fit(&line, columns));
    lines
}

/// One character showing two pixels: `top` and `bottom` are `None` past the
/// map's end, `Some(None)` when masked.
fn cell(top: Option<Option<f32>>, bottom: Option<Option<f32>>, opts: &TermOptions) -> String {
    let colour_of = |pixel: Option<f32>| match pixel {
        Some(value) => opts.colormap.rgb(opts.scale.normalise(value)),
        None => opts.colormap.mask_rgb(),
    };
    match opts.colour {
        TermColour::None => {
            // One character per two pixels: the stronger one decides.
            let pick = match (top, bottom) {
                (Some(Some(a)), Some(Some(b))) => Some(Some(a.max(b))),
                (Some(Some(a)), _) => Some(Some(a)),
                (_, Some(Some(b))) => Some(Some(b)),
                (Some(None), _) | (_, Some(None)) => Some(None),
                _ => None,
            };
            match pick {
                Some(Some(value)) => {
                    let t = opts.scale.normalise(value);
                    let index = ((t * (RAMP.len() - 1) as f32).round() as usize).min(RAMP.len() - 1);
                    (RAMP[index] as char).to_string()
                }
                Some(None) => MASKED_CHAR.to_string(),
                None => " ".to_string(),
            }
        }
        colour => {
            let Some(top) = top else { return " ".to_string() };
            let fg = colour_of(top);
            match bottom {
                Some(bottom) => format!("{}{}\u{2580}", escape(colour, fg, 38), escape(colour, colour_of(bottom), 48)),
                // The last line of an odd map: the lower half is the terminal's own background.
                None => format!("\x1b[49m{}\u{2580}", escape(colour, fg, 38)),
            }
        }
    }
}

/// SGR for a foreground (38) or background (48) colour.
fn escape(colour: TermColour, [r, g, b]: [u8; 3], layer: u8) -> String {
    match colour {
        TermColour::TrueColour => format!("\x1b[{layer};2;{r};{g};{b}m"),
        _ => format!("\x1b[{layer};5;{}m", ansi256(r, g, b)),
    }
}

/// Nearest xterm-256 colour: the 6x6x6 cube or the 24-step grey ramp.
fn ansi256(r: u8, g: u8, b: u8) -> u8 {
    const LEVELS: [i32; 6] = [0, 95, 135, 175, 215, 255];
    let nearest = |c: u8| (0..6).min_by_key(|&i| (LEVELS[i] - i32::from(c)).abs()).unwrap_or(0);
    let (ri, gi, bi) = (nearest(r), nearest(g), nearest(b));
    let cube = (LEVELS[ri], LEVELS[gi], LEVELS[bi]);
    let distance = |(x, y, z): (i32, i32, i32)| (x - i32::from(r)).pow(2) + (y - i32::from(g)).pow(2) + (z - i32::from(b)).pow(2);
    let mean = (i32::from(r) + i32::from(g) + i32::from(b)) / 3;
    let grey_index = ((mean - 8).max(0) / 10).min(23);
    let grey = 8 + grey_index * 10;
    if distance((grey, grey, grey)) < distance(cube) {
        (232 + grey_index) as u8
    } else {
        (16 + 36 * ri + 6 * gi + bi) as u8
    }
}

/// A token as one line of plain text: control characters (which would move
/// the cursor or start an escape) become `U+XXXX`.
fn clean(label: &str) -> String {
    label.chars().map(|c| if c.is_control() { format!("U+{:04X}", u32::from(c)) } else { c.to_string() }).collect()
}

/// Terminal columns `text` takes (CJK characters take two).
fn text_width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

/// At most `width` terminal columns, cut with an ellipsis.
fn fit(text: &str, width: usize) -> String {
    if text_width(text) <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut = String::new();
    for c in text.chars() {
        if text_width(&cut) + unicode_width::UnicodeWidthChar::width(c).unwrap_or(0) + 1 > width {
            break;
        }
        cut.push(c);
    }
    cut.push('\u{2026}');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi256_hits_cube_corners_and_greys() {
        assert_eq!(ansi256(0, 0, 0), 16);
        assert_eq!(ansi256(255, 255, 255), 231);
        assert_eq!(ansi256(255, 0, 0), 196);
        assert_eq!(ansi256(128, 128, 128), 244);
    }
}
