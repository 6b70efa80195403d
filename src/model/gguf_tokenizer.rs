//! A GGUF file's tokenizer, rebuilt as a `tokenizers::Tokenizer` from the
//! `tokenizer.ggml.*` metadata so its ids equal the original tokenizer.json's.
//!
//! Supported: byte-level BPE vocabularies (`tokenizer.ggml.model` = `gpt2`)
//! with the pre-tokenizers llama.cpp calls `smollm` (and the other StarCoder-
//! style names), `gpt2`/`default`, and `llama-bpe`. The pre-tokenizer matters:
//! llama.cpp's `smollm` first splits every numeric character off on its own
//! (`\p{N}`), then applies GPT-2's regex, which is the original SmolLM2
//! tokenizer.json's `Sequence[Digits(individual_digits), ByteLevel]`.
//! transformers 5.24's own GGUF loader does not know `smollm` and falls back
//! to plain GPT-2 splitting, which differs on whitespace runs before digits
//! ("a  1", "\n\n2") and on a space before a non-ASCII numeral (" ²"); attnmap
//! follows the original tokenizer and llama.cpp there.

use std::collections::HashSet;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::gguf::GgufFile;
use crate::error::{Error, Result};
use crate::tokenize::TextTokenizer;

/// `tokenizer.ggml.pre` values that split like the original StarCoder/SmolLM
/// tokenizers: each numeric character alone, then GPT-2's regex (llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_STARCODER` group).
const DIGITS_THEN_GPT2: &[&str] = &["smollm", "starcoder", "refact", "codeshell"];
/// Plain GPT-2 splitting.
const GPT2: &[&str] = &["gpt2", "default"];
/// Llama 3's regex (numbers in runs of up to three digits).
const LLAMA3: &[&str] = &["llama-bpe", "llama3", "llama-v3"];

/// The Llama 3 split, as llama.cpp's `LLAMA_VOCAB_PRE_TYPE_LLAMA3` and transformers' `_LLAMA3_SPLIT`.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's token types.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Build the tokenizer a GGUF file describes, truncating at `max_len` tokens.
pub(crate) fn from_gguf(gguf: &GgufFile, max_len: usize) -> Result<TextTokenizer> {
    let fail = |message: String| Error::Tokenizer { path: gguf.path.clone(), message };
    let model = gguf.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(fail(format!(
            "tokenizer.ggml.model {model:?} is not supported; attnmap reads byte-level BPE vocabularies (\"gpt2\") from GGUF files"
        )));
    }
    // llama.cpp treats a missing pre-tokenizer name as "default" (GPT-2's regex), as does transformers.
    let pre = gguf.optional_string("tokenizer.ggml.pre")?.unwrap_or("default");
    let pre_tokenizer = pre_tokenizer(pre).ok_or_else(|| {
        fail(format!(
            "tokenizer.ggml.pre {pre:?} is not supported; supported: {}",
            [DIGITS_THEN_GPT2, GPT2, LLAMA3].concat().join(", ")
        ))
    })?;

    let tokens = strings(gguf, "tokenizer.ggml.tokens")?;
    let merges = strings(gguf, "tokenizer.ggml.merges")?;
    let types: Vec<i64> = match gguf.metadata().get("tokenizer.ggml.token_type") {
        Some(_) => gguf.array("tokenizer.ggml.token_type")?.iter().map(integer).collect(),
        None => Vec::new(),
    };
    let alphabet: HashSet<char> = byte_alphabet().into_iter().collect();
    if u32::try_from(tokens.len()).is_err() {
        return Err(fail("has more than 2^32 tokens".into()));
    }
    // The vocabulary and the merges are ~50k strings each: built side by side.
    let (vocab, merges) = rayon::join(
        || tokens.iter().enumerate().map(|(id, token)| (respell(token, &alphabet), id as u32)).collect::<Vocab>(),
        || {
            merges
                .iter()
                .map(|merge| merge.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| fail(format!("merge {merge:?} is not two tokens"))))
                .collect::<Result<Vec<_>>>()
        },
    );
    let merges = merges?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| fail(format!("the vocabulary and merges do not form a BPE model ({e})")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    // Control tokens (<|im_start|>, ...) are matched whole as special tokens, user-defined
    // ones (<think>, ...) whole as plain added tokens. As transformers does, only those
    // spelled in the byte alphabet: any other is a llama.cpp mislabel and not in the vocabulary.
    let mut special = Vec::new();
    let mut added = Vec::new();
    for (token, &kind) in tokens.iter().zip(&types) {
        if !matches!(kind, CONTROL | USER_DEFINED) || !token.chars().all(|c| alphabet.contains(&c)) {
            continue;
        }
        match kind {
            CONTROL => special.push(AddedToken::from(token.as_str(), true)),
            _ => added.push(AddedToken::from(token.as_str(), false).normalized(false)),
        }
    }
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&added);

    let token_of = |key: &str| -> Result<Option<(String, u32)>> {
        let Some(id) = gguf.optional_count(key)? else { return Ok(None) };
        let token = tokens.get(id).ok_or_else(|| fail(format!("{key} {id} is not a token id (the vocabulary has {})", tokens.len())))?;
        Ok(Some((respell(token, &alphabet), id as u32)))
    };
    let add_bos = gguf.optional_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
    let add_eos = gguf.optional_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let bos = if add_bos { token_of("tokenizer.ggml.bos_token_id")? } else { None };
    let eos = if add_eos { token_of("tokenizer.ggml.eos_token_id")? } else { None };
    if add_bos && bos.is_none() {
        return Err(fail("tokenizer.ggml.add_bos_token is set but tokenizer.ggml.bos_token_id is missing".into()));
    }
    if add_eos && eos.is_none() {
        return Err(fail("tokenizer.ggml.add_eos_token is set but tokenizer.ggml.eos_token_id is missing".into()));
    }
    if bos.is_some() || eos.is_some() {
        let (bos_text, eos_text) = (bos.as_ref().map(|(t, _)| t.as_str()), eos.as_ref().map(|(t, _)| t.as_str()));
        let single = [bos_text, Some("$A"), eos_text].into_iter().flatten().collect::<Vec<_>>().join(" ");
        let second = [bos_text.map(|t| format!("{t}:1")), Some("$B:1".into()), eos_text.map(|t| format!("{t}:1"))];
        let pair = format!("{single} {}", second.into_iter().flatten().collect::<Vec<_>>().join(" "));
        let processor = TemplateProcessing::builder()
            .try_single(single.as_str())
            .and_then(|b| b.try_pair(pair.as_str()))
            .map_err(|e| fail(format!("cannot add BOS/EOS tokens: {e}")))?
            .special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
            .build()
            .map_err(|e| fail(format!("cannot add BOS/EOS tokens: {e}")))?;
        tokenizer.with_post_processor(Some(processor));
    }
    TextTokenizer::new(tokenizer, gguf.path.clone(), max_len)
}

fn pre_tokenizer(pre: &str) -> Option<PreTokenizerWrapper> {
    // add_prefix_space off, trim_offsets on: as the original tokenizer.json files write it.
    let byte_level = |use_regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    if DIGITS_THEN_GPT2.contains(&pre) {
        return Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level(true)])));
    }
    if GPT2.contains(&pre) {
        return Some(byte_level(true));
    }
    if LLAMA3.contains(&pre) {
        let split = Split::new(SplitPattern::Regex(LLAMA3_REGEX.into()), SplitDelimiterBehavior::Isolated, false).ok()?;
        return Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Split(split), byte_level(false)])));
    }
    None
}

fn strings<'a>(gguf: &'a GgufFile, key: &str) -> Result<Vec<&'a String>> {
    gguf.array(key)?
        .iter()
        .map(|value| match value {
            candle_core::quantized::gguf_file::Value::String(s) => Ok(s),
            _ => Err(Error::model_file(&gguf.path, format!("metadata key {key} is not an array of strings; the file is corrupt"))),
        })
        .collect()
}

fn integer(value: &candle_core::quantized::gguf_file::Value) -> i64 {
    use candle_core::quantized::gguf_file::Value;
    match value {
        Value::I32(v) => *v as i64,
        Value::U32(v) => *v as i64,
        Value::I8(v) => *v as i64,
        Value::U8(v) => *v as i64,
        Value::I16(v) => *v as i64,
        Value::U16(v) => *v as i64,
        Value::I64(v) => *v,
        Value::U64(v) => *v as i64,
        _ => 0,
    }
}

/// GPT-2's `bytes_to_unicode`: the printable character standing for each byte.
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap_or('?')
            }
        })
        .collect()
}

/// A vocabulary entry in the byte alphabet: llama.cpp stores byte-level tokens
/// spelled that way already, but a few (added tokens) as raw text.
fn respell(token: &str, alphabet: &HashSet<char>) -> String {
    if token.chars().all(|c| alphabet.contains(&c)) {
        return token.to_string();
    }
    let spelling = byte_alphabet();
    token.bytes().map(|b| spelling[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let alphabet = byte_alphabet();
        assert_eq!(alphabet[b' ' as usize], 'Ġ');
        assert_eq!(alphabet[b'\n' as usize], 'Ċ');
        assert_eq!(alphabet[b'a' as usize], 'a');
        assert_eq!(alphabet.iter().collect::<HashSet<_>>().len(), 256);
    }

    #[test]
    fn unknown_pre_tokenizers_are_refused() {
        assert!(pre_tokenizer("smollm").is_some());
        assert!(pre_tokenizer("llama-bpe").is_some());
        assert!(pre_tokenizer("qwen2-but-not-really").is_none());
    }
}
