//! `attnmap find`: which heads do a relation (a built-in one or your word
//! pairs), each with a p-value and a Benjamini–Hochberg q-value against a null,
//! and how many heads pass a score by chance. Texts run one at a time: each
//! text's maps are reduced to the weights the null needs, then dropped.

use std::path::{Path, PathBuf};

use crate::analysis::find::{pair_candidates, results, threshold_count, Builtin, Problem, Query, Rng};
use crate::analysis::words::Word;
use crate::capture::Capture;
use crate::cli::{FindArgs, NullArg};
use crate::error::{Error, Result};
use crate::output::{check_target_dir, write_staged, write_stdout, StagedDir};
use crate::render::find_report::{self, FindReport};
use crate::render::Colormap;
use crate::tokenize::Encoded;
use crate::ui::Ui;

use super::heads::{layers_by_heads, probe_texts, OpenText, Source};
use super::Session;

/// How many texts `--repeat-random` makes.
const REPEAT_RANDOM_TEXTS: usize = 20;
/// Keeps the shuffles' draws apart from the keys null's for the same --seed.
const SHUFFLE_STREAM: u64 = 0x5348_5546_464C_4521;
const REPEAT_STREAM: u64 = 0x5245_5045_4154_2121;

/// What the relation is.
enum Relation {
    Builtin(Builtin),
    Pairs(PathBuf),
}

/// One text of the run, with its pairs when the relation is word pairs.
struct Probe {
    text: String,
    pair: Option<String>,
    /// `--pairs`: (line number, pairs of that line).
    pairs: Option<(usize, Vec<PairSpec>)>,
    /// `--repeat-random`: the input is made of ids, not text.
    encoded: Option<Encoded>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct PairSpec {
    from: WordRef,
    to: WordRef,
}

/// A word by its text ("it", "it#2") or a [start, end) character span of the text.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum WordRef {
    Word(String),
    Span([usize; 2]),
}

impl WordRef {
    fn describe(&self) -> String {
        match self {
            WordRef::Word(word) => format!("{word:?}"),
            WordRef::Span([start, end]) => format!("[{start}, {end}]"),
        }
    }
}

pub fn run(args: &FindArgs, ui: &Ui) -> Result<()> {
    let relation = relation(args)?;
    check_numbers(args)?;
    super::check_picture_flags(&args.style, args.out.as_deref(), args.force, false)?;
    let out_parent = match &args.out {
        Some(dir) => Some(check_target_dir(dir, args.force)?),
        None => None,
    };
    if args.null == NullArg::Shuffle && args.probe.corpus.is_some() {
        return Err(Error::Usage("--null shuffle runs the model on shuffled texts, and --corpus has only the dumps' maps; use the keys null (the default) with --corpus, or --model with --texts".into()));
    }
    let mut probes = match &relation {
        Relation::Pairs(path) => read_pairs_file(path)?,
        Relation::Builtin(_) if args.repeat_random.is_some() || args.probe.corpus.is_some() => Vec::new(),
        Relation::Builtin(_) => probe_texts(args.text.as_deref(), &args.probe)?
            .into_iter()
            .map(|(text, pair)| Probe { text, pair, pairs: None, encoded: None })
            .collect(),
    };
    if args.null == NullArg::Shuffle && args.probe.words && matches!(relation, Relation::Builtin(_)) {
        return Err(Error::Usage("--null shuffle moves tokens, which breaks words apart; leave out --words (word pairs from --pairs work with either null)".into()));
    }
    let source = Source::open(&args.probe, &args.model, ui)?;
    let (layers, heads_per_layer, causal) = source.shape();
    if causal && matches!(relation, Relation::Builtin(Builtin::NextToken)) {
        return Err(Error::Usage("next-token cannot be found in a causal model: a decoder's query never sees the token after it; try previous-token".into()));
    }
    match (&source, args.repeat_random) {
        (Source::Model(session), Some(length)) => probes = repeat_random(session, length, args.seed)?,
        (Source::Corpus(_), _) => probes = corpus_probes(&source, probes, &relation)?,
        _ => {}
    }
    let total_heads = layers * heads_per_layer;
    let mut problem = Problem::new(total_heads);
    // Token-level (from, to) of every item, per text, for the shuffle null.
    let mut token_relations: Vec<(Encoded, Vec<(Vec<usize>, Vec<usize>)>)> = Vec::new();
    let bar = ui.progress_bar(probes.len() as u64, "texts");
    let by_words = args.probe.words && matches!(relation, Relation::Builtin(_));
    for (index, probe) in probes.iter().enumerate() {
        let mut text = match (&probe.encoded, &source) {
            (Some(encoded), Source::Model(session)) => OpenText::run(session, encoded.clone(), by_words)?,
            _ => source.open_text(index, &(probe.text.clone(), probe.pair.clone()), by_words)?,
        };
        // The queries need only the tokens; their weights are then read a layer at a time.
        let queries = match (&relation, &probe.pairs) {
            (Relation::Builtin(builtin), _) => Query::builtin(&text.positions, causal, *builtin),
            (Relation::Pairs(path), Some((line, pairs))) => pairs
                .iter()
                .map(|spec| {
                    let (from, candidates) = resolve_pair(path, *line, spec, &text.input, &text.words, causal)?;
                    Ok(Query { from, pool: candidates, targets: vec![0] })
                })
                .collect::<Result<Vec<_>>>()?,
            (Relation::Pairs(_), None) => Vec::new(),
        };
        if args.null == NullArg::Shuffle {
            let relations = queries.iter().map(|q| (q.from.clone(), q.targets.iter().flat_map(|&t| q.pool[t].clone()).collect())).collect();
            token_relations.push((text.input.clone(), relations));
        }
        problem.start_text(queries);
        let n = text.positions.len();
        while let Some((layer, maps)) = text.next_layer()? {
            problem.add_layer(&maps, layer * heads_per_layer, n);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if problem.items.is_empty() {
        let name = pattern_name(&relation);
        return Err(Error::Input(format!("{name} names no query in these texts (duplicate-token and induction need a token that repeats; try --repeat-random 20)")));
    }
    let observed = problem.observed();
    let null = match args.null {
        NullArg::Keys => problem.keys_null(args.trials, args.seed),
        NullArg::Shuffle => match &source {
            Source::Model(session) => shuffle_null(session, &token_relations, args.shuffles, args.seed, total_heads, ui)?,
            // Refused above: a shuffle needs forward passes.
            Source::Corpus(_) => return Err(Error::Usage("--null shuffle needs --model".into())),
        },
    };
    let smallest_p = 1.0 / (null.len() + 1) as f64;
    if !ui.quiet && smallest_p > args.alpha / total_heads as f64 {
        // BH lets the best head pass alone only when its p is <= alpha / heads.
        let needed = (total_heads as f64 / args.alpha).ceil() as usize;
        eprintln!(
            "attnmap: note: with {} trials the smallest p is {smallest_p:.2e}, above alpha / heads = {:.2e}: a head passes only together with others; {needed} {} let one pass alone",
            null.len(),
            args.alpha / total_heads as f64,
            if args.null == NullArg::Keys { "trials (--trials)" } else { "shuffles (--shuffles)" }
        );
    }
    let heads = results(&observed, &null, heads_per_layer, args.alpha);
    let report = FindReport {
        pattern: pattern_name(&relation),
        model: source.model_name(),
        null: match args.null {
            NullArg::Keys => "keys",
            NullArg::Shuffle => "shuffle",
        },
        trials: null.len(),
        seed: args.seed,
        alpha: args.alpha,
        texts: probes.len(),
        queries: problem.items.len(),
        // Word pairs are words whatever --words says.
        level: if args.probe.words || matches!(relation, Relation::Pairs(_)) { "words" } else { "tokens" },
        layers,
        heads_per_layer,
        heads,
        threshold: args.threshold.map(|t| threshold_count(&observed, &null, t)),
    };
    if let (Some(dir), Some(parent)) = (&args.out, out_parent) {
        write_pictures(dir, &parent, &report, args)?;
    }
    let text = if args.json { find_report::json(&report) } else { find_report::text(&report, args.top) };
    write_stdout(text.as_bytes())
}

/// The texts of `--corpus`: its own for a built-in relation; with `--pairs`, the pairs
/// file's, which must be the corpus's texts in order (`dump --texts` reads the pairs file's
/// "text" and "pair" and ignores its "pairs").
fn corpus_probes(source: &Source, probes: Vec<Probe>, relation: &Relation) -> Result<Vec<Probe>> {
    let texts = source.texts().unwrap_or_default();
    let Relation::Pairs(path) = relation else {
        return Ok(texts.into_iter().map(|(text, pair)| Probe { text, pair, pairs: None, encoded: None }).collect());
    };
    if probes.len() != texts.len() {
        return Err(Error::Input(format!(
            "--pairs {} holds {} texts but the corpus has {}; dump the pairs file itself (attnmap dump --texts {} --out DIR) and give that DIR to --corpus",
            path.display(),
            probes.len(),
            texts.len(),
            path.display()
        )));
    }
    for (position, (probe, (text, pair))) in probes.iter().zip(&texts).enumerate() {
        if (&probe.text, &probe.pair) != (text, pair) {
            let line = probe.pairs.as_ref().map_or(0, |(line, _)| *line);
            return Err(Error::Input(format!(
                "--pairs {} line {line} is not text {} of the corpus ({text:?}); dump the pairs file itself (attnmap dump --texts {} --out DIR) and give that DIR to --corpus",
                path.display(),
                position + 1,
                path.display()
            )));
        }
    }
    Ok(probes)
}

/// PATTERN or --pairs, checked before anything is loaded.
fn relation(args: &FindArgs) -> Result<Relation> {
    match (&args.pattern, &args.pairs) {
        (Some(pattern), Some(_)) => Err(Error::Usage(format!(
            "give either a PATTERN or --pairs FILE, not both (got PATTERN {pattern:?}; with --pairs the texts come from the file)"
        ))),
        (None, Some(path)) => Ok(Relation::Pairs(path.clone())),
        (Some(pattern), None) => match Builtin::from_name(pattern) {
            Some(builtin) => {
                if args.repeat_random.is_some() && args.text.is_some() {
                    return Err(Error::Usage("--repeat-random makes its own texts; leave out TEXT".into()));
                }
                Ok(Relation::Builtin(builtin))
            }
            None => Err(Error::Usage(format!(
                "unknown pattern {pattern:?}; choose one of {}, or give your own word pairs with --pairs FILE",
                Builtin::NAMES.join(", ")
            ))),
        },
        (None, None) => Err(Error::Usage(format!("give a PATTERN ({}) or --pairs FILE", Builtin::NAMES.join(", ")))),
    }
}

fn check_numbers(args: &FindArgs) -> Result<()> {
    if args.trials < 1 {
        return Err(Error::Usage("--trials 0: the null needs at least 1 trial (1000 gives p-values down to 0.001)".into()));
    }
    // Each null has its own count; the other's would be accepted and ignored.
    if args.null == NullArg::Shuffle && args.trials != 1000 {
        return Err(Error::Usage("--trials counts the keys null's draws; with --null shuffle, set --shuffles instead".into()));
    }
    if args.null == NullArg::Keys && args.shuffles != 20 {
        return Err(Error::Usage("--shuffles counts the shuffle null's passes; add --null shuffle, or set --trials for the keys null".into()));
    }
    if args.shuffles < 1 {
        return Err(Error::Usage("--shuffles 0: the shuffle null needs at least 1 shuffle (20 is the default)".into()));
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(Error::Usage(format!("--alpha {} must lie strictly between 0 and 1 (0.05 is usual)", args.alpha)));
    }
    if args.threshold.is_some_and(|t| !t.is_finite()) {
        return Err(Error::Usage("--threshold must be a finite number".into()));
    }
    if args.repeat_random == Some(0) {
        return Err(Error::Usage("--repeat-random 0: give the length of the random half, e.g. --repeat-random 20".into()));
    }
    Ok(())
}

fn pattern_name(relation: &Relation) -> String {
    match relation {
        Relation::Builtin(builtin) => builtin.name().to_string(),
        Relation::Pairs(path) => format!("pairs from {}", path.display()),
    }
}

/// Read `--pairs FILE`: JSON lines {"text", "pair"?, "pairs": [{"from", "to"}, ...]}.
fn read_pairs_file(path: &Path) -> Result<Vec<Probe>> {
    let content = std::fs::read_to_string(path).map_err(|e| Error::Input(format!("cannot read --pairs {}: {e}", path.display())))?;
    #[derive(serde::Deserialize)]
    struct PairsLine {
        text: String,
        pair: Option<String>,
        pairs: Vec<PairSpec>,
    }
    let mut probes = Vec::new();
    for (index, line) in content.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: PairsLine = serde_json::from_str(line).map_err(|e| {
            Error::Input(format!(
                "{} line {number}: not a JSON object {{\"text\": ..., \"pairs\": [{{\"from\": ..., \"to\": ...}}]}} ({e})",
                path.display()
            ))
        })?;
        if parsed.text.trim().is_empty() {
            return Err(Error::Input(format!("{} line {number}: the text is empty", path.display())));
        }
        if parsed.pairs.is_empty() {
            return Err(Error::Input(format!("{} line {number}: \"pairs\" is empty; give at least one {{\"from\": ..., \"to\": ...}}", path.display())));
        }
        probes.push(Probe { text: parsed.text, pair: parsed.pair, pairs: Some((number, parsed.pairs)), encoded: None });
    }
    if probes.is_empty() {
        return Err(Error::Input(format!("--pairs {} holds no lines; write one JSON object per line", path.display())));
    }
    Ok(probes)
}

/// The `from` tokens of a pair and the candidates its target is drawn from (see `pair_candidates`).
fn resolve_pair(path: &Path, line: usize, spec: &PairSpec, input: &Encoded, words: &[Word], causal: bool) -> Result<(Vec<usize>, Vec<Vec<usize>>)> {
    let at = |what: &str, reference: &WordRef, message: &str| Error::Input(format!("{} line {line}: {what} {}: {message}", path.display(), reference.describe()));
    let tokens_of = |what: &str, reference: &WordRef| -> Result<Vec<usize>> {
        match reference {
            WordRef::Word(name) => {
                let (word, nth) = match name.rsplit_once('#') {
                    Some((word, n)) if !word.is_empty() => match n.parse::<usize>() {
                        Ok(n) if n >= 1 => (word, n),
                        _ => return Err(at(what, reference, "after '#' write the occurrence, from 1 (\"it#2\")")),
                    },
                    _ => (name.as_str(), 1),
                };
                // SentencePiece and byte-level words carry their leading space in their span.
                let found: Vec<&Word> = words.iter().filter(|w| !w.special && w.label.trim() == word).collect();
                match found.get(nth - 1) {
                    Some(w) => Ok(w.tokens.clone().collect()),
                    None if found.is_empty() => Err(at(what, reference, "no word of the text reads so (words are split as the tokenizer splits them; give a [start, end] character span instead)")),
                    None => Err(at(what, reference, &format!("the text has only {} such word(s)", found.len()))),
                }
            }
            WordRef::Span([start, end]) => {
                let tokens: Vec<usize> = (0..input.len())
                    .filter(|&t| input.sequence[t] == Some(0) && !input.special[t] && input.offsets[t].0 < *end && input.offsets[t].1 > *start)
                    .collect();
                if start >= end || tokens.is_empty() {
                    return Err(at(what, reference, "matches no token of the text (a span is [start, end) in characters, as Python indexes a str)"));
                }
                Ok(tokens)
            }
        }
    };
    let from = tokens_of("from", &spec.from)?;
    let to = tokens_of("to", &spec.to)?;
    let first_from = from.iter().copied().min().unwrap_or(0);
    if causal && to.iter().any(|&t| t > first_from) {
        return Err(at("to", &spec.to, &format!("comes after \"from\" {}, and a causal model cannot attend to later tokens", spec.from.describe())));
    }
    let candidates = pair_candidates(words, &from, &to, causal);
    Ok((from, candidates))
}

/// `--repeat-random N`: texts of N random ordinary tokens, then the same N again.
fn repeat_random(session: &Session, length: usize, seed: u64) -> Result<Vec<Probe>> {
    let tokenizer = &session.loaded.tokenizer;
    let vocab = session.loaded.model.info().vocab_size;
    let ids: Vec<u32> = tokenizer.ordinary_ids().into_iter().filter(|&id| (id as usize) < vocab).collect();
    if ids.is_empty() {
        return Err(Error::Input("the tokenizer has no ordinary tokens to draw from".into()));
    }
    if 2 * length + 4 > tokenizer.max_len() {
        return Err(Error::Usage(format!("--repeat-random {length}: twice that does not fit in this model's {} tokens", tokenizer.max_len())));
    }
    (0..REPEAT_RANDOM_TEXTS)
        .map(|index| {
            let mut rng = Rng::stream(seed ^ REPEAT_STREAM, index as u64);
            let half: Vec<u32> = (0..length).map(|_| ids[rng.below(ids.len())]).collect();
            let content: Vec<u32> = half.iter().chain(&half).copied().collect();
            let encoded = tokenizer.encode_ids(&content)?;
            Ok(Probe { text: encoded.text.clone(), pair: None, pairs: None, encoded: Some(encoded) })
        })
        .collect()
}

/// `--null shuffle`: each text's non-special tokens shuffled within their own
/// segment, a forward pass per shuffle, the relation's tokens followed to their
/// new places. Trial s averages shuffle s of every text.
fn shuffle_null(session: &Session, texts: &[(Encoded, Vec<(Vec<usize>, Vec<usize>)>)], shuffles: usize, seed: u64, heads: usize, ui: &Ui) -> Result<Vec<Vec<f64>>> {
    let mut totals = vec![vec![0f64; heads]; shuffles];
    let items: usize = texts.iter().map(|(_, r)| r.len()).sum();
    let bar = ui.progress_bar((texts.len() * shuffles) as u64, "shuffles");
    for (text_index, (input, relations)) in texts.iter().enumerate() {
        if relations.is_empty() {
            bar.inc(shuffles as u64);
            continue;
        }
        let n = input.len();
        for (shuffle, total) in totals.iter_mut().enumerate() {
            let mut rng = Rng::stream(seed ^ SHUFFLE_STREAM, (text_index * shuffles + shuffle) as u64);
            // new_position[old] = where token `old` went.
            let mut new_position: Vec<usize> = (0..n).collect();
            for segment in [Some(0u8), Some(1u8)] {
                let places: Vec<usize> = (0..n).filter(|&t| !input.special[t] && input.sequence[t] == segment).collect();
                let mut moved = places.clone();
                rng.shuffle(&mut moved);
                for (&old, &new) in places.iter().zip(&moved) {
                    new_position[old] = new;
                }
            }
            let shuffled = permute(input, &new_position);
            let capture = Capture::run(session.loaded.model.as_ref(), &shuffled, None, &[])?.capture;
            let maps = capture.dense().ok_or_else(|| Error::Input("the capture is missing layers".into()))?;
            for (from, to) in relations {
                for (head, slot) in total.iter_mut().enumerate() {
                    let map = &maps[head * n * n..(head + 1) * n * n];
                    let mut sum = 0f64;
                    for &f in from {
                        for &t in to {
                            sum += map[new_position[f] * n + new_position[t]] as f64;
                        }
                    }
                    *slot += sum / from.len() as f64;
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    for total in &mut totals {
        total.iter_mut().for_each(|v| *v /= items.max(1) as f64);
    }
    Ok(totals)
}

/// The input with token `old` moved to `new_position[old]` (specials stay put).
fn permute(input: &Encoded, new_position: &[usize]) -> Encoded {
    fn apply<T: Clone>(values: &[T], new_position: &[usize]) -> Vec<T> {
        let mut out = values.to_vec();
        for (old, &new) in new_position.iter().enumerate() {
            out[new] = values[old].clone();
        }
        out
    }
    Encoded {
        ids: apply(&input.ids, new_position),
        tokens: apply(&input.tokens, new_position),
        labels: apply(&input.labels, new_position),
        offsets: apply(&input.offsets, new_position),
        ..input.clone()
    }
}

/// scores.png (passing heads outlined, each cell labelled with its score) and find.json.
fn write_pictures(dir: &Path, parent: &Path, report: &FindReport, args: &FindArgs) -> Result<()> {
    let staging = StagedDir::new(dir, parent)?;
    let root = staging.path();
    let colormap = Colormap::from_name(&args.style.colormap).unwrap_or(Colormap::Viridis);
    let values: Vec<f32> = report.heads.iter().map(|h| h.score as f32).collect();
    let labels: Vec<Option<String>> = report.heads.iter().map(|h| Some(format!("{:.2}", h.score))).collect();
    let outlined: Vec<bool> = report.heads.iter().map(|h| h.pass).collect();
    let passing = outlined.iter().filter(|&&p| p).count();
    let title = format!("{} · score per head · {passing} outlined pass at FDR {}", report.pattern, report.alpha);
    let bytes = layers_by_heads(&values, &labels, &outlined, report.layers, report.heads_per_layer, &title, "score", colormap)?;
    write_staged(&root.join("scores.png"), &bytes)?;
    write_staged(&root.join("find.json"), find_report::json(report).as_bytes())?;
    staging.publish()
}
