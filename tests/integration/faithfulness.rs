//! The maps must equal transformers' (eager attention, output_attentions=True).
//!
//! References come from scripts/make_fixtures.py: the real all-MiniLM-L6-v2
//! on texts of 10 to 865 tokens (truncated to 512) and a tiny random BERT.
//! Short cases store every map; long ones store sampled rows plus, for every
//! head, the column sums over all query rows, so every row is still checked.

use attnmap::capture::Capture;
use attnmap::hooks::{ActivationCache, HookFilter, HookKind, HookPoint};
use candle_core::{DType, Device, Tensor};

use crate::helpers::{case_model_dir, cases_of, loaded, minilm_dir, reference, Case};

/// Max |diff| allowed on attention weights. f32 softmax over f32 matmuls done
/// in a different order than PyTorch's lands within a few 1e-7 here; 1e-5 leaves
/// room for other CPUs' kernels while still catching any real error (the tanh
/// GELU instead of erf moves MiniLM's maps by ~2e-3).
pub(crate) const ATTENTION_TOLERANCE: f32 = 1e-5;

/// Hidden states are O(1)-O(10) in magnitude, accumulated over 6 layers.
const HIDDEN_TOLERANCE: f32 = 1e-4;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Check every case of one fixture model against its reference.
pub fn check_model(model: &str) {
    check_model_within(model, ATTENTION_TOLERANCE);
}

/// As [`check_model`], with another max |diff| on attention weights (say why where it is used).
pub fn check_model_within(model: &str, tolerance: f32) {
    for case in &cases_of(model) {
        check_case_within(case, tolerance);
    }
}

/// The deterministic key weights of `attention_rowproj` (see scripts/make_fixtures.py).
pub(crate) fn rowproj_weight(key: usize) -> f64 {
    ((key * 7919) % 1009) as f64 / 1009.0
}

pub fn check_case(case: &Case) {
    check_case_within(case, ATTENTION_TOLERANCE);
}

/// Check one case with `tolerance` as the max |diff| on attention weights.
pub fn check_case_within(case: &Case, tolerance: f32) {
    let loaded = loaded(&case_model_dir(case));
    let reference = reference(case);
    let input = loaded.tokenizer.encode(&case.text, case.pair.as_deref()).unwrap();
    let expected_ids: Vec<i64> = reference["input_ids"].to_vec1().unwrap();
    let expected_types: Vec<i64> = reference["token_type_ids"].to_vec1().unwrap();
    let ids: Vec<i64> = input.ids.iter().map(|&i| i as i64).collect();
    let types: Vec<i64> = input.type_ids.iter().map(|&i| i as i64).collect();
    assert_eq!(ids, expected_ids, "{}: token ids differ from transformers", case.case);
    assert_eq!(types, expected_types, "{}: token_type_ids differ", case.case);
    let dropped = case.truncated_from.map(|n| n - case.seq_len).unwrap_or(0);
    assert_eq!(input.dropped, dropped, "{}: truncation count", case.case);

    let run = Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap();
    let capture = &run.capture;
    let (layers, heads, seq) = (capture.layers, capture.heads, capture.seq);
    assert_eq!((layers, heads, seq), (case.layers, case.heads, case.seq_len));

    // Every row of every head is a distribution.
    for layer in 0..layers {
        for head in 0..heads {
            for row in capture.head(layer, head).unwrap().chunks(seq) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{} L{layer} H{head}: row sums to {sum}", case.case);
            }
        }
    }

    let dense = capture.dense().unwrap();
    // The largest |diff| on weights compared one by one, printed for the record (--nocapture).
    let worst_weight;
    if case.full {
        let expected: Vec<f32> = reference["attentions"].flatten_all().unwrap().to_vec1().unwrap();
        let diff = max_abs_diff(&dense, &expected);
        assert!(diff <= tolerance, "{}: max |diff| {diff:e} over all heads", case.case);
        worst_weight = diff;
    } else {
        let rows: Vec<i64> = reference["row_index"].to_vec1().unwrap();
        let expected_rows: Vec<f32> = reference["attention_rows"].flatten_all().unwrap().to_vec1().unwrap();
        let mut ours = Vec::with_capacity(expected_rows.len());
        for layer in 0..layers {
            for head in 0..heads {
                let map = capture.head(layer, head).unwrap();
                for &row in &rows {
                    ours.extend_from_slice(&map[row as usize * seq..(row as usize + 1) * seq]);
                }
            }
        }
        let diff = max_abs_diff(&ours, &expected_rows);
        assert!(diff <= tolerance, "{}: sampled rows max |diff| {diff:e}", case.case);
        worst_weight = diff;

        // Column sums over all rows: a wrong value in any row of any head moves one.
        // Each sum adds `seq` weights, each within `tolerance` of the reference, so the
        // bound that follows from the per-weight tolerance is seq * tolerance (the
        // triangle inequality). Not sqrt(seq): per-weight rounding errors are correlated
        // down a column (a key every query attends to is off the same way in every
        // row) and their size depends on the CPU's kernels (AVX2 and AVX-512 paths
        // round differently), so a statistical bound holds on one CPU and fails on
        // another. A real error (a row left out, a permuted position) moves a column
        // sum by a whole weight, ~1e-1.
        let expected_colsum: Vec<f64> = reference["attention_colsum"].flatten_all().unwrap().to_vec1().unwrap();
        let mut worst = 0f64;
        for layer in 0..layers {
            for head in 0..heads {
                let map = capture.head(layer, head).unwrap();
                for key in 0..seq {
                    let sum: f64 = (0..seq).map(|q| map[q * seq + key] as f64).sum();
                    let want = expected_colsum[(layer * heads + head) * seq + key];
                    worst = worst.max((sum - want).abs());
                }
            }
        }
        assert!(worst <= tolerance as f64 * seq as f64, "{}: column sums differ by {worst:e} (bound {:e})", case.case, tolerance as f64 * seq as f64);
        eprintln!("{}/{}: column sums max |diff| {worst:e}", case.model, case.case);

        // Row projections: each row against fixed pseudo-random key weights in [0, 1), so
        // a wrong value anywhere in any row moves that row's number. Each weight is within
        // `tolerance`, so a projection is within tolerance * sum of the key weights.
        if let Some(rowproj) = reference.get("attention_rowproj") {
            let expected: Vec<f64> = rowproj.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let mut worst = 0f64;
            let bound = tolerance as f64 * (0..seq).map(rowproj_weight).sum::<f64>();
            for layer in 0..layers {
                for head in 0..heads {
                    let map = capture.head(layer, head).unwrap();
                    for query in 0..seq {
                        let ours: f64 = (0..seq).map(|k| map[query * seq + k] as f64 * rowproj_weight(k)).sum();
                        worst = worst.max((ours - expected[(layer * heads + head) * seq + query]).abs());
                    }
                }
            }
            assert!(worst <= bound, "{}: row projections differ by {worst:e} (bound {bound:e})", case.case);
            eprintln!("{}/{}: row projections max |diff| {worst:e}", case.model, case.case);
        }
    }

    if capture.causal {
        for layer in 0..layers {
            for head in 0..heads {
                let map = capture.head(layer, head).unwrap();
                for query in 0..seq {
                    assert!(map[query * seq + query + 1..(query + 1) * seq].iter().all(|&v| v == 0.0), "{}: masked cells must be exactly 0", case.case);
                }
            }
        }
    }

    // Decoders' references may omit hidden states (transformers applies the final norm there).
    if let Some(expected_hidden) = reference.get("last_hidden_state") {
        let hidden: Vec<f32> = run.hidden.flatten_all().unwrap().to_vec1().unwrap();
        let expected_hidden: Vec<f32> = expected_hidden.flatten_all().unwrap().to_vec1().unwrap();
        let diff = max_abs_diff(&hidden, &expected_hidden);
        assert!(diff <= HIDDEN_TOLERANCE, "{}: last hidden state max |diff| {diff:e}", case.case);
    }
    eprintln!("{}/{}: {seq} tokens, attention max |diff| {worst_weight:e}", case.model, case.case);
}

#[test]
fn tiny_bert_matches_transformers() {
    assert!(cases_of("tiny-bert").len() >= 4);
    check_model("tiny-bert");
}

#[test]
fn minilm_matches_transformers_on_every_text() {
    let cases = cases_of("minilm");
    assert!(cases.len() >= 4);
    assert!(cases.iter().any(|c| c.seq_len > 300));
    assert!(cases.iter().any(|c| c.truncated_from.is_some_and(|n| n > 512)));
    for case in &cases {
        check_case(case);
    }
}

/// The final hidden states equal candle-transformers' own BertModel on the same weights.
#[test]
fn hidden_states_equal_candle_transformers_bert() {
    use candle_transformers::models::bert::{BertModel, Config};
    let dir = minilm_dir();
    let config: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap() };
    let upstream = BertModel::load(vb, &config).unwrap();
    let ours = loaded(&dir);
    let input = ours.tokenizer.encode("Attention maps are easy to over-read.", Some("So check them.")).unwrap();
    let ids = Tensor::new(input.ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let types = Tensor::new(input.type_ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let expected: Vec<f32> = upstream.forward(&ids, &types, None).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let run = Capture::run(ours.model.as_ref(), &input, None, &[]).unwrap();
    let got: Vec<f32> = run.hidden.flatten_all().unwrap().to_vec1().unwrap();
    let diff = max_abs_diff(&got, &expected);
    assert!(diff <= HIDDEN_TOLERANCE, "hidden states differ from candle-transformers by {diff:e}");
}

/// Same model and text: byte-identical maps on every run (CI diffs must not flicker).
/// Thread counts are covered by `cli::dump_is_byte_identical_across_thread_counts`.
#[test]
fn maps_are_identical_run_after_run() {
    let loaded = loaded(&minilm_dir());
    let input = loaded.tokenizer.encode("The same text, twice, gives the same maps.", None).unwrap();
    let first = Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap().capture.dense().unwrap();
    let second = Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap().capture.dense().unwrap();
    assert!(first.iter().zip(&second).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// `show` stops after the asked layer; its map must equal the full run's.
#[test]
fn one_layer_capture_equals_full_capture() {
    let loaded = loaded(&minilm_dir());
    let input = loaded.tokenizer.encode("Early exit must not change layer two.", None).unwrap();
    let full = Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap().capture;
    let one = Capture::run(loaded.model.as_ref(), &input, Some(vec![2]), &[]).unwrap().capture;
    for head in 0..12 {
        assert_eq!(one.head(2, head).unwrap(), full.head(2, head).unwrap(), "head {head}");
    }
    assert!(one.head(1, 0).is_none() && one.head(3, 0).is_none(), "only the asked layer is kept");
}

/// The other hook points have the documented shapes, and z is pattern x values
/// (hook_result's values: `hooks::hook_result_adds_up_to_the_attention_output_for_every_family`).
#[test]
fn value_and_result_hooks_are_consistent() {
    let loaded = loaded(&crate::helpers::tiny_bert_dir());
    let input = loaded.tokenizer.encode("the cat sat on the mat", None).unwrap();
    let info = loaded.model.info().clone();
    let mut cache = ActivationCache::new(HookFilter { kinds: HookKind::ALL.to_vec(), layers: None });
    loaded.model.forward(&input, &mut cache).unwrap();
    let seq = input.len();
    let pattern = cache.by_name("blocks.1.attn.hook_pattern").unwrap();
    let v = cache.get(HookPoint::new(1, HookKind::V)).unwrap();
    let z = cache.get(HookPoint::new(1, HookKind::Z)).unwrap();
    let result = cache.get(HookPoint::new(1, HookKind::Result)).unwrap();
    assert_eq!(pattern.dims(), &[info.heads, seq, seq]);
    assert_eq!(v.dims(), &[seq, info.kv_heads, info.head_dim]);
    assert_eq!(z.dims(), &[seq, info.heads, info.head_dim]);
    assert_eq!(result.dims(), &[seq, info.heads, info.hidden]);
    let recomputed = pattern.matmul(&v.transpose(0, 1).unwrap().contiguous().unwrap()).unwrap();
    let z_heads_first = z.transpose(0, 1).unwrap().contiguous().unwrap();
    let diff: f32 = (recomputed - z_heads_first).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    assert!(diff < 1e-5, "z != pattern @ v ({diff:e})");
}
