//! How far apart two sets of attention maps are, head by head.
//!
//! Each query row of a map is a distribution over keys, so besides the plain
//! absolute differences the natural distance is the Jensen–Shannon divergence
//! (natural log, so it lies in [0, ln 2]) averaged over rows. Everything is
//! accumulated in f64 from the f32 maps.

use serde::Serialize;

/// The measures attnmap reports per head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean |old - new| over every cell of the map.
    MeanAbs,
    /// Largest |old - new| over every cell of the map.
    MaxAbs,
    /// Jensen–Shannon divergence (natural log) averaged over query rows.
    Jsd,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::MeanAbs, Metric::MaxAbs, Metric::Jsd];

    pub fn name(self) -> &'static str {
        match self {
            Metric::MeanAbs => "mean_abs",
            Metric::MaxAbs => "max_abs",
            Metric::Jsd => "jsd",
        }
    }

    pub fn of(self, head: &HeadDiff) -> f64 {
        match self {
            Metric::MeanAbs => head.mean_abs,
            Metric::MaxAbs => head.max_abs,
            Metric::Jsd => head.jsd,
        }
    }
}

/// The difference of one head's maps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeadDiff {
    pub layer: usize,
    pub head: usize,
    pub mean_abs: f64,
    pub max_abs: f64,
    pub jsd: f64,
}

/// Jensen–Shannon divergence of two distributions, natural log; 0·log 0 = 0.
pub fn jsd(p: &[f32], q: &[f32]) -> f64 {
    let mut total = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a as f64, b as f64);
        let m = 0.5 * (a + b);
        if a > 0.0 {
            total += 0.5 * a * (a / m).ln();
        }
        if b > 0.0 {
            total += 0.5 * b * (b / m).ln();
        }
    }
    // Rounding can leave a tiny negative for identical rows.
    total.max(0.0)
}

/// Compare one head's maps, `[seq, seq]` row-major each.
pub fn head_diff(layer: usize, head: usize, old: &[f32], new: &[f32], seq: usize) -> HeadDiff {
    let mut sum_abs = 0.0f64;
    let mut max_abs = 0.0f64;
    for (&a, &b) in old.iter().zip(new) {
        let d = (a as f64 - b as f64).abs();
        sum_abs += d;
        max_abs = max_abs.max(d);
    }
    let rows = old.len() / seq.max(1);
    let jsd_sum: f64 = old.chunks(seq).zip(new.chunks(seq)).map(|(p, q)| jsd(p, q)).sum();
    HeadDiff {
        layer,
        head,
        mean_abs: sum_abs / old.len().max(1) as f64,
        max_abs,
        jsd: jsd_sum / rows.max(1) as f64,
    }
}

/// Compare every head of two `[layers, heads, seq, seq]` captures.
pub fn compare(old: &[f32], new: &[f32], layers: usize, heads: usize, seq: usize) -> Vec<HeadDiff> {
    let per_head = seq * seq;
    (0..layers * heads)
        .map(|index| {
            let range = index * per_head..(index + 1) * per_head;
            head_diff(index / heads, index % heads, &old[range.clone()], &new[range], seq)
        })
        .collect()
}

/// Aggregate per-text head diffs over a probe set: mean_abs and jsd are
/// averaged over texts, max_abs is the largest over texts.
pub fn aggregate(per_text: &[Vec<HeadDiff>]) -> Vec<HeadDiff> {
    let Some(first) = per_text.first() else { return Vec::new() };
    let count = per_text.len() as f64;
    (0..first.len())
        .map(|index| {
            let mut total = HeadDiff { max_abs: 0.0, mean_abs: 0.0, jsd: 0.0, ..first[index] };
            for text in per_text {
                total.mean_abs += text[index].mean_abs / count;
                total.jsd += text[index].jsd / count;
                total.max_abs = total.max_abs.max(text[index].max_abs);
            }
            total
        })
        .collect()
}

/// Summary of a set of head diffs (one layer, or the whole model).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub mean_abs: f64,
    pub max_abs: f64,
    /// Mean over heads of the per-head JSD.
    pub jsd: f64,
    /// Largest per-head JSD.
    pub max_jsd: f64,
}

pub fn summarize(heads: &[HeadDiff]) -> Summary {
    let count = heads.len().max(1) as f64;
    Summary {
        mean_abs: heads.iter().map(|h| h.mean_abs).sum::<f64>() / count,
        max_abs: heads.iter().map(|h| h.max_abs).fold(0.0, f64::max),
        jsd: heads.iter().map(|h| h.jsd).sum::<f64>() / count,
        max_jsd: heads.iter().map(|h| h.jsd).fold(0.0, f64::max),
    }
}

/// Heads sorted by `metric`, largest change first (ties by layer, head).
pub fn ranked(heads: &[HeadDiff], metric: Metric) -> Vec<HeadDiff> {
    let mut sorted = heads.to_vec();
    sorted.sort_by(|a, b| metric.of(b).total_cmp(&metric.of(a)).then((a.layer, a.head).cmp(&(b.layer, b.head))));
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsd_is_zero_for_equal_and_ln2_for_disjoint() {
        assert_eq!(jsd(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        assert!((jsd(&[1.0, 0.0], &[0.0, 1.0]) - std::f64::consts::LN_2).abs() < 1e-12);
        let (p, q) = ([0.2f32, 0.8], [0.6f32, 0.4]);
        assert!((jsd(&p, &q) - jsd(&q, &p)).abs() < 1e-15, "symmetric");
    }

    #[test]
    fn head_diff_measures_cells_and_rows() {
        let old = [1.0, 0.0, 0.5, 0.5];
        let new = [0.0, 1.0, 0.5, 0.5];
        let diff = head_diff(2, 3, &old, &new, 2);
        assert_eq!((diff.layer, diff.head), (2, 3));
        assert!((diff.mean_abs - 0.5).abs() < 1e-12);
        assert_eq!(diff.max_abs, 1.0);
        assert!((diff.jsd - std::f64::consts::LN_2 / 2.0).abs() < 1e-12);
    }

    fn text(name: &str, jsd: [f64; 2]) -> ComparedText {
        let head = |h: usize| HeadDiff { layer: 0, head: h, mean_abs: jsd[h] / 10.0, max_abs: jsd[h] * 2.0, jsd: jsd[h] };
        ComparedText { text: name.into(), pair: None, tokens: 4, heads: vec![head(0), head(1)] }
    }

    /// Head 1 moves on one text of four (jsd 0.2, mean 0.05); head 0 a little on all (0.08).
    /// A threshold of 0.1 lies between the largest mean and the worst text.
    fn probe_set() -> Vec<ComparedText> {
        vec![text("a", [0.08, 0.0]), text("b", [0.08, 0.0]), text("c", [0.08, 0.2]), text("d", [0.08, 0.0])]
    }

    #[test]
    fn worst_case_judging_fails_on_one_text_and_names_it() {
        let rules = Rules { metric: Metric::Jsd, aggregate: Aggregate::Worst, threshold: 0.1, top: 10 };
        let report = DiffReport::build("old".into(), "new".into(), &probe_set(), 1, 2, rules);
        assert!(!report.passed());
        assert_eq!(report.exceeding, 1);
        let failure = &report.failing[0];
        assert_eq!((failure.layer, failure.head, failure.text_index, failure.text.as_str()), (0, 1, 2, "c"));
        assert_eq!((failure.value, failure.text_value), (0.2, 0.2));
        assert_eq!(report.top[0].head(), 1, "ranked by the judged value");
        // Per-head means stay in the report.
        assert!((report.heads[1].mean - 0.05).abs() < 1e-12);
        assert!((report.heads[1].over_texts.jsd - 0.05).abs() < 1e-12);
        assert!((report.heads[0].mean - 0.08).abs() < 1e-12);
    }

    #[test]
    fn mean_judging_passes_the_same_set_and_still_reports_the_worst_text() {
        let rules = Rules { metric: Metric::Jsd, aggregate: Aggregate::Mean, threshold: 0.1, top: 10 };
        let report = DiffReport::build("old".into(), "new".into(), &probe_set(), 1, 2, rules);
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.top[0].head(), 0, "head 0 has the larger mean");
        assert_eq!((report.worst_case.head, report.worst_case.text_index, report.worst_case.text_value), (1, 2, 0.2));
        assert!((report.worst_case.value - 0.05).abs() < 1e-12, "the worst head's own mean");
        // Below the largest mean, mean judging fails and names head 0 with its mean and its worst text.
        let stricter = Rules { threshold: 0.07, ..rules };
        let report = DiffReport::build("old".into(), "new".into(), &probe_set(), 1, 2, stricter);
        assert_eq!(report.exceeding, 1);
        assert_eq!((report.failing[0].head, report.failing[0].text_index), (0, 0), "the first text on ties");
        assert!((report.failing[0].value - 0.08).abs() < 1e-12);
    }

    #[test]
    fn aggregate_averages_and_takes_max() {
        let a = vec![HeadDiff { layer: 0, head: 0, mean_abs: 0.1, max_abs: 0.5, jsd: 0.2 }];
        let b = vec![HeadDiff { layer: 0, head: 0, mean_abs: 0.3, max_abs: 0.2, jsd: 0.0 }];
        let total = aggregate(&[a, b]);
        assert!((total[0].mean_abs - 0.2).abs() < 1e-12);
        assert_eq!(total[0].max_abs, 0.5);
        assert!((total[0].jsd - 0.1).abs() < 1e-12);
    }
}

/// How a head's metric over a probe set is judged against the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The largest value over the texts: one text on which a head moved fails the run.
    Worst,
    /// The mean over the texts: a head must move on average.
    Mean,
}

impl Aggregate {
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Worst => "worst",
            Aggregate::Mean => "mean",
        }
    }
}

/// One text of a probe set, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextSummary {
    pub index: usize,
    pub text: String,
    pub pair: Option<String>,
    pub tokens: usize,
    pub overall: Summary,
    /// The head that changed most on this text, by the report's metric.
    pub worst: HeadDiff,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSummary {
    pub layer: usize,
    #[serde(flatten)]
    pub summary: Summary,
}

/// One head over the whole probe set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeadReport {
    /// mean_abs and jsd averaged over the texts, max_abs the largest.
    #[serde(flatten)]
    pub over_texts: HeadDiff,
    /// The report's metric averaged over the texts.
    pub mean: f64,
    /// The report's metric on the text where it is largest ...
    pub worst: f64,
    /// ... and that text (its index in `texts`, from 0).
    pub worst_text: usize,
    /// What the threshold is compared with: `worst` or `mean`, as the report's aggregate says.
    pub judged: f64,
}

impl HeadReport {
    pub fn layer(&self) -> usize {
        self.over_texts.layer
    }

    pub fn head(&self) -> usize {
        self.over_texts.head
    }
}

/// Everything `attnmap diff` reports, in the order a reader wants it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffReport {
    /// "pass" when no head's judged metric exceeds the threshold, else "fail".
    pub verdict: &'static str,
    pub metric: Metric,
    /// Whether a head is judged by its worst text or by its mean over the texts.
    pub aggregate: Aggregate,
    pub threshold: f64,
    /// How many heads exceed the threshold.
    pub exceeding: usize,
    /// The heads that exceed it, most-changed first, each with the text it moved most on.
    pub failing: Vec<Failure>,
    /// The single (text, head) where the metric is largest, whatever the verdict (`value` is
    /// that head's judged value, `text_value` the largest).
    pub worst_case: Failure,
    pub old: String,
    pub new: String,
    pub layers: usize,
    pub heads_per_layer: usize,
    /// Over every head's `over_texts` figures.
    pub overall: Summary,
    pub per_layer: Vec<LayerSummary>,
    /// The most-changed heads by the judged metric, largest first.
    pub top: Vec<HeadReport>,
    pub texts: Vec<TextSummary>,
    /// Every head, in layer-major order.
    pub heads: Vec<HeadReport>,
}

/// A head past the threshold (or the worst case): the judged value, and the
/// text it moved most on with that text's own value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub layer: usize,
    pub head: usize,
    /// The judged value (`worst` or `mean` over the texts).
    pub value: f64,
    /// Index of the text in `texts`, from 0.
    pub text_index: usize,
    pub text: String,
    /// The metric on that text alone.
    pub text_value: f64,
}

/// A compared text: what it was and its per-head diffs.
pub struct ComparedText {
    pub text: String,
    pub pair: Option<String>,
    pub tokens: usize,
    pub heads: Vec<HeadDiff>,
}

/// What a report judges by: the metric, how it is aggregated over texts, the
/// threshold it must not exceed, and how many of the most-changed heads to list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub metric: Metric,
    pub aggregate: Aggregate,
    pub threshold: f64,
    pub top: usize,
}

/// Per head: the metric's mean over texts, and its largest value with the text it is on
/// (the first such text on ties).
fn judge(per_text: &[Vec<HeadDiff>], over_texts: &[HeadDiff], rules: Rules) -> Vec<HeadReport> {
    let count = per_text.len().max(1) as f64;
    over_texts
        .iter()
        .enumerate()
        .map(|(index, &head)| {
            let (mut mean, mut worst, mut worst_text) = (0.0, f64::NEG_INFINITY, 0);
            for (text, heads) in per_text.iter().enumerate() {
                let value = rules.metric.of(&heads[index]);
                mean += value / count;
                if value > worst {
                    (worst, worst_text) = (value, text);
                }
            }
            let worst = worst.max(0.0);
            let judged = match rules.aggregate {
                Aggregate::Worst => worst,
                Aggregate::Mean => mean,
            };
            HeadReport { over_texts: head, mean, worst, worst_text, judged }
        })
        .collect()
}

impl DiffReport {
    pub fn build(old: String, new: String, texts: &[ComparedText], layers: usize, heads_per_layer: usize, rules: Rules) -> Self {
        let Rules { metric, threshold, top, .. } = rules;
        let per_text: Vec<Vec<HeadDiff>> = texts.iter().map(|t| t.heads.clone()).collect();
        let over_texts = aggregate(&per_text);
        let heads = judge(&per_text, &over_texts, rules);
        let mut ranked_heads = heads.clone();
        ranked_heads.sort_by(|a, b| b.judged.total_cmp(&a.judged).then((a.layer(), a.head()).cmp(&(b.layer(), b.head()))));
        let failure = |head: &HeadReport, value: f64| Failure {
            layer: head.layer(),
            head: head.head(),
            value,
            text_index: head.worst_text,
            text: texts.get(head.worst_text).map(|t| t.text.clone()).unwrap_or_default(),
            text_value: head.worst,
        };
        let failing: Vec<Failure> = ranked_heads.iter().filter(|h| h.judged > threshold).map(|h| failure(h, h.judged)).collect();
        let worst_head = heads
            .iter()
            .max_by(|a, b| a.worst.total_cmp(&b.worst).then((b.layer(), b.head()).cmp(&(a.layer(), a.head()))))
            .copied()
            .unwrap_or(HeadReport { over_texts: HeadDiff { layer: 0, head: 0, mean_abs: 0.0, max_abs: 0.0, jsd: 0.0 }, mean: 0.0, worst: 0.0, worst_text: 0, judged: 0.0 });
        let per_layer = (0..layers)
            .map(|layer| LayerSummary {
                layer,
                summary: summarize(&over_texts[layer * heads_per_layer..(layer + 1) * heads_per_layer]),
            })
            .collect();
        let texts = texts
            .iter()
            .enumerate()
            .map(|(index, t)| TextSummary {
                index,
                text: t.text.clone(),
                pair: t.pair.clone(),
                tokens: t.tokens,
                overall: summarize(&t.heads),
                worst: ranked(&t.heads, metric)[0],
            })
            .collect();
        DiffReport {
            verdict: if failing.is_empty() { "pass" } else { "fail" },
            metric,
            aggregate: rules.aggregate,
            threshold,
            exceeding: failing.len(),
            worst_case: failure(&worst_head, worst_head.judged),
            failing,
            old,
            new,
            layers,
            heads_per_layer,
            overall: summarize(&over_texts),
            per_layer,
            top: ranked_heads.into_iter().take(top).collect(),
            texts,
            heads,
        }
    }

    pub fn passed(&self) -> bool {
        self.exceeding == 0
    }
}
