//! Text to token ids, the way transformers does it for attention inspection:
//! the model's own tokenizer.json, padding off, truncation at the model's
//! maximum length (`truncation=True, max_length=...`, longest-first for pairs).

use std::path::{Path, PathBuf};

use tokenizers::utils::truncation::truncate_encodings;
use tokenizers::{Model, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

/// One tokenized input: what the model sees and what the axes are labelled with.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub text: String,
    pub pair: Option<String>,
    pub ids: Vec<u32>,
    /// Segment ids (BERT's token_type_ids): 0 for the first text, 1 for the pair.
    /// All 0 for models whose transformers tokenizer feeds no token_type_ids.
    pub type_ids: Vec<u32>,
    /// The tokenizer's token strings (`convert_ids_to_tokens`).
    pub tokens: Vec<String>,
    /// The tokens as a reader should see them on an axis: byte-level BPE
    /// decoded to text, word-initial spaces (`Ġ`, `▁`) shown as `·`.
    pub labels: Vec<String>,
    /// How many tokens truncation removed (0 when the input fit).
    pub dropped: usize,
    /// Per token, which text it came from: 0 the text, 1 the pair; `None` for
    /// tokens the tokenizer added ([CLS], [SEP], BOS).
    pub sequence: Vec<Option<u8>>,
    /// Per token, the word it belongs to within its text (transformers'
    /// `word_ids()`); `None` for added special tokens.
    pub word_ids: Vec<Option<u32>>,
    /// Per token, its span in its own text (the text or the pair) in Unicode
    /// scalar values, as Python indexes a `str`; `(0, 0)` for added tokens.
    pub offsets: Vec<(usize, usize)>,
    /// Per token: one of the tokenizer's special tokens (added by the post-processor,
    /// or a special added token such as `<|im_start|>` written in the text).
    pub special: Vec<bool>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A model's tokenizer, set up for attention capture.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_len: usize,
    /// GPT-2 style byte-level BPE: token strings spell bytes, not text.
    byte_level: bool,
    segments: bool,
    /// For a decoder: its model_type, and pairs are refused (it reads one text).
    decoder: Option<String>,
    /// `inner` without truncation, for counting what truncation drops.
    untruncated: std::sync::OnceLock<Tokenizer>,
    /// Ids of the added tokens marked special (`<|im_start|>` written in a text is one),
    /// read once here rather than cloned from the tokenizer for every text.
    special_ids: std::collections::HashSet<u32>,
}

impl TextTokenizer {
    /// Load `tokenizer.json`, turn padding off and truncate at `max_len` tokens.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        let invalid = |why: String| Error::Tokenizer {
            path: path.to_path_buf(),
            message: format!("cannot be loaded ({why}); it must be a Hugging Face fast-tokenizer tokenizer.json"),
        };
        // The tokenizers crate panics on some malformed files (e.g. an out-of-range id); that is an input error here.
        let inner = crate::error::contain_panics(|| Tokenizer::from_file(path))
            .ok_or_else(|| invalid("it is malformed".into()))?
            .map_err(|e| invalid(e.to_string()))?;
        Self::new(inner, path.to_path_buf(), max_len)
    }

    /// Wrap an already-built tokenizer (e.g. one made from GGUF metadata).
    pub fn new(mut inner: Tokenizer, path: PathBuf, max_len: usize) -> Result<Self> {
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer { path: path.clone(), message: format!("cannot set truncation: {e}") })?;
        let byte_level = matches!(inner.get_decoder(), Some(tokenizers::DecoderWrapper::ByteLevel(_)));
        let special_ids = inner.get_added_tokens_decoder().into_iter().filter(|(_, token)| token.special).map(|(id, _)| id).collect();
        Ok(Self { inner, path, max_len, byte_level, segments: true, decoder: None, untruncated: Default::default(), special_ids })
    }

    /// For models whose transformers tokenizer has no `token_type_ids` among its
    /// `model_input_names` (RoBERTa, DistilBERT, GPT-2, …): the model then runs on
    /// all-zero segment ids, whatever tokenizer.json's post-processor assigns.
    pub fn without_segments(mut self) -> Self {
        self.segments = false;
        self
    }

    /// For decoders: a second text is refused instead of being glued to the first with
    /// no separator (their tokenizers have no pair template the model was trained on).
    pub fn single_text(mut self, model_type: &str) -> Self {
        self.decoder = Some(model_type.to_string());
        self
    }

    /// How many tokens the vocabulary holds, added tokens included.
    pub fn vocab_size(&self) -> usize {
        // get_vocab_size(true) clones the whole vocabulary to count it (~10 ms for a 49k
        // one); the same count is the model's size plus the added tokens it lacks.
        let model = self.inner.get_model();
        let added = self.inner.get_added_vocabulary().get_vocab().keys().filter(|token| model.token_to_id(token).is_none()).count();
        self.inner.get_vocab_size(false) + added
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes of each text tokenized first: truncation keeps `max_len` tokens, and a token
    /// covers at least one byte of text but for rare normalizer expansions, so 16 bytes per
    /// kept token leave a wide margin. Longer inputs are tokenized as prefixes (see [`Self::encode`]).
    pub fn prefix_budget(&self) -> usize {
        self.max_len.saturating_mul(16).max(4096)
    }

    /// Tokenize a text (and optional second segment) with special tokens.
    ///
    /// A text longer than truncation can keep is tokenized only as far as needed: a
    /// prefix and a prefix twice as long must both be truncated and keep the same
    /// tokens (so the kept tokens did not depend on the cut), else the prefixes grow.
    /// `text`/`pair` of the result are then the longer prefixes, and `dropped` counts
    /// what truncation dropped from them: a lower bound for the whole input. (A pair
    /// whose two texts are both that long is tokenized whole.)
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoded> {
        if text.trim().is_empty() {
            return Err(Error::Input("the text is empty; pass some text as an argument, with --file PATH, or on stdin with '-'".into()));
        }
        if pair.is_some_and(|p| p.trim().is_empty()) {
            return Err(Error::Input("--pair is empty; give the second sentence or leave --pair out".into()));
        }
        if let (Some(_), Some(model_type)) = (pair, &self.decoder) {
            return Err(Error::Usage(format!(
                "--pair is for models trained on sentence pairs (BERT's [SEP] and token_type_ids); this {model_type} model is a decoder that reads one text: put both texts in TEXT"
            )));
        }
        let mut budget = self.prefix_budget();
        loop {
            let longest = text.len().max(pair.map_or(0, str::len));
            // When text and pair must both be cut, which one is longer in full decides
            // (longest first) who keeps the odd token: only the whole inputs can tell.
            let both_cut = text.len().min(pair.map_or(0, str::len)) > budget;
            if longest <= budget.saturating_mul(2) || both_cut {
                return self.encode_whole(text, pair);
            }
            let small = self.encode_whole(prefix(text, budget), pair.map(|p| prefix(p, budget)))?;
            let large = self.encode_whole(prefix(text, budget * 2), pair.map(|p| prefix(p, budget * 2)))?;
            // Every text that was cut must itself have lost tokens to truncation: one that
            // did not might hold more tokens past the cut, which (longest first) would move
            // the split between text and pair.
            let mut every_cut_truncated = true;
            for (sequence, whole) in [(0u8, Some(text)), (1, pair)] {
                let Some(whole) = whole else { continue };
                let part = prefix(whole, budget);
                if part.len() < whole.len() {
                    let kept = small.sequence.iter().filter(|s| **s == Some(sequence)).count();
                    every_cut_truncated &= self.count_tokens(part)? > kept;
                }
            }
            if every_cut_truncated && small.ids == large.ids {
                return Ok(large);
            }
            budget = budget.saturating_mul(4);
        }
    }

    /// How many tokens a text alone makes, without special tokens or truncation.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let fail = |e: tokenizers::Error| Error::Tokenizer { path: self.path.clone(), message: format!("cannot encode the text: {e}") };
        Ok(self.untruncated()?.encode(text, false).map_err(fail)?.len())
    }

    /// The tokenizer without truncation (made once, on first use).
    fn untruncated(&self) -> Result<&Tokenizer> {
        if let Some(tokenizer) = self.untruncated.get() {
            return Ok(tokenizer);
        }
        let mut tokenizer = self.inner.clone();
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer { path: self.path.clone(), message: format!("cannot turn truncation off: {e}") })?;
        Ok(self.untruncated.get_or_init(|| tokenizer))
    }

    fn encode_whole(&self, text: &str, pair: Option<&str>) -> Result<Encoded> {
        let fail = |e: tokenizers::Error| Error::Tokenizer { path: self.path.clone(), message: format!("cannot encode the text: {e}") };
        let (encoding, dropped, sequence) = match pair {
            None => {
                let encoding = self.inner.encode(text, true).map_err(fail)?;
                let mut dropped = 0;
                if encoding.len() >= self.max_len {
                    // What truncation removed: the overflowing pieces, without special tokens.
                    dropped = self.count_tokens(text)?.saturating_sub(encoding.get_sequence_ids().iter().filter(|s| s.is_some()).count());
                }
                (encoding, dropped, None)
            }
            // tokenizers' own pair truncation keeps every overflowing piece of both texts and
            // then pairs each with each (quadratic: a long text and a long pair never finish),
            // so its steps are done here, keeping only what truncation keeps.
            Some(p) => {
                let untruncated = self.untruncated()?;
                let first = untruncated.encode(text, false).map_err(fail)?;
                let mut second = untruncated.encode(p, false).map_err(fail)?;
                second.set_type_ids(vec![1; second.len()]);
                let whole = first.len() + second.len();
                let added = self.inner.get_post_processor().map_or(0, |processor| processor.added_tokens(true));
                let params = TruncationParams {
                    max_length: self.max_len.saturating_sub(added),
                    strategy: TruncationStrategy::LongestFirst,
                    stride: 0,
                    direction: TruncationDirection::Right,
                };
                let (mut first, second) = truncate_encodings(first, Some(second), &params).map_err(fail)?;
                let mut second = second.unwrap_or_default();
                first.take_overflowing();
                second.take_overflowing();
                // As tokenizers' PostProcessor::default_process marks them for a pair.
                first.set_sequence_id(0);
                second.set_sequence_id(1);
                let kept = first.len() + second.len();
                let first_len = first.len();
                let encoding = untruncated.post_process(first, Some(second), true).map_err(fail)?;
                // The sequence ranges do not survive this path: the template's own tokens are
                // the masked ones, then come the first text's tokens, then the pair's.
                let mut seen = 0;
                let sequence = encoding
                    .get_special_tokens_mask()
                    .iter()
                    .map(|&mask| {
                        if mask == 1 {
                            return None;
                        }
                        seen += 1;
                        Some(if seen <= first_len { 0 } else { 1 })
                    })
                    .collect();
                (encoding, whole - kept, Some(sequence))
            }
        };
        if encoding.is_empty() {
            return Err(Error::Input("the text produced no tokens; pass some text".into()));
        }
        let tokens = encoding.get_tokens().to_vec();
        let labels = labels(&tokens, self.byte_level);
        let sequence: Vec<Option<u8>> = sequence.unwrap_or_else(|| encoding.get_sequence_ids().iter().map(|s| s.map(|s| s as u8)).collect());
        let special = encoding
            .get_special_tokens_mask()
            .iter()
            .zip(encoding.get_ids())
            .map(|(&mask, id)| mask == 1 || self.special_ids.contains(id))
            .collect();
        let (text_chars, pair_chars) = (CharIndex::new(text), CharIndex::new(pair.unwrap_or("")));
        let offsets = encoding
            .get_offsets()
            .iter()
            .zip(&sequence)
            .map(|(&(start, end), seq)| match seq {
                Some(0) => text_chars.span(start, end),
                Some(_) => pair_chars.span(start, end),
                None => (0, 0),
            })
            .collect();
        Ok(Encoded {
            text: text.to_string(),
            pair: pair.map(str::to_string),
            ids: encoding.get_ids().to_vec(),
            type_ids: if self.segments { encoding.get_type_ids().to_vec() } else { vec![0; encoding.len()] },
            tokens,
            labels,
            dropped,
            word_ids: encoding.get_word_ids().to_vec(),
            sequence,
            offsets,
            special,
        })
    }
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
fn prefix(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl TextTokenizer {
    /// The ids of ordinary vocabulary tokens: no added or special tokens and no
    /// placeholders such as `[unused7]` or `<unk>`; what random inputs are drawn from.
    pub fn ordinary_ids(&self) -> Vec<u32> {
        let added = self.inner.get_added_tokens_decoder();
        let placeholder = |token: &str| (token.starts_with('[') && token.ends_with(']')) || (token.starts_with('<') && token.ends_with('>'));
        let mut ids: Vec<u32> = self
            .inner
            .get_vocab(false)
            .into_iter()
            .filter(|(token, id)| !added.contains_key(id) && !placeholder(token))
            .map(|(_, id)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// An input made of given token ids, between the special tokens this tokenizer
    /// adds around a text ([CLS] ... [SEP], BOS ...). Its text is the tokens' labels
    /// joined by spaces; each token is a word of its own.
    pub fn encode_ids(&self, content: &[u32]) -> Result<Encoded> {
        let template = self.encode("a", None)?;
        let first = template.special.iter().position(|s| !s).unwrap_or(template.len());
        let last = template.special.iter().rposition(|s| !s).map(|i| i + 1).unwrap_or(first);
        let mut encoded = Encoded { text: String::new(), pair: None, ..template.clone() };
        let tokens: Vec<String> = content.iter().map(|&id| self.inner.id_to_token(id).unwrap_or_default()).collect();
        let labels: Vec<String> = tokens.iter().map(|t| label(t, self.byte_level)).collect();
        let mut offsets = Vec::with_capacity(content.len());
        let mut chars = 0;
        for (index, token_label) in labels.iter().enumerate() {
            if index > 0 {
                encoded.text.push(' ');
                chars += 1;
            }
            encoded.text.push_str(token_label);
            let length = token_label.chars().count();
            offsets.push((chars, chars + length));
            chars += length;
        }
        fn splice<T: Clone>(template: &[T], first: usize, last: usize, middle: Vec<T>) -> Vec<T> {
            template[..first].iter().cloned().chain(middle).chain(template[last..].iter().cloned()).collect()
        }
        let count = content.len();
        encoded.ids = splice(&template.ids, first, last, content.to_vec());
        encoded.type_ids = splice(&template.type_ids, first, last, vec![template.type_ids.get(first).copied().unwrap_or(0); count]);
        encoded.tokens = splice(&template.tokens, first, last, tokens);
        encoded.labels = splice(&template.labels, first, last, labels);
        encoded.sequence = splice(&template.sequence, first, last, vec![Some(0); count]);
        encoded.word_ids = splice(&template.word_ids, first, last, (0..count as u32).map(Some).collect());
        encoded.offsets = splice(&template.offsets, first, last, offsets);
        encoded.special = splice(&template.special, first, last, vec![false; count]);
        encoded.dropped = 0;
        Ok(encoded)
    }
}

/// Byte offsets to Unicode-scalar offsets for one text (built once, looked up per token).
struct CharIndex(Vec<usize>);

impl CharIndex {
    fn new(text: &str) -> Self {
        Self(text.char_indices().map(|(byte, _)| byte).collect())
    }

    /// A byte span as a span of characters; byte-level pieces that split a character
    /// round outwards to whole characters.
    fn span(&self, start: usize, end: usize) -> (usize, usize) {
        let floor = self.0.partition_point(|&b| b <= start).saturating_sub(1);
        let ceil = self.0.partition_point(|&b| b < end);
        (floor.min(ceil), ceil)
    }
}
/// How a token reads on an axis. Spaces become `·` so " the" and "the" differ visibly.
pub fn label(token: &str, byte_level: bool) -> String {
    let text = if byte_level { byte_level_text(token) } else { token.to_string() };
    text.replace(['\u{2581}', ' '], "\u{b7}")
}

/// Every token's label. Byte-level pieces that split one character (CJK and
/// emoji are often two or three tokens of one or two bytes each) are labelled
/// with the character their bytes complete, and which piece they are: 本(1/2), 本(2/2).
pub fn labels(tokens: &[String], byte_level: bool) -> Vec<String> {
    let mut labels: Vec<String> = tokens.iter().map(|t| label(t, byte_level)).collect();
    if !byte_level {
        return labels;
    }
    let bytes: Vec<Option<Vec<u8>>> = tokens.iter().map(|t| t.chars().map(unicode_to_byte).collect()).collect();
    let mut start = 0;
    while start < tokens.len() {
        let split = matches!(&bytes[start], Some(b) if std::str::from_utf8(b).is_err());
        if !split {
            start += 1;
            continue;
        }
        // Join the following pieces until the bytes are whole UTF-8 again.
        let mut joined = Vec::new();
        let mut ends = Vec::new();
        let mut end = start;
        let mut whole = false;
        while let Some(Some(piece)) = bytes.get(end) {
            joined.extend_from_slice(piece);
            ends.push(joined.len());
            if std::str::from_utf8(&joined).is_ok() {
                whole = true;
                break;
            }
            end += 1;
        }
        if !whole {
            // Never completed (truncated text, or a stray byte): keep the \xNN labels.
            start += 1;
            continue;
        }
        let text = String::from_utf8(joined).unwrap_or_default();
        let chars: Vec<(usize, usize, char)> = text.char_indices().map(|(at, c)| (at, at + c.len_utf8(), c)).collect();
        for (offset, label) in labels[start..=end].iter_mut().enumerate() {
            let (from, to) = (if offset == 0 { 0 } else { ends[offset - 1] }, ends[offset]);
            let mut relabelled = String::new();
            for &(char_start, char_end, c) in chars.iter().filter(|&&(a, b, _)| a < to && b > from) {
                relabelled.push(c);
                if char_start < from || char_end > to {
                    // Which piece of the character this token holds, counted over the pieces it spans.
                    let pieces: Vec<usize> = (0..ends.len()).filter(|&i| {
                        let (f, t) = (if i == 0 { 0 } else { ends[i - 1] }, ends[i]);
                        char_start < t && char_end > f && t > f
                    }).collect();
                    let index = pieces.iter().position(|&i| i == offset).unwrap_or(0) + 1;
                    relabelled.push_str(&format!("({index}/{})", pieces.len()));
                }
            }
            *label = relabelled.replace(['\u{2581}', ' '], "\u{b7}");
        }
        start = end + 1;
    }
    labels
}

/// Undo GPT-2's bytes-to-unicode mapping; bytes that are not whole UTF-8 are shown as `\xNN`.
fn byte_level_text(token: &str) -> String {
    let mut bytes = Vec::with_capacity(token.len());
    for c in token.chars() {
        match unicode_to_byte(c) {
            Some(byte) => bytes.push(byte),
            // Not a byte-level character (e.g. an added special token): keep the token as is.
            None => return token.to_string(),
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let bytes = e.into_bytes();
            let valid = std::str::from_utf8(&bytes).map(str::len).unwrap_or_else(|e| e.valid_up_to());
            let mut text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            for byte in &bytes[valid..] {
                text.push_str(&format!("\\x{byte:02x}"));
            }
            text
        }
    }
}

/// The inverse of GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes were moved to U+0100.. in byte order.
fn unicode_to_byte(c: char) -> Option<u8> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let code = c as u32;
    if code < 256 {
        return printable(code).then_some(code as u8);
    }
    let index = code.checked_sub(256)?;
    (0u32..256).filter(|b| !printable(*b)).nth(index as usize).map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counted vocabulary size equals tokenizers' own (which clones the vocabulary to count
    /// it): added tokens already in the model's vocabulary count once, new ones once more each.
    #[test]
    fn vocab_size_counts_added_tokens_the_model_lacks() {
        let vocab = [("a", 0), ("b", 1), ("<s>", 2)].into_iter().map(|(t, i)| (t.to_string(), i)).collect();
        let model = tokenizers::models::wordlevel::WordLevel::builder().vocab(vocab).unk_token("a".into()).build().unwrap();
        let mut inner = Tokenizer::new(model);
        inner.add_special_tokens(&[tokenizers::AddedToken::from("<s>", true), tokenizers::AddedToken::from("<pad>", true)]);
        inner.add_tokens(&[tokenizers::AddedToken::from("new", false)]);
        let expected = inner.get_vocab_size(true);
        let tokenizer = TextTokenizer::new(inner, PathBuf::from("tokenizer.json"), 16).unwrap();
        assert_eq!((tokenizer.vocab_size(), expected), (5, 5));
    }

    #[test]
    fn byte_level_tokens_read_as_text() {
        assert_eq!(label("\u{120}the", true), "\u{b7}the");
        assert_eq!(label("\u{10a}", true), "\n");
        assert_eq!(label("caf\u{c3}\u{a9}", true), "caf\u{e9}");
        assert_eq!(label("\u{c3}", true), "\\xc3");
        assert_eq!(label("<|im_start|>", true), "<|im_start|>");
        assert_eq!(label("\u{2581}the", false), "\u{b7}the");
        assert_eq!(label("##ing", false), "##ing");
    }

    #[test]
    fn pieces_of_one_character_are_labelled_with_it() {
        // GPT-2's byte-level alphabet: 本 is e6 9c ac, here split as [e6 9c] [ac], then " a".
        let byte = |b: u8| (0u32..512).filter_map(char::from_u32).find(|&c| unicode_to_byte(c) == Some(b)).unwrap();
        let tokens = vec![format!("{}{}", byte(0xe6), byte(0x9c)), byte(0xac).to_string(), format!("{}a", byte(b' '))];
        assert_eq!(labels(&tokens, true), ["\u{672c}(1/2)", "\u{672c}(2/2)", "\u{b7}a"]);
        // A piece that ends one character and starts the next.
        let tokens = vec![format!("x{}", byte(0xe6)), format!("{}{}{}", byte(0x9c), byte(0xac), byte(0xe6)), format!("{}{}", byte(0x9c), byte(0xac))];
        assert_eq!(labels(&tokens, true), ["x\u{672c}(1/2)", "\u{672c}(2/2)\u{672c}(1/2)", "\u{672c}(2/2)"]);
        // Never completed: the bytes stay visible.
        assert_eq!(labels(&[byte(0xe6).to_string()], true), ["\\xe6"]);
    }

    #[test]
    fn byte_spans_become_character_spans() {
        let index = CharIndex::new("a\u{e9}b\u{672c}");
        // bytes: a=0, é=1..3, b=3, 本=4..7
        assert_eq!(index.span(0, 1), (0, 1));
        assert_eq!(index.span(1, 3), (1, 2));
        assert_eq!(index.span(3, 4), (2, 3));
        assert_eq!(index.span(4, 7), (3, 4));
        // A piece holding part of a character covers the whole character.
        assert_eq!(index.span(5, 7), (3, 4));
        assert_eq!(index.span(4, 5), (3, 4));
        assert_eq!(CharIndex::new("").span(0, 0), (0, 0));
    }
}
