//! `attnmap find`: calibration on random word pairs with the real MiniLM (false
//! passes as rare as Benjamini–Hochberg promises, p-values uniform under the
//! null), a true relation found, numpy's previous-token heads found on the
//! reference attentions, and the command's outputs and errors.

use attnmap::analysis::find::{pair_candidates, results, Builtin, Problem, Rng};
use attnmap::analysis::stats::Positions;
use attnmap::analysis::words::{self, Word};
use attnmap::capture::Capture;

use crate::heads::{attentions, expected};
use crate::helpers::{attnmap, fixtures, loaded, minilm_dir, stderr};

/// Plain sentences of 10-16 words: the probe set random pairs are drawn from.
const PROBES: [&str; 8] = [
    "The old fisherman mended his nets while the gulls circled over the harbour.",
    "After the storm, the children collected shells along the quiet beach.",
    "My neighbour grows tomatoes, beans and sunflowers in a tiny garden.",
    "The committee postponed its decision until the auditors finished their report.",
    "A violinist practised scales in the empty hall every single morning.",
    "We missed the last train and walked home through the sleeping city.",
    "The recipe calls for flour, butter, two eggs and a pinch of salt.",
    "Engineers inspected the bridge after a truck struck one of its pillars.",
];

/// P(X >= k) for X ~ binomial(n, p), exactly (log-space terms).
fn binomial_upper_tail(n: u64, p: f64, k: u64) -> f64 {
    let ln_choose = |n: u64, r: u64| -> f64 { (1..=r).map(|i| ((n - r + i) as f64).ln() - (i as f64).ln()).sum() };
    (k..=n).map(|x| (ln_choose(n, x) + x as f64 * p.ln() + (n - x) as f64 * (1.0 - p).ln()).exp()).sum()
}

/// The smallest k with P(X >= k) <= level.
fn upper_bound(n: u64, p: f64, level: f64) -> u64 {
    (0..=n).find(|&k| binomial_upper_tail(n, p, k) <= level).unwrap_or(n + 1)
}

/// One probe text on MiniLM: its maps `[72, n, n]`, words and the words a pair may use.
struct Text {
    maps: Vec<f32>,
    n: usize,
    words: Vec<Word>,
    label_counts: Vec<usize>,
}

fn probe_texts() -> Vec<Text> {
    let session = loaded(&minilm_dir());
    PROBES
        .iter()
        .map(|text| {
            let input = session.tokenizer.encode(text, None).unwrap();
            let capture = Capture::run(session.model.as_ref(), &input, None, &[]).unwrap().capture;
            let words = words::words(&input);
            // Which occurrence of its text each word is ("the#2").
            let label_counts = (0..words.len()).map(|i| words[..=i].iter().filter(|w| w.label == words[i].label).count()).collect();
            Text { maps: capture.dense().unwrap(), n: input.len(), words, label_counts }
        })
        .collect()
}

/// A random pair of a text: `from` uniform over non-special words, `to` uniform
/// over the words the null draws from (the null's promise holds exactly then).
fn random_pair(text: &Text, rng: &mut Rng) -> (usize, usize) {
    let eligible: Vec<usize> = (0..text.words.len()).filter(|&w| !text.words[w].special).collect();
    let from = eligible[rng.below(eligible.len())];
    let others: Vec<usize> = eligible.iter().copied().filter(|&w| w != from).collect();
    (from, others[rng.below(others.len())])
}

const HEADS: usize = 72;
const ALPHA: f64 = 0.05;
/// Enough trials that one head alone can pass (1 / (K + 1) < alpha / 72).
const TRIALS: usize = 1999;

#[test]
fn random_pairs_pass_as_rarely_as_bh_promises_and_their_p_values_are_uniform() {
    let texts = probe_texts();
    let seeds = 200u64;
    let mut runs_with_a_pass = 0u64;
    let mut small = vec![0u64; HEADS];
    let mut below_half = vec![0u64; HEADS];
    for seed in 0..seeds {
        let mut rng = Rng::stream(0xCA1B, seed);
        let mut problem = Problem::new(HEADS);
        for text in &texts {
            for _ in 0..2 {
                let (from, to) = random_pair(text, &mut rng);
                let from: Vec<usize> = text.words[from].tokens.clone().collect();
                let to: Vec<usize> = text.words[to].tokens.clone().collect();
                problem.add_pair(&text.maps, text.n, &from, &pair_candidates(&text.words, &from, &to, false), 0);
            }
        }
        let heads = results(&problem.observed(), &problem.keys_null(TRIALS, seed), 12, ALPHA);
        if heads.iter().any(|h| h.pass) {
            runs_with_a_pass += 1;
        }
        for (h, head) in heads.iter().enumerate() {
            small[h] += (head.p <= 0.05) as u64;
            below_half[h] += (head.p <= 0.5) as u64;
        }
    }
    // Under the global null BH (Simes) makes "at least one pass" a 5% event per run;
    // seeds are independent runs, so the count is binomial(200, <= 0.05).
    let bound = upper_bound(seeds, ALPHA, 1e-4);
    assert!(runs_with_a_pass < bound, "{runs_with_a_pass} of {seeds} runs of random pairs had a passing head (binomial(200, 0.05) reaches {bound} with probability < 1e-4)");
    // Each head's p-value is exactly uniform on {1, ..., K+1}/(K+1) under this null, so its
    // count of p <= 0.05 (and of p <= 0.5) over independent seeds is binomial; a union
    // bound over the 72 heads at 1e-6 each.
    let level = 1e-6 / HEADS as f64;
    let high_small = upper_bound(seeds, 0.05, level);
    let high_half = upper_bound(seeds, 0.5, level);
    let low_half = seeds - high_half;
    for h in 0..HEADS {
        assert!(small[h] < high_small, "head {h}: p <= 0.05 in {} of {seeds} runs (bound {high_small})", small[h]);
        assert!(below_half[h] < high_half && below_half[h] > low_half, "head {h}: p <= 0.5 in {} of {seeds} runs (expected within {low_half}..{high_half})", below_half[h]);
    }
    let pooled = small.iter().sum::<u64>() as f64 / (seeds as f64 * HEADS as f64);
    eprintln!("random pairs: {runs_with_a_pass} of {seeds} runs with a pass; pooled fraction of p <= 0.05: {pooled:.4}");
}

#[test]
fn random_pairs_through_the_command_rarely_pass() {
    let texts = probe_texts();
    let dir = tempfile::tempdir().unwrap();
    let model = minilm_dir();
    let seeds = 20u64;
    let mut runs_with_a_pass = 0;
    for seed in 0..seeds {
        let mut rng = Rng::stream(0xC0DE, seed);
        let mut lines = String::new();
        for (text, sentence) in texts.iter().zip(PROBES) {
            let name = |w: usize| format!("{}#{}", text.words[w].label, text.label_counts[w]);
            let pairs: Vec<serde_json::Value> = (0..2)
                .map(|_| {
                    let (from, to) = random_pair(text, &mut rng);
                    serde_json::json!({"from": name(from), "to": name(to)})
                })
                .collect();
            lines += &serde_json::json!({"text": sentence, "pairs": pairs}).to_string();
            lines.push('\n');
        }
        let file = dir.path().join(format!("pairs{seed}.jsonl"));
        std::fs::write(&file, lines).unwrap();
        let output = attnmap(
            &["-q", "find", "--pairs", file.to_str().unwrap(), "--model", model.to_str().unwrap(), "--trials", &TRIALS.to_string(), "--seed", &seed.to_string(), "--json"],
            &[],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["queries"], 16);
        let passing = report["heads"].as_array().unwrap().iter().filter(|h| h["pass"] == true).count();
        runs_with_a_pass += (passing > 0) as u64;
    }
    let bound = upper_bound(seeds, ALPHA, 1e-3);
    assert!(runs_with_a_pass < bound, "{runs_with_a_pass} of {seeds} runs had a passing head (binomial(20, 0.05) reaches {bound} with probability < 1e-3)");
}

#[test]
fn previous_token_on_real_text_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let probes = dir.path().join("probes.txt");
    std::fs::write(&probes, PROBES.join("\n")).unwrap();
    let output = attnmap(&["-q", "find", "previous-token", "--texts", probes.to_str().unwrap(), "--model", minilm_dir().to_str().unwrap(), "--json", "--threshold", "0.5"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let heads = report["heads"].as_array().unwrap();
    // MiniLM's layer 0 head 2 puts nearly all its weight on the previous token.
    let l0h2 = &heads[2];
    assert!(l0h2["pass"] == true && l0h2["score"].as_f64().unwrap() > 0.9, "{l0h2}");
    assert_eq!(report["trials"], 1000);
    assert!(report["summary"].as_str().unwrap().starts_with("previous-token on 8 texts"), "{}", report["summary"]);
    let threshold = &report["threshold"];
    assert!(threshold["heads"].as_u64().unwrap() >= 1 && threshold["null_high"].as_u64().unwrap() == 0, "{threshold}");
}

/// numpy (scripts/heads_reference.py, 20000 trials of its own generator) and attnmap
/// (1000 trials of SplitMix64) agree on which heads are previous-token heads wherever
/// numpy's q is not near the bar; scores agree to float tolerance.
#[test]
fn previous_token_heads_match_numpy_on_reference_attentions() {
    let expected = expected();
    let reference = &expected["previous_token"];
    let session = loaded(&minilm_dir());
    let mut problem = Problem::new(HEADS);
    for case in reference["cases"].as_array().unwrap() {
        let name = case.as_str().unwrap().trim_start_matches("minilm/");
        let entry = expected["cases"].as_array().unwrap().iter().find(|c| c["model"] == "minilm" && c["case"] == name).unwrap();
        let input = session.tokenizer.encode(entry["text"].as_str().unwrap(), entry["pair"].as_str()).unwrap();
        let maps = attentions(entry["file"].as_str().unwrap());
        problem.add_builtin(&maps, &Positions::tokens(&input), false, Builtin::PreviousToken);
    }
    let observed = problem.observed();
    let heads = results(&observed, &problem.keys_null(1000, 0), 12, ALPHA);
    let numpy_q: Vec<f64> = serde_json::from_value(reference["q"].clone()).unwrap();
    let numpy_score: Vec<f64> = serde_json::from_value(reference["score"].clone()).unwrap();
    let mut clear = 0;
    for (h, head) in heads.iter().enumerate() {
        assert!((head.score - numpy_score[h]).abs() < 1e-5, "head {h}: score {} vs numpy {}", head.score, numpy_score[h]);
        // Monte Carlo noise moves q by far less than a factor of two away from the bar.
        if numpy_q[h] <= ALPHA / 2.0 {
            assert!(head.pass, "head {h} passes in numpy (q {}) but not here (q {})", numpy_q[h], head.q);
            clear += 1;
        } else if numpy_q[h] >= ALPHA * 2.0 {
            assert!(!head.pass, "head {h} fails in numpy (q {}) but passes here (q {})", numpy_q[h], head.q);
        }
    }
    assert!(clear >= 3, "the reference should hold several clear previous-token heads");
}

#[test]
fn output_is_reproducible_and_the_picture_outlines_passing_heads() {
    let dir = tempfile::tempdir().unwrap();
    let model = minilm_dir();
    let text = "The old fisherman mended his nets while the gulls circled over the harbour.";
    let run = |seed: &str| attnmap(&["-q", "find", "previous-token", text, "--model", model.to_str().unwrap(), "--seed", seed, "--json"], &[]);
    let (a, b, c) = (run("3"), run("3"), run("4"));
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout, "the same seed must print the same numbers");
    assert_ne!(a.stdout, c.stdout, "another seed draws other trials");
    let out = dir.path().join("found");
    let output = attnmap(&["-q", "find", "previous-token", text, "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap(), "--top", "5"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.lines().next().unwrap().contains("of 72 heads pass at FDR 0.05 (null: 1000 random-key trials)"), "{printed}");
    assert!(std::fs::read(out.join("scores.png")).unwrap().starts_with(b"\x89PNG"));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("find.json")).unwrap()).unwrap();
    assert_eq!(saved["pattern"], "previous-token");
}

#[test]
fn bad_input_is_one_line_naming_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let model = minilm_dir();
    let model = model.to_str().unwrap();
    let llama = fixtures().join("tiny-llama");
    let llama = llama.to_str().unwrap();
    let write = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_string()
    };
    let empty = write("empty.txt", "\n");
    let malformed = write("malformed.jsonl", "{\"text\": \"The cat sat.\", \"pairs\": [{\"from\": \"cat\", \"to\": \"sat\"}]}\n{\"text\": \"oops\"\n");
    let missing = write("missing.jsonl", "{\"text\": \"The cat sat.\", \"pairs\": [{\"from\": \"cat\", \"to\": \"sat\"}]}\n\n{\"text\": \"The dog ran.\", \"pairs\": [{\"from\": \"dog\", \"to\": \"cat\"}]}\n");
    let later = write("later.jsonl", "{\"text\": \"The quick brown fox jumps\", \"pairs\": [{\"from\": \"quick\", \"to\": \"fox\"}]}\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["find", "previous-token", "--texts", &empty, "--model", model], "holds no texts"),
        (vec!["find", "--pairs", &empty, "--model", model], "holds no lines"),
        (vec!["find", "sideways-token", "hello there", "--model", model], "unknown pattern \"sideways-token\""),
        (vec!["find", "self", "hello there", "--trials", "0", "--model", model], "--trials 0"),
        (vec!["find", "self", "hello there", "--alpha", "0", "--model", model], "--alpha 0"),
        (vec!["find", "self", "hello there", "--alpha", "1.5", "--model", model], "--alpha 1.5"),
        (vec!["find", "--pairs", &malformed, "--model", model], "line 2"),
        (vec!["find", "--pairs", &missing, "--model", model], "line 3: to \"cat\""),
        (vec!["find", "--pairs", &later, "--model", llama], "line 1: to \"fox\": comes after"),
        (vec!["find", "next-token", "The quick brown fox", "--model", llama], "causal"),
    ];
    for (args, needle) in cases {
        let output = attnmap(&args, &[]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
        let errors: Vec<&str> = message.lines().filter(|l| !l.starts_with("attnmap: local") && !l.starts_with("attnmap: model")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {message}");
        assert!(errors[0].starts_with("attnmap: error: ") && errors[0].contains(needle), "{args:?}: {message}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn induction_on_repeated_random_tokens_and_the_shuffle_null_run() {
    let llama = fixtures().join("tiny-llama");
    let output = attnmap(&["-q", "find", "induction", "--repeat-random", "8", "--model", llama.to_str().unwrap(), "--json", "--seed", "5"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["texts"], 20);
    // Every token of the second half has an earlier copy (a repeat inside the random half adds more).
    assert!(report["queries"].as_u64().unwrap() >= 20 * 7, "{}", report["queries"]);
    let text = "The old fisherman mended his nets while the gulls circled over the harbour.";
    let output = attnmap(&["-q", "find", "previous-token", text, "--model", minilm_dir().to_str().unwrap(), "--null", "shuffle", "--shuffles", "4", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["null"].as_str(), report["trials"].as_u64()), (Some("shuffle"), Some(4)));
    // The previous-token head scores ~1 in place; shuffled, the tokens it followed are elsewhere.
    let l0h2 = &report["heads"][2];
    assert!(l0h2["score"].as_f64().unwrap() > 0.9 && l0h2["null_mean"].as_f64().unwrap() < 0.5, "{l0h2}");
    assert!((l0h2["p"].as_f64().unwrap() - 0.2).abs() < 1e-12, "{l0h2}");
    assert!(report["summary"].as_str().unwrap().contains("(null: 4 shuffles of each text's tokens)"), "{}", report["summary"]);
    let output = attnmap(&["-q", "find", "previous-token", text, "--words", "--null", "shuffle", "--model", minilm_dir().to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(2), "--words with the shuffle null is refused");
}
