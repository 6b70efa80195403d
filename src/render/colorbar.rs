//! The colour bar: the key that says which colour means which number.

use super::canvas::Orientation;
use super::surface::Surface;
use super::colormap::Colormap;
use super::style::{CAPTION_PX, INK, RULE, TICK_GAP, TICK_LEN, TICK_PX};
use super::text::Text;

pub(super) const BAR_WIDTH: u32 = 16;
const LABEL_GAP: u32 = 8;
/// Shortest bar drawn, so five tick labels always have room between them.
pub(super) const MIN_HEIGHT: u32 = 160;

pub(super) struct Colorbar {
    pub colormap: Colormap,
    /// `(t, label)`: position in [0, 1] from the bottom, and its text.
    pub ticks: Vec<(f32, String)>,
    pub label: String,
}

impl Colorbar {
    /// Horizontal room from the bar's left edge to the end of its caption.
    pub fn width(&self, text: &Text) -> u32 {
        let widest_tick = self
            .ticks
            .iter()
            .map(|(_, label)| text.measure(label, TICK_PX).ceil() as u32)
            .max()
            .unwrap_or(0);
        BAR_WIDTH + TICK_LEN + TICK_GAP + widest_tick + LABEL_GAP + CAPTION_PX.ceil() as u32
    }

    /// How far tick labels reach above the bar's top and below its bottom.
    pub fn overhang() -> u32 {
        (TICK_PX / 2.0).ceil() as u32
    }

    pub fn draw(&self, surface: &mut dyn Surface, text: &mut Text, x: u32, y: u32, height: u32) {
        self.draw_bar(surface, x, y, height);
        self.draw_ticks(surface, text, x, y, height);
    }

    /// The gradient and its frame: all that does not depend on the scale.
    pub fn draw_bar(&self, surface: &mut dyn Surface, x: u32, y: u32, height: u32) {
        let height = height.max(1);
        surface.gradient(x, y, BAR_WIDTH, height, self.colormap);
        surface.frame_around(
            i64::from(x),
            i64::from(y),
            i64::from(BAR_WIDTH),
            i64::from(height),
            RULE,
        );
    }

    /// The ticks, their labels, and the caption beyond the widest of them.
    pub fn draw_ticks(&self, surface: &mut dyn Surface, text: &mut Text, x: u32, y: u32, height: u32) {
        let height = height.max(1);
        let mut widest_tick = 0;
        let label_x = x + BAR_WIDTH + TICK_LEN + TICK_GAP;
        let line_height = TICK_PX.ceil() as i64;
        for (t, label) in &self.ticks {
            let tick_y = y + ((1.0 - t) * (height - 1) as f32).round() as u32;
            surface.fill(
                i64::from(x + BAR_WIDTH),
                i64::from(tick_y),
                i64::from(TICK_LEN),
                1,
                RULE,
            );
            widest_tick = widest_tick.max(text.measure(label, TICK_PX).ceil() as u32);
            let top = i64::from(tick_y) - line_height / 2;
            surface.text(text, label, TICK_PX, i64::from(label_x), top, INK, Orientation::Horizontal);
        }

        let caption = text.label(&self.label, CAPTION_PX, height as f32);
        let caption_length = text.box_width(&caption, CAPTION_PX);
        let caption_x = label_x + widest_tick + LABEL_GAP;
        // Turned upright, the caption's length runs down the bar: centre it there.
        let caption_y = y + height.saturating_sub(caption_length) / 2;
        surface.text(text, &caption, CAPTION_PX, i64::from(caption_x), i64::from(caption_y), INK, Orientation::Up);
    }
}
