//! Reading back what `attnmap dump` wrote, so `heads`, `find` and `diff` run on maps
//! computed once (possibly by a job array) instead of on a model: a corpus folder
//! (`dump --texts`: `NNNNN/` folders and `index.jsonl`) or a single dump folder, one
//! text at a time.
//!
//! A corpus is trusted only as far as it can be checked cheaply before any map is read:
//! the index lists texts 1, 2, ... with none missing (a shard that never ran leaves
//! gaps), every listed folder holds a manifest (a folder without one is unfinished),
//! and no complete folder is left out of the index (shards copied together without the
//! rerun that re-indexes them). Each text's manifest and array are checked when read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::analysis::patterns::{check_patterns, PatternFault};
use crate::error::{Error, Result};
use crate::output::npy::NpyReader;
use crate::output::read_regular_file;
use crate::tokenize::Encoded;

use super::dump::LAYOUT_VERSION;

/// The index of a corpus (written by `commands::corpus`).
pub const INDEX: &str = "index.jsonl";

/// One text of a corpus, as its index lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its number among the texts of the probe file (1-based).
    pub line: usize,
    pub folder: PathBuf,
    pub text: String,
    pub pair: Option<String>,
}

/// A corpus folder (or one dump folder, a corpus of one text), checked and listed.
#[derive(Debug)]
pub struct Corpus {
    pub dir: PathBuf,
    pub texts: Vec<Listed>,
    /// A corpus of `dump --texts`, not a single dump folder.
    pub is_corpus: bool,
    /// What the first text says; every other text must agree.
    pub first: Shape,
}

/// What every text of one corpus must share.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The `--model` the dumps were made with (`manifest.json` "model").
    pub model: String,
    pub weights_sha256: Option<String>,
    pub layers: usize,
    pub heads: usize,
    pub causal: bool,
}

/// One text of a corpus opened: its tokens (what a forward pass would have been given), and
/// its maps, to be read a layer at a time.
pub struct TextDump {
    pub input: Encoded,
    reader: NpyReader,
    /// The next layer to read.
    layer: usize,
    layers: usize,
    heads: usize,
    /// Says what is wrong and how to fix it.
    damaged: Box<dyn Fn(String) -> Error>,
}

impl TextDump {
    /// The next layer's maps, `[heads, seq, seq]`, checked as a softmax's; `None` after the last.
    pub fn next_layer(&mut self) -> Result<Option<Vec<f32>>> {
        if self.layer == self.layers {
            return Ok(None);
        }
        let seq = self.input.len();
        let mut maps = Vec::new();
        self.reader.read(self.heads * seq * seq, &mut maps).map_err(|e| (self.damaged)(format!("attention.npy: {e}")))?;
        let layer = self.layer;
        check_patterns(&maps, 1, self.heads, seq).map_err(|fault| {
            let fault = match fault {
                PatternFault::BadWeight { head, query, key, value, .. } => PatternFault::BadWeight { layer, head, query, key, value },
                PatternFault::RowSum { head, query, sum, tolerance, .. } => PatternFault::RowSum { layer, head, query, sum, tolerance },
            };
            (self.damaged)(format!("attention.npy: {fault}; attnmap never writes such a map"))
        })?;
        self.layer += 1;
        Ok(Some(maps))
    }
}

/// How a user re-makes a corpus (or a dump) this attnmap can read.
fn redump(is_corpus: bool, dir: &Path) -> String {
    if is_corpus {
        format!("make it again with this attnmap: attnmap dump --texts FILE --out {} --force (with the same --model)", dir.display())
    } else {
        "make the dump again with this attnmap".into()
    }
}

impl Corpus {
    /// Open DIR: a corpus (it holds index.jsonl) or one dump folder (it holds manifest.json).
    /// `flag` names where DIR came from in messages (`--corpus`, `diff`'s OLD/NEW).
    pub fn open(dir: &Path, flag: &str) -> Result<Self> {
        let bad = |message: String| Error::Input(format!("{flag} {}: {message}", dir.display()));
        if !dir.is_dir() {
            let what = if dir.exists() { "not a folder" } else { "no such folder" };
            return Err(bad(format!("{what}; give a folder written by attnmap dump --texts FILE --out DIR (or by attnmap dump)")));
        }
        let index_path = dir.join(INDEX);
        let (texts, is_corpus) = if index_path.exists() {
            (read_index(dir, &index_path, &bad)?, true)
        } else if dir.join("manifest.json").exists() {
            let manifest = read_manifest(dir)?;
            let text = manifest.get("text").and_then(Value::as_str).unwrap_or_default().to_string();
            let pair = manifest.get("pair").and_then(Value::as_str).map(str::to_string);
            (vec![Listed { line: 1, folder: dir.to_path_buf(), text, pair }], false)
        } else {
            return Err(bad("holds neither index.jsonl (a corpus: attnmap dump --texts FILE --out DIR) nor manifest.json (one dump: attnmap dump TEXT --out DIR)".into()));
        };
        let first = shape(&read_manifest(&texts[0].folder)?, &texts[0].folder)?;
        Ok(Corpus { dir: dir.to_path_buf(), texts, is_corpus, first })
    }

    /// The model's short name, as reports name it.
    pub fn model_name(&self) -> String {
        super::short_name(&self.first.model).unwrap_or_else(|| self.first.model.clone())
    }

    /// Open text `index` (0-based in `texts`): its tokens as the tokenizer gave them, checked
    /// against the manifest, the index and the corpus's first text, and its array's header.
    pub fn open_text(&self, index: usize) -> Result<TextDump> {
        let listed = &self.texts[index];
        let dir = &listed.folder;
        let bad = |message: String| Error::Input(format!("{}: {message}", dir.display()));
        let fix = if self.is_corpus {
            format!("delete {} and run attnmap dump --texts FILE --out {} again (it computes only what is missing)", dir.display(), self.dir.display())
        } else {
            redump(false, dir)
        };
        let folder = dir.clone();
        let damaged = move |message: String| Error::Input(format!("{}: {message}; the dump is damaged: {fix}", folder.display()));
        let manifest = read_manifest(dir)?;
        let shape = shape(&manifest, dir)?;
        if shape != self.first {
            let this = describe(&shape);
            let before = describe(&self.first);
            return Err(bad(format!("was dumped with {this}, the corpus's first text with {before}; a corpus holds one model's dumps, {}", redump(self.is_corpus, &self.dir))));
        }
        let text = manifest.get("text").and_then(Value::as_str).unwrap_or_default();
        let pair = manifest.get("pair").and_then(Value::as_str);
        if self.is_corpus && (text, pair) != (listed.text.as_str(), listed.pair.as_deref()) {
            return Err(bad(format!("holds the dump of {text:?}, but {INDEX} lists text {} as {:?}; {}", listed.line, listed.text, redump(true, &self.dir))));
        }
        let seq = count(&manifest, "seq_len", dir)?;
        let input = encoded(&manifest, seq, dir, self.is_corpus, &self.dir)?;
        let reader = NpyReader::open(&dir.join("attention.npy")).map_err(|e| damaged(format!("attention.npy: {e}")))?;
        let said = [shape.layers, shape.heads, seq, seq];
        if reader.shape != said {
            return Err(damaged(format!("attention.npy has shape {:?} but manifest.json says {said:?} (layers, heads, seq_len, seq_len)", reader.shape)));
        }
        Ok(TextDump { input, reader, layer: 0, layers: shape.layers, heads: shape.heads, damaged: Box::new(damaged) })
    }
}

fn describe(shape: &Shape) -> String {
    let weights = shape.weights_sha256.as_deref().map(|sha| format!(", weights sha256 {}", &sha[..sha.len().min(12)])).unwrap_or_default();
    format!("{} ({} layers x {} heads{weights})", shape.model, shape.layers, shape.heads)
}

/// Read and check index.jsonl against the folders beside it.
fn read_index(dir: &Path, path: &Path, bad: &dyn Fn(String) -> Error) -> Result<Vec<Listed>> {
    let content = read_regular_file(path).map_err(|e| bad(format!("cannot read {INDEX} ({e})")))?;
    let content = String::from_utf8(content).map_err(|_| bad(format!("{INDEX} is not UTF-8 text; {}", redump(true, dir))))?;
    let mut texts: Vec<Listed> = Vec::new();
    // "of": how many texts the probe file held (indexes written before it existed lack it).
    let mut total: Option<usize> = None;
    for (number, line) in content.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |why: &str| bad(format!("{INDEX} line {}: {why}; {}", number + 1, redump(true, dir)));
        let value: Value = serde_json::from_str(line).map_err(|e| at(&format!("not JSON ({e})")))?;
        let line_number = value.get("line").and_then(Value::as_u64).filter(|&n| n >= 1).ok_or_else(|| at("no \"line\" number"))? as usize;
        let folder = value.get("folder").and_then(Value::as_str).ok_or_else(|| at("no \"folder\""))?;
        if folder != format!("{line_number:05}") {
            return Err(at(&format!("\"folder\" {folder:?} is not text {line_number}'s folder")));
        }
        if let Some(previous) = texts.last().filter(|t| t.line >= line_number) {
            return Err(at(&format!("text {line_number} comes after text {}: the index is out of order", previous.line)));
        }
        total = total.max(value.get("of").and_then(Value::as_u64).map(|n| n as usize));
        let text = value.get("text").and_then(Value::as_str).ok_or_else(|| at("no \"text\""))?.to_string();
        let pair = value.get("pair").and_then(Value::as_str).map(str::to_string);
        texts.push(Listed { line: line_number, folder: dir.join(folder), text, pair });
    }
    if texts.is_empty() {
        return Err(bad(format!("{INDEX} lists no texts: the corpus is empty; run attnmap dump --texts FILE --out {}", dir.display())));
    }
    let listed: BTreeSet<usize> = texts.iter().map(|t| t.line).collect();
    let last = total.unwrap_or(0).max(texts.last().map_or(0, |t| t.line));
    let missing: Vec<usize> = (1..=last).filter(|n| !listed.contains(n)).collect();
    // Complete folders the index does not list, and folders without a manifest.
    let mut unlisted = Vec::new();
    let mut unfinished = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| bad(format!("cannot list the folder ({e})")))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(number) = (name.len() == 5).then(|| name.parse::<usize>().ok()).flatten() else { continue };
        if !entry.path().join("manifest.json").is_file() {
            unfinished.push(name);
        } else if !listed.contains(&number) {
            unlisted.push(name);
        }
    }
    unfinished.sort();
    unlisted.sort();
    let few = |names: &[String]| {
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        format!("{}{}", shown.join(", "), if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() })
    };
    if !unfinished.is_empty() {
        return Err(bad(format!(
            "{} {} no manifest.json: unfinished or damaged; run attnmap dump --texts FILE --out {} again to complete the corpus (it keeps the complete dumps)",
            few(&unfinished),
            if unfinished.len() == 1 { "has" } else { "have" },
            dir.display()
        )));
    }
    if !unlisted.is_empty() {
        return Err(bad(format!(
            "{INDEX} does not list {} (shards copied together?); run attnmap dump --texts FILE --out {} again to re-index it (it computes nothing that is there)",
            few(&unlisted),
            dir.display()
        )));
    }
    if !missing.is_empty() {
        let numbers: Vec<String> = missing.iter().map(|n| n.to_string()).collect();
        return Err(bad(format!(
            "incomplete: text{} {} of {last} {} missing (a shard that did not run?); run the missing shards, or attnmap dump --texts FILE --out {} to complete it",
            if missing.len() == 1 { "" } else { "s" },
            few(&numbers),
            if missing.len() == 1 { "is" } else { "are" },
            dir.display()
        )));
    }
    for listed in &texts {
        if !listed.folder.join("manifest.json").is_file() {
            return Err(bad(format!(
                "{INDEX} lists text {} but {} is missing or unfinished; run attnmap dump --texts FILE --out {} again to complete the corpus",
                listed.line,
                listed.folder.display(),
                dir.display()
            )));
        }
    }
    Ok(texts)
}

/// A dump folder's manifest.json, refused unless it is JSON of the layout this attnmap reads.
pub(super) fn read_manifest(dir: &Path) -> Result<Value> {
    let bad = |message: String| Error::Input(format!("{}: {message}", dir.display()));
    let manifest: Value = read_regular_file(&dir.join("manifest.json"))
        .map_err(|e| bad(format!("cannot read manifest.json ({e}); is it a folder written by attnmap dump?")))
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest.json is not valid JSON ({e})"))))?;
    let fix = "make the dump again with this attnmap, or use the attnmap that wrote it";
    match manifest.get("layout_version") {
        Some(version) if version.as_u64() == Some(u64::from(LAYOUT_VERSION)) => Ok(manifest),
        Some(version) => Err(bad(format!("manifest.json \"layout_version\" is {version}, but this attnmap reads layout {LAYOUT_VERSION} only; {fix}"))),
        None => Err(bad(format!("manifest.json has no \"layout_version\"; {fix}"))),
    }
}

fn count(manifest: &Value, name: &str, dir: &Path) -> Result<usize> {
    manifest
        .get(name)
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| Error::Input(format!("{}: manifest.json {name:?} is missing or not a count; the dump is damaged, make it again", dir.display())))
}

fn shape(manifest: &Value, dir: &Path) -> Result<Shape> {
    Ok(Shape {
        model: manifest.get("model").and_then(Value::as_str).unwrap_or("unknown model").to_string(),
        weights_sha256: manifest.get("weights_sha256").and_then(Value::as_str).map(str::to_string),
        layers: count(manifest, "layers", dir)?,
        heads: count(manifest, "heads", dir)?,
        causal: manifest.get("causal").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The tokenizer's output, as the manifest recorded it.
fn encoded(manifest: &Value, seq: usize, dir: &Path, is_corpus: bool, corpus: &Path) -> Result<Encoded> {
    fn field<T: serde::de::DeserializeOwned>(manifest: &Value, name: &str, seq: usize, dir: &Path, is_corpus: bool, corpus: &Path) -> Result<Vec<T>> {
        let bad = |message: String| Error::Input(format!("{}: {message}", dir.display()));
        let Some(value) = manifest.get(name) else {
            let version = manifest.get("attnmap_version").and_then(Value::as_str).unwrap_or("an older version");
            return Err(bad(format!("manifest.json has no {name:?}: it was written by attnmap {version}, before dumps carried what heads and find read; {}", redump(is_corpus, corpus))));
        };
        let values: Vec<T> = serde_json::from_value(value.clone()).map_err(|e| bad(format!("manifest.json {name:?}: {e}; the dump is damaged, {}", redump(is_corpus, corpus))))?;
        if values.len() != seq {
            return Err(bad(format!("manifest.json has {} {name} but \"seq_len\" is {seq}; the dump is damaged, {}", values.len(), redump(is_corpus, corpus))));
        }
        Ok(values)
    }
    let tokens: Vec<String> = field(manifest, "tokens", seq, dir, is_corpus, corpus)?;
    Ok(Encoded {
        text: manifest.get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
        pair: manifest.get("pair").and_then(Value::as_str).map(str::to_string),
        ids: field(manifest, "ids", seq, dir, is_corpus, corpus)?,
        type_ids: field(manifest, "type_ids", seq, dir, is_corpus, corpus)?,
        labels: field(manifest, "labels", seq, dir, is_corpus, corpus)?,
        tokens,
        dropped: manifest.get("truncated_tokens").and_then(Value::as_u64).unwrap_or(0) as usize,
        sequence: field(manifest, "sequence_ids", seq, dir, is_corpus, corpus)?,
        word_ids: field(manifest, "word_ids", seq, dir, is_corpus, corpus)?,
        offsets: field(manifest, "offsets", seq, dir, is_corpus, corpus)?,
        special: field(manifest, "special", seq, dir, is_corpus, corpus)?,
    })
}
