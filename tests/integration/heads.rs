//! `attnmap heads`: the statistics equal numpy's (scripts/heads_reference.py) on the
//! committed reference attentions, and the command's outputs and errors.

use std::collections::HashMap;

use attnmap::analysis::stats::{Accumulator, HeadStats, Positions, COLUMNS};
use attnmap::analysis::words;

use crate::helpers::{attnmap, cases, case_model_dir, fixtures, loaded, minilm_dir, stderr};

/// numpy sums in f64 over the same f32 weights; only summation order differs.
const TOLERANCE: f64 = 1e-5;

pub fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("heads/expected.json")).unwrap()).unwrap()
}

/// The reference attentions of a case, `[layers, heads, n, n]`.
pub fn attentions(file: &str) -> Vec<f32> {
    let tensors = candle_core::safetensors::load(fixtures().join(file), &candle_core::Device::Cpu).unwrap();
    tensors["attentions"].flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn compare(label: &str, ours: &[HeadStats], theirs: &serde_json::Value) {
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{label}");
    for (head, reference) in ours.iter().zip(theirs) {
        for (column, name) in COLUMNS.iter().enumerate() {
            let expected = reference[name].as_f64();
            match (head.values[column], expected) {
                (None, None) => {}
                (Some(a), Some(b)) => assert!((a - b).abs() <= TOLERANCE, "{label} L{} H{} {name}: ours {a}, numpy {b}", head.layer, head.head),
                (a, b) => panic!("{label} L{} H{} {name}: ours {a:?}, numpy {b:?}", head.layer, head.head),
            }
        }
    }
}

#[test]
fn statistics_equal_numpy_on_reference_attentions() {
    let expected = expected();
    let all_cases: HashMap<(String, String), _> = cases().into_iter().map(|c| ((c.model.clone(), c.case.clone()), c)).collect();
    let checked = expected["cases"].as_array().unwrap();
    assert!(checked.len() >= 8);
    for reference in checked {
        let (model, name) = (reference["model"].as_str().unwrap(), reference["case"].as_str().unwrap());
        let label = format!("{model}/{name}");
        let case = &all_cases[&(model.to_string(), name.to_string())];
        let session = loaded(&case_model_dir(case));
        let input = session.tokenizer.encode(&case.text, case.pair.as_deref()).unwrap();
        let causal = reference["causal"].as_bool().unwrap();
        assert_eq!(session.model.info().causal, causal, "{label}");
        // The flags the statistics rest on agree with Python's tokenizer.
        let positions = Positions::tokens(&input);
        let flags = |key: &str| -> Vec<bool> { serde_json::from_value(reference[key].clone()).unwrap() };
        assert_eq!(positions.special, flags("special"), "{label} special flags");
        assert_eq!(positions.punct, flags("punct"), "{label} punctuation flags");
        let words = words::words(&input);
        let word_labels: Vec<String> = serde_json::from_value(reference["words"].clone()).unwrap();
        assert_eq!(words::labels(&words), word_labels, "{label} words");

        let (layers, heads) = (reference["layers"].as_u64().unwrap() as usize, reference["heads"].as_u64().unwrap() as usize);
        let maps = attentions(reference["file"].as_str().unwrap());
        let mut tokens = Accumulator::new(layers, heads);
        tokens.add(&maps, &positions, causal);
        compare(&label, &tokens.finish(), &reference["tokens"]);
        let mut by_words = Accumulator::new(layers, heads);
        by_words.add(&words::merge_maps(&maps, input.len(), &words), &Positions::words(&words), causal);
        compare(&format!("{label} (words)"), &by_words.finish(), &reference["word_level"]);
    }
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_command_prints_what_the_library_computes_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let probes = dir.path().join("probes.txt");
    std::fs::write(&probes, "The cat sat on the mat.\n{\"text\": \"Where did it go?\", \"pair\": \"Home, quickly.\"}\n\nThe WhirlyGigs arrived broken\n").unwrap();
    let model = minilm_dir();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = ["-q", "heads", "--texts", probes.to_str().unwrap(), "--model", model.to_str().unwrap()].map(String::from).to_vec();
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };
    let run = |extra: &[&str]| attnmap(&args(extra).iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let report = json(&run(&["--json"]));
    assert_eq!(report["texts"], 3);
    let heads = report["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 72);
    // Layer 0 head 2 of MiniLM looks at the previous token (about 1.0 on every text).
    let head = &heads[2];
    assert_eq!((head["layer"].as_u64(), head["head"].as_u64()), (Some(0), Some(2)));
    assert!(head["prev"].as_f64().unwrap() > 0.9, "{head}");
    assert_eq!(head["pattern"], "previous-token");

    let csv = run(&["--csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert_eq!(csv.lines().count(), 73);
    assert!(csv.starts_with("layer,head,entropy,entropy_norm,first,special,punct,self,prev,next,distance,max,pattern\n"));

    let table = run(&["--sort", "prev", "--top", "3"]);
    let table = String::from_utf8(table.stdout).unwrap();
    let rows: Vec<&str> = table.lines().skip(2).take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[0].trim_start().starts_with("0    2"), "{table}");
    assert!(table.contains("per layer") && table.contains("layer 5:"), "{table}");

    let out = dir.path().join("pictures");
    let output = run(&["--words", "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    for column in COLUMNS {
        let png = std::fs::read(out.join(format!("{column}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{column}");
    }
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("heads.json")).unwrap()).unwrap();
    assert_eq!(saved["level"], "words");
    assert!(std::fs::read_to_string(out.join("heads.csv")).unwrap().lines().count() == 73);
}

#[test]
fn bad_input_is_one_line_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = minilm_dir();
    let model = model.to_str().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let broken = dir.path().join("broken.txt");
    std::fs::write(&broken, "fine text\n{\"text\": \"unterminated\n").unwrap();
    for (args, needle) in [
        (vec!["heads", "--texts", empty.to_str().unwrap(), "--model", model], "holds no texts"),
        (vec!["heads", "--texts", broken.to_str().unwrap(), "--model", model], "line 2"),
        (vec!["heads", "--model", model], "give a TEXT"),
    ] {
        let output = attnmap(&args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.starts_with("attnmap: error: ") && message.contains(needle), "{message}");
        assert!(output.stdout.is_empty());
    }
}
