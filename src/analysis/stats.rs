//! Per-head statistics in the spirit of Clark et al. 2019 ("What does BERT look
//! at?"): how spread out each head's rows are, and how much weight goes to the
//! first position, special tokens, punctuation, itself and its neighbours.
//!
//! Every column is a mean over a text's query rows (those the column is defined
//! for), then a mean over texts with each text weighted equally, so a long text
//! does not outvote a short one. Sums run in f64 over the f32 maps.
//! `scripts/heads_reference.py` computes the same numbers with numpy.

use serde::Serialize;
use unicode_categories::UnicodeCategories;

use crate::analysis::words::Word;
use crate::tokenize::Encoded;

/// The statistics, in the order tables and files list them.
pub const COLUMNS: [&str; 10] = ["entropy", "entropy_norm", "first", "special", "punct", "self", "prev", "next", "distance", "max"];

/// The positions a map is drawn over (tokens, or words with `--words`) and what
/// the statistics need to know about them.
#[derive(Debug, Clone, PartialEq)]
pub struct Positions {
    /// One of the tokenizer's special tokens (or a special token's word).
    pub special: Vec<bool>,
    /// Its text (without a word-start marker) is all Unicode punctuation.
    pub punct: Vec<bool>,
    /// Equal identities mean the same token (id) or the same word (text): what
    /// `duplicate-token` and `induction` compare.
    pub identity: Vec<u64>,
    /// How each position reads on an axis.
    pub labels: Vec<String>,
}

impl Positions {
    pub fn len(&self) -> usize {
        self.special.len()
    }

    pub fn is_empty(&self) -> bool {
        self.special.is_empty()
    }

    /// Token-level positions of an input.
    pub fn tokens(input: &Encoded) -> Self {
        Positions {
            special: input.special.clone(),
            punct: input.tokens.iter().zip(&input.labels).map(|(token, label)| is_punct_token(token, label)).collect(),
            identity: input.ids.iter().map(|&id| id as u64).collect(),
            labels: input.labels.clone(),
        }
    }

    /// Word-level positions (see `analysis::words`): a word is punctuation when its text is.
    pub fn words(words: &[Word]) -> Self {
        let mut seen: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        let identity = words
            .iter()
            .map(|w| {
                let next = seen.len() as u64;
                *seen.entry(w.label.as_str()).or_insert(next)
            })
            .collect();
        Positions {
            special: words.iter().map(|w| w.special).collect(),
            punct: words.iter().map(|w| !w.special && is_punct_text(&w.label)).collect(),
            identity,
            labels: words.iter().map(|w| w.label.clone()).collect(),
        }
    }
}

/// Whether a token's text, without its word-start or continuation marker, is all
/// Unicode punctuation (general category P*, as Python's `unicodedata` says).
pub fn is_punct_token(token: &str, label: &str) -> bool {
    // Labels already decode byte-level BPE and show a word-initial space as '·'.
    let text = if label.starts_with('\u{b7}') && token != "\u{b7}" { &label['\u{b7}'.len_utf8()..] } else { label };
    let text = text.strip_prefix("##").filter(|rest| !rest.is_empty()).unwrap_or(text);
    is_punct_text(text)
}

fn is_punct_text(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_punctuation())
}

/// One text's value of each column for one head; `None` where no row qualifies
/// (`prev` of a one-token text, `next` of a causal model).
pub type Columns = [Option<f64>; COLUMNS.len()];

/// The statistics of one `[n, n]` map (row-major, query x key).
pub fn head_columns(map: &[f32], positions: &Positions, causal: bool) -> Columns {
    let n = positions.len();
    let mut sums = [0f64; COLUMNS.len()];
    let mut rows = [0usize; COLUMNS.len()];
    let mut add = |column: usize, value: f64| {
        sums[column] += value;
        rows[column] += 1;
    };
    for query in 0..n {
        let row = &map[query * n..(query + 1) * n];
        let allowed = if causal { query + 1 } else { n };
        let (mut entropy, mut special, mut punct, mut distance, mut max) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for (key, &weight) in row[..allowed].iter().enumerate() {
            let weight = weight as f64;
            if weight > 0.0 {
                entropy -= weight * weight.ln();
            }
            if positions.special[key] {
                special += weight;
            }
            if positions.punct[key] {
                punct += weight;
            }
            distance += weight * query.abs_diff(key) as f64;
            max = max.max(weight);
        }
        add(0, entropy);
        if allowed > 1 {
            add(1, entropy / (allowed as f64).ln());
        }
        add(2, row[0] as f64);
        add(3, special);
        add(4, punct);
        add(5, row[query] as f64);
        if query >= 1 {
            add(6, row[query - 1] as f64);
        }
        if !causal && query + 1 < n {
            add(7, row[query + 1] as f64);
        }
        add(8, distance);
        add(9, max);
    }
    std::array::from_fn(|c| (rows[c] > 0).then(|| sums[c] / rows[c] as f64))
}

/// Per-head columns accumulated over texts, one text's maps at a time.
#[derive(Debug, Clone)]
pub struct Accumulator {
    pub layers: usize,
    pub heads: usize,
    sums: Vec<[f64; COLUMNS.len()]>,
    texts: Vec<[usize; COLUMNS.len()]>,
}

impl Accumulator {
    pub fn new(layers: usize, heads: usize) -> Self {
        Accumulator { layers, heads, sums: vec![[0.0; COLUMNS.len()]; layers * heads], texts: vec![[0; COLUMNS.len()]; layers * heads] }
    }

    /// Add one text: `maps` is `[layers, heads, n, n]`.
    pub fn add(&mut self, maps: &[f32], positions: &Positions, causal: bool) {
        self.add_from(0, maps, positions, causal);
    }

    /// Add one layer of one text: `maps` is `[heads, n, n]` (a text read a layer at a time).
    pub fn add_layer(&mut self, layer: usize, maps: &[f32], positions: &Positions, causal: bool) {
        self.add_from(layer * self.heads, maps, positions, causal);
    }

    /// Add maps of consecutive heads, the first being head `first` of all layers' heads.
    fn add_from(&mut self, first: usize, maps: &[f32], positions: &Positions, causal: bool) {
        let per_head = positions.len() * positions.len();
        for (index, map) in maps.chunks_exact(per_head.max(1)).enumerate().map(|(i, m)| (first + i, m)).take_while(|(i, _)| *i < self.layers * self.heads) {
            for (column, value) in head_columns(map, positions, causal).into_iter().enumerate() {
                if let Some(value) = value {
                    self.sums[index][column] += value;
                    self.texts[index][column] += 1;
                }
            }
        }
    }

    /// Each head's columns, the mean over the texts where they are defined, and its label.
    pub fn finish(&self) -> Vec<HeadStats> {
        (0..self.layers * self.heads)
            .map(|index| {
                let values: Columns = std::array::from_fn(|c| (self.texts[index][c] > 0).then(|| self.sums[index][c] / self.texts[index][c] as f64));
                HeadStats { layer: index / self.heads, head: index % self.heads, pattern: pattern(&values), values }
            })
            .collect()
    }
}

/// One head's statistics over a probe set.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadStats {
    pub layer: usize,
    pub head: usize,
    pub values: Columns,
    pub pattern: &'static str,
}

impl HeadStats {
    /// A column by name (`None` for a name that is not a column, or a column with no value).
    pub fn get(&self, column: &str) -> Option<f64> {
        COLUMNS.iter().position(|c| *c == column).and_then(|c| self.values[c])
    }
}

impl Serialize for HeadStats {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(COLUMNS.len() + 3))?;
        map.serialize_entry("layer", &self.layer)?;
        map.serialize_entry("head", &self.head)?;
        for (name, value) in COLUMNS.iter().zip(&self.values) {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("pattern", self.pattern)?;
        map.end()
    }
}

/// The labels `pattern` can give, in the order its rules are tried.
pub const PATTERNS: [&str; 8] = ["first-token", "special", "previous-token", "next-token", "self", "punctuation", "broad", "mixed"];

/// A head's label: the first rule that holds.
pub fn pattern(values: &Columns) -> &'static str {
    let at_least = |column: &str, bar: f64| COLUMNS.iter().position(|c| *c == column).and_then(|c| values[c]).is_some_and(|v| v >= bar);
    let rules = [("first", 0.5, "first-token"), ("special", 0.5, "special"), ("prev", 0.5, "previous-token"), ("next", 0.5, "next-token"), ("self", 0.5, "self"), ("punct", 0.5, "punctuation"), ("entropy_norm", 0.8, "broad")];
    rules.iter().find(|(column, bar, _)| at_least(column, *bar)).map(|(_, _, label)| *label).unwrap_or("mixed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(n: usize) -> Positions {
        Positions { special: (0..n).map(|i| i == 0 || i == n - 1).collect(), punct: vec![false; n], identity: (0..n as u64).collect(), labels: vec![String::new(); n] }
    }

    #[test]
    fn a_previous_token_head_is_labelled_and_scored() {
        let n = 4;
        // Row 0 on itself; every other row all on the previous token.
        let mut map = vec![0f32; n * n];
        map[0] = 1.0;
        for query in 1..n {
            map[query * n + query - 1] = 1.0;
        }
        let columns = head_columns(&map, &positions(n), false);
        let get = |name: &str| columns[COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(get("prev"), Some(1.0));
        assert_eq!(get("entropy"), Some(0.0));
        assert_eq!(get("self"), Some(0.25));
        assert_eq!(get("distance"), Some(0.75));
        assert_eq!(get("next"), Some(0.0));
        // first = (1 + 1 + 0 + 0) / 4 = 0.5: the first rule wins over previous-token.
        assert_eq!(get("first"), Some(0.5));
        assert_eq!(pattern(&columns), "first-token");
    }

    #[test]
    fn uniform_causal_rows_are_broad_and_have_no_next() {
        let n = 3;
        let mut map = vec![0f32; n * n];
        for query in 0..n {
            for key in 0..=query {
                map[query * n + key] = 1.0 / (query + 1) as f32;
            }
        }
        let columns = head_columns(&map, &positions(n), true);
        let get = |name: &str| columns[COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(get("next"), None);
        assert!((get("entropy_norm").unwrap() - 1.0).abs() < 1e-6);
        assert!((get("entropy").unwrap() - (0.0 + 2f64.ln() + 3f64.ln()) / 3.0).abs() < 1e-6);
    }

    #[test]
    fn punctuation_ignores_word_markers() {
        assert!(is_punct_token("##.", "##."));
        assert!(is_punct_token("\u{120},", "\u{b7},"));
        assert!(is_punct_token("\u{2581}\u{ab}", "\u{b7}\u{ab}"));
        // A literal "##" is punctuation; a bare word-start marker is not.
        assert!(is_punct_token("##", "##"));
        assert!(!is_punct_token("\u{2581}", "\u{b7}"));
        assert!(!is_punct_token("a.", "a."));
        assert!(!is_punct_token("[SEP]", "[SEP]"));
    }
}
