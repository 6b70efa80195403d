//! Words: tokens grouped the way transformers' `word_ids()` groups them, and
//! maps merged from token level to word level.
//!
//! Clark et al. 2019's convention (and the one every view and statistic here
//! uses): attention FROM a word is the mean over its tokens' rows, attention TO
//! a word is the sum over its tokens' columns, so merged rows still sum to 1.
//! Special tokens ([CLS], [SEP], BOS) are words of their own.

use std::ops::Range;

use crate::tokenize::Encoded;

/// One word of an input: a run of tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word's tokens, contiguous.
    pub tokens: Range<usize>,
    /// How the word reads on an axis: its text, or the special token's label.
    pub label: String,
    /// A special token of the tokenizer (a word of its own).
    pub special: bool,
    /// Which text it came from: 0 the text, 1 the pair, `None` for added tokens.
    pub sequence: Option<u8>,
    /// Its span in its own text, in Unicode scalar values.
    pub chars: (usize, usize),
}

/// Group an input's tokens into words: consecutive tokens with the same
/// (sequence, word id) form one word; special tokens and tokens without a word
/// id stand alone.
pub fn words(input: &Encoded) -> Vec<Word> {
    let n = input.len();
    let mut words: Vec<Word> = Vec::new();
    let key = |t: usize| -> Option<(Option<u8>, u32)> {
        if input.special.get(t).copied().unwrap_or(false) {
            return None;
        }
        let word = input.word_ids.get(t).copied().flatten()?;
        Some((input.sequence.get(t).copied().flatten(), word))
    };
    let mut token = 0;
    while token < n {
        let start = token;
        let this = key(token);
        token += 1;
        if this.is_some() {
            while token < n && key(token) == this {
                token += 1;
            }
        }
        let special = this.is_none();
        let sequence = input.sequence.get(start).copied().flatten();
        let first = input.offsets.get(start).copied().unwrap_or((0, 0));
        let last = input.offsets.get(token - 1).copied().unwrap_or((0, 0));
        let chars = (first.0, last.1.max(first.0));
        let label = if special || chars.0 == chars.1 {
            input.labels.get(start).cloned().unwrap_or_default()
        } else {
            let source = if sequence == Some(1) { input.pair.as_deref().unwrap_or("") } else { input.text.as_str() };
            source.chars().skip(chars.0).take(chars.1 - chars.0).collect()
        };
        words.push(Word { tokens: start..token, label, special, sequence, chars });
    }
    words
}

/// The word each token belongs to.
pub fn word_of_token(words: &[Word], tokens: usize) -> Vec<usize> {
    let mut owner = vec![0; tokens];
    for (index, word) in words.iter().enumerate() {
        for token in word.tokens.clone() {
            if let Some(slot) = owner.get_mut(token) {
                *slot = index;
            }
        }
    }
    owner
}

/// Merge one `[seq, seq]` map (row-major, query x key) to `[words, words]`:
/// rows are the mean over a word's tokens, columns the sum.
pub fn merge_map(map: &[f32], seq: usize, words: &[Word]) -> Vec<f32> {
    let count = words.len();
    let owner = word_of_token(words, seq);
    let mut merged = vec![0f64; count * count];
    for (row_word, word) in words.iter().enumerate() {
        let rows = word.tokens.len().max(1) as f64;
        for query in word.tokens.clone() {
            let row = &map[query * seq..(query + 1) * seq];
            let out = &mut merged[row_word * count..(row_word + 1) * count];
            for (key, &weight) in row.iter().enumerate() {
                out[owner[key]] += weight as f64 / rows;
            }
        }
    }
    merged.into_iter().map(|v| v as f32).collect()
}

/// Merge a stack of `[seq, seq]` maps (e.g. `[layers, heads, seq, seq]`) map by map.
pub fn merge_maps(maps: &[f32], seq: usize, words: &[Word]) -> Vec<f32> {
    let per_map = seq * seq;
    if per_map == 0 {
        return Vec::new();
    }
    maps.chunks(per_map).flat_map(|map| merge_map(map, seq, words)).collect()
}

/// The words' labels, for axes.
pub fn labels(words: &[Word]) -> Vec<String> {
    words.iter().map(|w| w.label.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded() -> Encoded {
        // [CLS] the whirly ##gigs broke [SEP]
        Encoded {
            text: "the whirlygigs broke".into(),
            pair: None,
            ids: vec![101, 1, 2, 3, 4, 102],
            type_ids: vec![0; 6],
            tokens: ["[CLS]", "the", "whirly", "##gigs", "broke", "[SEP]"].map(String::from).to_vec(),
            labels: ["[CLS]", "the", "whirly", "##gigs", "broke", "[SEP]"].map(String::from).to_vec(),
            dropped: 0,
            sequence: vec![None, Some(0), Some(0), Some(0), Some(0), None],
            word_ids: vec![None, Some(0), Some(1), Some(1), Some(2), None],
            offsets: vec![(0, 0), (0, 3), (4, 10), (10, 14), (15, 20), (0, 0)],
            special: vec![true, false, false, false, false, true],
        }
    }

    #[test]
    fn tokens_group_into_words_and_specials_stand_alone() {
        let words = words(&encoded());
        let labels: Vec<&str> = words.iter().map(|w| w.label.as_str()).collect();
        assert_eq!(labels, ["[CLS]", "the", "whirlygigs", "broke", "[SEP]"]);
        assert_eq!(words[2].tokens, 2..4);
        assert_eq!(words[2].chars, (4, 14));
        assert!(words[0].special && words[4].special && !words[1].special);
    }

    #[test]
    fn merged_rows_are_means_and_columns_sums() {
        let input = encoded();
        let words = words(&input);
        let seq = input.len();
        // Token 2 attends all to token 3, token 3 all to token 0; everyone else uniformly.
        let mut map = vec![1.0 / seq as f32; seq * seq];
        map[2 * seq..3 * seq].iter_mut().enumerate().for_each(|(k, v)| *v = if k == 3 { 1.0 } else { 0.0 });
        map[3 * seq..4 * seq].iter_mut().enumerate().for_each(|(k, v)| *v = if k == 0 { 1.0 } else { 0.0 });
        let merged = merge_map(&map, seq, &words);
        let count = words.len();
        for row in merged.chunks(count) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // "whirlygigs" row: mean of token 2 (all on itself) and token 3 (all on [CLS]).
        assert!((merged[2 * count + 2] - 0.5).abs() < 1e-6);
        assert!((merged[2 * count] - 0.5).abs() < 1e-6);
        // Column sum: the [CLS] row gives "whirlygigs" two tokens' worth.
        assert!((merged[2] - 2.0 / seq as f32).abs() < 1e-6);
    }
}
