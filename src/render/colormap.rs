//! Colormaps: the mapping from a normalised value in [0, 1] to an sRGB colour.

use std::fmt;
use std::str::FromStr;

use super::colormap_tables as tables;
use super::RenderError;

/// A colour scale for heatmaps. The sequential maps are perceptually uniform
/// (matplotlib's), so equal steps in attention look like equal steps in colour;
/// `RdBu` is diverging, for difference maps centred on zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Colormap {
    #[default]
    Viridis,
    Magma,
    Inferno,
    Plasma,
    Cividis,
    /// White (low) to black (high).
    Greys,
    /// Diverging: red (low, negative) through near-white (0.5) to blue (high),
    /// as in matplotlib's `RdBu`.
    RdBu,
}

impl Colormap {
    /// Every colormap, in the order of [`Colormap::NAMES`].
    pub const ALL: [Colormap; 7] = [
        Colormap::Viridis,
        Colormap::Magma,
        Colormap::Inferno,
        Colormap::Plasma,
        Colormap::Cividis,
        Colormap::Greys,
        Colormap::RdBu,
    ];

    /// The names [`Colormap::from_name`] accepts (case-insensitively).
    pub const NAMES: &'static [&'static str] = &[
        "viridis", "magma", "inferno", "plasma", "cividis", "greys", "rdbu",
    ];

    /// Looks a colormap up by name, ignoring case ("RdBu" and "rdbu" both work).
    pub fn from_name(name: &str) -> Option<Colormap> {
        Self::ALL
            .into_iter()
            .find(|colormap| colormap.name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Colormap::Viridis => "viridis",
            Colormap::Magma => "magma",
            Colormap::Inferno => "inferno",
            Colormap::Plasma => "plasma",
            Colormap::Cividis => "cividis",
            Colormap::Greys => "greys",
            Colormap::RdBu => "rdbu",
        }
    }

    /// Whether the map has a meaningful centre (use it with [`super::Scale::symmetric`]).
    pub fn is_diverging(&self) -> bool {
        matches!(self, Colormap::RdBu)
    }

    /// The colour for `t` in [0, 1]; values outside are clamped.
    ///
    /// Picks table entry `floor(t * 256)` like matplotlib does, so a value gives
    /// the same colour here as in a matplotlib plot of the same map.
    pub fn rgb(&self, t: f32) -> [u8; 3] {
        let table = self.table();
        // `as usize` saturates (NaN becomes 0), so no index can leave the table.
        let index = (t.clamp(0.0, 1.0) * 256.0) as usize;
        table[index.min(table.len() - 1)]
    }

    /// The colour of masked cells: a neutral the map itself never produces, so
    /// "not attendable" cannot be read as "low attention".
    pub fn mask_rgb(&self) -> [u8; 3] {
        match self {
            // Every grey is a value of Greys, so its mask is a pale sand instead.
            Colormap::Greys => [236, 224, 200],
            _ => [214, 214, 214],
        }
    }

    fn table(&self) -> &'static [[u8; 3]; 256] {
        match self {
            Colormap::Viridis => &tables::VIRIDIS,
            Colormap::Magma => &tables::MAGMA,
            Colormap::Inferno => &tables::INFERNO,
            Colormap::Plasma => &tables::PLASMA,
            Colormap::Cividis => &tables::CIVIDIS,
            Colormap::Greys => &tables::GREYS,
            Colormap::RdBu => &tables::RDBU,
        }
    }
}

impl fmt::Display for Colormap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Colormap {
    type Err = RenderError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Colormap::from_name(name).ok_or_else(|| RenderError::UnknownColormap {
            name: name.to_string(),
        })
    }
}

/// A colour as six hex digits, `rrggbb` (what SVG fills and the HTML page's colour table use).
pub(crate) fn rgb_hex([r, g, b]: [u8; 3]) -> String {
    format!("{r:02x}{g:02x}{b:02x}")
}
