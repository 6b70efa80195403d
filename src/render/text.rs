//! Text for the render room: the embedded font, a glyph cache, and honest labels.
//!
//! Labels come from tokenizers and can hold anything (emoji, CJK, control
//! bytes). Characters the embedded font lacks are drawn from a system font
//! that has them (`super::fallback`); those no font has are written as
//! `U+XXXX` escapes instead of tofu boxes, so a label never pretends to show
//! what it cannot.

use std::cell::RefCell;
use std::collections::HashMap;

use ab_glyph::{point, Font, FontArc, FontRef, GlyphId, PxScale, ScaleFont};

use super::fallback;

use super::RenderError;

/// Noto Sans Regular, SIL OFL 1.1: see assets/fonts/LICENSE-OFL.txt.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/NotoSans-Regular.ttf");

/// Horizontal sub-pixel positions a glyph is rasterised at: enough for even
/// spacing at label sizes while keeping the cache small.
const SUBPIXEL_STEPS: f32 = 4.0;

const ELLIPSIS: char = '\u{2026}';

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct GlyphKey {
    /// 0 for the embedded font, else a fallback slot.
    font: u16,
    glyph: u16,
    px_bits: u32,
    subpixel: u8,
}

/// A glyph's coverage, placed relative to the pen position on the baseline.
struct GlyphBitmap {
    left: i32,
    top: i32,
    width: usize,
    height: usize,
    coverage: Vec<u8>,
}

type GlyphCache = HashMap<GlyphKey, Option<GlyphBitmap>>;

thread_local! {
    // A 72-head dump draws the same few hundred glyphs over and over; keeping
    // rasterised glyphs per thread avoids redoing that work for every picture
    // without any locking between threads that render in parallel.
    static GLYPH_CACHE: RefCell<GlyphCache> = RefCell::new(HashMap::new());
}

/// A line of text rasterised as coverage (0 = background, 255 = ink),
/// exactly `height` = line height tall.
pub(super) struct TextBitmap {
    pub width: u32,
    pub height: u32,
    pub coverage: Vec<u8>,
}

/// The font plus this thread's glyph cache, borrowed for one picture.
pub(super) struct Text {
    font: FontArc,
    cache: GlyphCache,
}

impl Text {
    pub fn new() -> Result<Text, RenderError> {
        let font = FontArc::new(FontRef::try_from_slice(FONT_BYTES)?);
        let cache = GLYPH_CACHE.with(|cache| std::mem::take(&mut *cache.borrow_mut()));
        Ok(Text { font, cache })
    }

    /// Rewrites `raw` into what the font can show, then cuts it with an
    /// ellipsis so it is at most `max_width` pixels wide at size `px`.
    pub fn label(&self, raw: &str, px: f32, max_width: f32) -> String {
        let pieces: Vec<String> = raw.chars().map(|c| self.displayable(c)).collect();
        let full: String = pieces.concat();
        if self.measure(&full, px) <= max_width {
            return full;
        }
        // Escapes are cut whole: half of "U+1F916" would name a different character.
        let mut kept = String::new();
        for piece in &pieces {
            let candidate = format!("{kept}{piece}{ELLIPSIS}");
            if self.measure(&candidate, px) > max_width {
                break;
            }
            kept.push_str(piece);
        }
        kept.push(ELLIPSIS);
        kept
    }

    /// One character as the font can draw it.
    fn displayable(&self, c: char) -> String {
        match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            c if c.is_control() || (self.font.glyph_id(c) == GlyphId(0) && fallback::font_for(c).is_none()) => {
                format!("U+{:04X}", u32::from(c))
            }
            c => c.to_string(),
        }
    }

    /// The font that draws `c` (the embedded one unless it lacks the glyph), its slot and glyph.
    fn glyph(&self, c: char) -> (u16, FontArc, GlyphId) {
        let glyph = self.font.glyph_id(c);
        if glyph == GlyphId(0) {
            if let Some(found) = fallback::font_for(c) {
                let id = found.font.glyph_id(c);
                return (found.slot, found.font, id);
            }
        }
        (0, self.font.clone(), glyph)
    }

    /// Advance width of an already displayable string, in pixels.
    pub fn measure(&self, text: &str, px: f32) -> f32 {
        let mut width = 0.0;
        let mut previous: Option<(u16, GlyphId)> = None;
        for c in text.chars() {
            let (slot, font, glyph) = self.glyph(c);
            let scaled = font.as_scaled(PxScale::from(px));
            // Kerning pairs exist only within one font.
            if let Some((_, previous)) = previous.filter(|(s, _)| *s == slot) {
                width += scaled.kern(previous, glyph);
            }
            width += scaled.h_advance(glyph);
            previous = Some((slot, glyph));
        }
        width
    }

    /// Width of the box [`Text::render`] draws `text` in: its advance, rounded
    /// up, plus one pixel for the last glyph's antialiased edge.
    pub fn box_width(&self, text: &str, px: f32) -> u32 {
        self.measure(text, px).ceil().max(1.0) as u32 + 1
    }

    /// The embedded font's ascent at line height `px`: where the baseline sits below a line's top.
    pub fn ascent(&self, px: f32) -> f32 {
        self.font.as_scaled(PxScale::from(px)).ascent()
    }

    /// The em size (CSS/SVG `font-size`) whose line height is `px`.
    pub fn em_px(&self, px: f32) -> f32 {
        let scaled = self.font.as_scaled(PxScale::from(px));
        scaled.h_scale_factor() * self.font.units_per_em().unwrap_or(1000.0)
    }

    /// Rasterises an already displayable string (see [`Text::label`]).
    pub fn render(&mut self, text: &str, px: f32) -> TextBitmap {
        let (ascent, placed, width) = {
            let ascent = self.font.as_scaled(PxScale::from(px)).ascent();
            let mut pen = 0.0_f32;
            let mut previous: Option<(u16, GlyphId)> = None;
            let mut placed = Vec::with_capacity(text.len());
            for c in text.chars() {
                let (slot, font, glyph) = self.glyph(c);
                let scaled = font.as_scaled(PxScale::from(px));
                if let Some((_, previous)) = previous.filter(|(s, _)| *s == slot) {
                    pen += scaled.kern(previous, glyph);
                }
                let whole = pen.floor();
                let subpixel = ((pen - whole) * SUBPIXEL_STEPS).round() as u8;
                pen += scaled.h_advance(glyph);
                placed.push((slot, font.clone(), glyph, whole as i32, subpixel));
                previous = Some((slot, glyph));
            }
            (ascent, placed, pen.ceil().max(1.0) as usize + 1)
        };
        let height = px.ceil() as usize;
        let baseline = ascent.round() as i32;
        let mut coverage = vec![0u8; width * height];
        for (slot, font, glyph, pen_x, subpixel) in placed {
            let key = GlyphKey {
                font: slot,
                glyph: glyph.0,
                px_bits: px.to_bits(),
                subpixel,
            };
            let Some(bitmap) = self.cache.entry(key).or_insert_with(|| rasterise(&font, glyph, px, subpixel)) else {
                continue;
            };
            for gy in 0..bitmap.height {
                let y = baseline + bitmap.top + gy as i32;
                if y < 0 || y >= height as i32 {
                    continue;
                }
                for gx in 0..bitmap.width {
                    let x = pen_x + bitmap.left + gx as i32;
                    if x < 0 || x >= width as i32 {
                        continue;
                    }
                    let cell = &mut coverage[y as usize * width + x as usize];
                    *cell = cell.saturating_add(bitmap.coverage[gy * bitmap.width + gx]);
                }
            }
        }
        TextBitmap {
            width: width as u32,
            height: height as u32,
            coverage,
        }
    }
}

impl Drop for Text {
    fn drop(&mut self) {
        let cache = std::mem::take(&mut self.cache);
        GLYPH_CACHE.with(|shared| *shared.borrow_mut() = cache);
    }
}

fn rasterise(
    font: &FontArc,
    glyph: GlyphId,
    px: f32,
    subpixel: u8,
) -> Option<GlyphBitmap> {
    let positioned = glyph.with_scale_and_position(
        PxScale::from(px),
        point(f32::from(subpixel) / SUBPIXEL_STEPS, 0.0),
    );
    let outlined = font.outline_glyph(positioned)?;
    let bounds = outlined.px_bounds();
    let width = bounds.width().max(0.0) as usize;
    let height = bounds.height().max(0.0) as usize;
    let mut coverage = vec![0u8; width * height];
    outlined.draw(|x, y, c| {
        if let Some(cell) = coverage.get_mut(y as usize * width + x as usize) {
            *cell = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    });
    Some(GlyphBitmap {
        left: bounds.min.x as i32,
        top: bounds.min.y as i32,
        width,
        height,
        coverage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_glyphs_come_from_system_fonts_or_become_escapes() -> Result<(), RenderError> {
        let mut text = Text::new()?;
        assert_eq!(text.label("a\nb", 16.0, 1000.0), "a\\nb");
        assert_eq!(text.label("\u{00E9}t\u{00E9}", 16.0, 1000.0), "\u{00E9}t\u{00E9}");
        assert_eq!(text.label("\u{7}", 16.0, 1000.0), "U+0007");
        // Minus sign, CJK, Devanagari, an emoji: none is in the embedded Noto Sans.
        for c in ['\u{2212}', '\u{4F60}', '\u{0915}', '\u{1F916}'] {
            assert_eq!(text.font.glyph_id(c), GlyphId(0), "{c:?} is in Noto Sans; pick another");
            let label = text.label(&format!("x{c}"), 16.0, 1000.0);
            match fallback::font_for(c) {
                Some(_) => {
                    assert_eq!(label, format!("x{c}"), "a system font has {c:?}: draw it");
                    let with = text.render(&label, 16.0).coverage.iter().map(|&v| u32::from(v)).sum::<u32>();
                    let without = text.render("x", 16.0).coverage.iter().map(|&v| u32::from(v)).sum::<u32>();
                    assert!(with > without, "{c:?} drawn with no ink");
                }
                None => assert_eq!(label, format!("xU+{:04X}", u32::from(c))),
            }
        }
        Ok(())
    }

    #[test]
    fn long_labels_are_cut_with_an_ellipsis() -> Result<(), RenderError> {
        let text = Text::new()?;
        let label = text.label(&"internationalisation".repeat(5), 16.0, 80.0);
        assert!(label.ends_with(ELLIPSIS));
        assert!(text.measure(&label, 16.0) <= 80.0);
        Ok(())
    }
}
