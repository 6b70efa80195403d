//! The system's fonts, for glyphs the embedded Noto Sans lacks (CJK, Devanagari,
//! symbols): found with fontdb on first need, so pictures of ASCII and Latin
//! text never touch the system and stay byte-identical everywhere.
//!
//! Which font stands in for a character is decided in a fixed order (regular
//! upright faces first, then by family and PostScript name), so the same
//! installed fonts always give the same picture.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ab_glyph::{Font, FontArc, FontVec, GlyphId};

/// A stand-in font, numbered in the order it was first needed (a glyph cache key).
#[derive(Clone)]
pub(super) struct Fallback {
    pub slot: u16,
    pub font: FontArc,
}

struct Store {
    db: fontdb::Database,
    /// Face ids, best first.
    order: Vec<fontdb::ID>,
    loaded: HashMap<fontdb::ID, Option<FontArc>>,
    /// Slot numbers of faces already used, and the fonts in slot order.
    slots: HashMap<fontdb::ID, u16>,
    fonts: Vec<FontArc>,
    by_char: HashMap<char, Option<u16>>,
}

static STORE: OnceLock<Mutex<Store>> = OnceLock::new();

fn store() -> &'static Mutex<Store> {
    STORE.get_or_init(|| {
        let mut db = fontdb::Database::new();
        db.load_system_fonts();
        let mut faces: Vec<&fontdb::FaceInfo> = db.faces().collect();
        faces.sort_by_key(|face| {
            let upright = face.style == fontdb::Style::Normal;
            let weight_distance = (i32::from(face.weight.0) - 400).abs();
            let family = face.families.first().map(|(name, _)| name.clone()).unwrap_or_default();
            (!upright, weight_distance, family, face.post_script_name.clone(), face.index)
        });
        let order = faces.iter().map(|face| face.id).collect();
        Mutex::new(Store { db, order, loaded: HashMap::new(), slots: HashMap::new(), fonts: Vec::new(), by_char: HashMap::new() })
    })
}

/// A system font that has a glyph for `c`, if any.
pub(super) fn font_for(c: char) -> Option<Fallback> {
    let mut store = store().lock().ok()?;
    if let Some(known) = store.by_char.get(&c) {
        return known.map(|slot| Fallback { slot, font: store.fonts[usize::from(slot) - 1].clone() });
    }
    let order = store.order.clone();
    let mut found = None;
    for id in order {
        let font = match store.loaded.get(&id) {
            Some(font) => font.clone(),
            None => {
                let font = store
                    .db
                    .with_face_data(id, |data, index| FontVec::try_from_vec_and_index(data.to_vec(), index).ok())
                    .flatten()
                    .map(FontArc::new);
                store.loaded.insert(id, font.clone());
                font
            }
        };
        if let Some(font) = font.filter(|font| font.glyph_id(c) != GlyphId(0)) {
            let slot = match store.slots.get(&id) {
                Some(&slot) => slot,
                None => {
                    store.fonts.push(font);
                    // Slot 0 is the embedded font.
                    let slot = u16::try_from(store.fonts.len()).unwrap_or(u16::MAX);
                    store.slots.insert(id, slot);
                    slot
                }
            };
            found = Some(slot);
            break;
        }
    }
    store.by_char.insert(c, found);
    found.map(|slot| Fallback { slot, font: store.fonts[usize::from(slot) - 1].clone() })
}
