//! Which heads do something, against chance: relations (previous-token,
//! induction, your own word pairs), a head's score on them, a permutation null
//! that needs no forward pass per trial, Monte Carlo p-values and
//! Benjamini–Hochberg q-values.
//!
//! The keys null: each query (a token row, or a `from` word) has a pool of keys
//! it could have been paired with: every key it may attend for built-in
//! relations, every non-special word other than `from` (before it for causal
//! models) for word pairs. A trial replaces each query's targets by as many
//! keys drawn from that pool without replacement. The pool holds the true
//! targets too: when the pairs themselves were drawn at random from the pool,
//! the observed score is then exchangeable with the trials' scores and
//! p = (1 + #{trial >= observed}) / (K + 1) is exactly valid; leaving the true
//! target out would make a head that merely likes some words look significant.
//! Every head is scored on the same draws, and each query's weights over its
//! pool are kept (`[pool, heads]`), so a trial is additions only.

use serde::Serialize;

use crate::analysis::stats::Positions;

/// A small, fixed generator (SplitMix64, Steele et al. 2014): the same seed gives
/// the same draws on every platform and every version of every crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The generator for stream `index` of `seed` (one per trial, so trials can run in parallel).
    pub fn stream(seed: u64, index: u64) -> Self {
        let mut mixer = Rng(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Rng(mixer.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-50 for any pool here).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Shuffle in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The built-in relations, by the names `attnmap find` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    PreviousToken,
    NextToken,
    SelfToken,
    First,
    Special,
    Punct,
    DuplicateToken,
    Induction,
}

impl Builtin {
    pub const NAMES: [&'static str; 8] = ["previous-token", "next-token", "self", "first", "special", "punct", "duplicate-token", "induction"];
    const ALL: [Builtin; 8] = [
        Builtin::PreviousToken,
        Builtin::NextToken,
        Builtin::SelfToken,
        Builtin::First,
        Builtin::Special,
        Builtin::Punct,
        Builtin::DuplicateToken,
        Builtin::Induction,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| Self::ALL[i])
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|b| *b == self).unwrap_or(0)]
    }

    /// The keys query `query` should attend under this relation (none: the row is not part of it).
    pub fn targets(self, query: usize, positions: &Positions, causal: bool) -> Vec<usize> {
        let n = positions.len();
        let allowed = if causal { query + 1 } else { n };
        let earlier_same = || (0..query).filter(move |&key| !positions.special[key] && positions.identity[key] == positions.identity[query]);
        let targets: Vec<usize> = match self {
            Builtin::PreviousToken => (query >= 1).then(|| query - 1).into_iter().collect(),
            Builtin::NextToken => (query + 1 < n).then_some(query + 1).into_iter().collect(),
            Builtin::SelfToken => vec![query],
            Builtin::First => vec![0],
            Builtin::Special => (0..n).filter(|&key| positions.special[key]).collect(),
            Builtin::Punct => (0..n).filter(|&key| positions.punct[key]).collect(),
            Builtin::DuplicateToken if !positions.special[query] => earlier_same().collect(),
            Builtin::Induction if !positions.special[query] => {
                let mut after: Vec<usize> = earlier_same().map(|key| key + 1).filter(|&key| key < n && !positions.special[key]).collect();
                after.dedup();
                after
            }
            Builtin::DuplicateToken | Builtin::Induction => Vec::new(),
        };
        targets.into_iter().filter(|&key| key < allowed).collect()
    }
}

/// How many keys query `query` may attend: all `n`, or those up to itself in a causal model.
pub fn allowed_keys(query: usize, n: usize, causal: bool) -> usize {
    if causal {
        query + 1
    } else {
        n
    }
}

/// The rows of a text that join a built-in relation, with their targets. A row
/// joins when the relation names some key for it and it may attend a key the
/// relation does not name (otherwise every trial would equal the observation).
pub fn builtin_rows(positions: &Positions, causal: bool, relation: Builtin) -> Vec<(usize, Vec<usize>)> {
    let n = positions.len();
    (0..n)
        .filter_map(|query| {
            let targets = relation.targets(query, positions, causal);
            (!targets.is_empty() && targets.len() < allowed_keys(query, n, causal)).then_some((query, targets))
        })
        .collect()
}

/// One query of the relation: its weights over the keys it could have been paired
/// with, for every head, and which of those keys the relation names.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// `[pool, heads]`: weight from the query to each pool key, per head (all layers' heads in order).
    pub weights: Vec<f32>,
    /// Indices into the pool of the keys the relation names (distinct).
    pub targets: Vec<usize>,
}

impl Item {
    pub fn pool(&self, heads: usize) -> usize {
        self.weights.len() / heads.max(1)
    }
}

/// A query of one text before its weights are read: the `from` tokens (or word), the
/// pool of keys (each one or more positions) it could have been paired with, and which
/// of the pool the relation names.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub from: Vec<usize>,
    pub pool: Vec<Vec<usize>>,
    pub targets: Vec<usize>,
}

impl Query {
    /// The rows of a text for a built-in relation (see [`builtin_rows`]): the pool is every key the row may attend.
    pub fn builtin(positions: &Positions, causal: bool, relation: Builtin) -> Vec<Query> {
        let n = positions.len();
        builtin_rows(positions, causal, relation)
            .into_iter()
            .map(|(query, targets)| Query { from: vec![query], pool: (0..allowed_keys(query, n, causal)).map(|key| vec![key]).collect(), targets })
            .collect()
    }
}

/// Every query of a relation over a probe set, gathered one text at a time (and a text's
/// weights one layer at a time: [`Problem::start_text`], then [`Problem::add_layer`]).
#[derive(Debug, Clone, Default)]
pub struct Problem {
    /// Heads of all layers together (layers x heads per layer).
    pub heads: usize,
    pub items: Vec<Item>,
    /// The current text's queries, whose items are the last `pending.len()` of `items`.
    pending: Vec<Query>,
}

impl Problem {
    pub fn new(heads: usize) -> Self {
        Problem { heads, items: Vec::new(), pending: Vec::new() }
    }

    /// Add the rows of one text for a built-in relation (see [`builtin_rows`]).
    /// `maps` is `[heads, n, n]` over `positions`. Returns how many rows joined.
    pub fn add_builtin(&mut self, maps: &[f32], positions: &Positions, causal: bool, relation: Builtin) -> usize {
        let queries = Query::builtin(positions, causal, relation);
        let rows = queries.len();
        self.start_text(queries);
        self.add_layer(maps, 0, positions.len());
        rows
    }

    /// Add one word pair: the weight from the `from` tokens (mean over their rows)
    /// to each candidate (sum over its tokens' columns); `candidates[target]` is the `to`.
    pub fn add_pair(&mut self, maps: &[f32], n: usize, from: &[usize], candidates: &[Vec<usize>], target: usize) {
        self.start_text(vec![Query { from: from.to_vec(), pool: candidates.to_vec(), targets: vec![target] }]);
        self.add_layer(maps, 0, n);
    }

    /// Begin a text with its queries; their weights come from [`Problem::add_layer`].
    pub fn start_text(&mut self, queries: Vec<Query>) {
        for query in &queries {
            self.items.push(Item { weights: vec![0f32; query.pool.len() * self.heads], targets: query.targets.clone() });
        }
        self.pending = queries;
    }

    /// The current text's weights for the heads in `maps` (`[k, n, n]`, heads `first`..`first + k`
    /// of all layers' heads): the weight from `from` (mean over its rows) to each pool entry
    /// (sum over its columns).
    pub fn add_layer(&mut self, maps: &[f32], first: usize, n: usize) {
        let per_head = n * n;
        let start = self.items.len() - self.pending.len();
        for (query, item) in self.pending.iter().zip(&mut self.items[start..]) {
            for (offset, map) in maps.chunks_exact(per_head.max(1)).enumerate() {
                let head = first + offset;
                if head >= self.heads {
                    break;
                }
                for (slot, keys) in query.pool.iter().enumerate() {
                    let mut total = 0f64;
                    for &row in &query.from {
                        for &key in keys {
                            total += map[row * n + key] as f64;
                        }
                    }
                    item.weights[slot * self.heads + head] = (total / query.from.len().max(1) as f64) as f32;
                }
            }
        }
    }

    /// Each head's score: the mean over items of the weight on their targets.
    pub fn observed(&self) -> Vec<f64> {
        self.score(|item, picks| picks.extend_from_slice(&item.targets))
    }

    /// `trials` rows of every head's score with each item's targets replaced by as
    /// many keys drawn from its pool; trial t uses stream t of `seed`, so the result
    /// does not depend on how many threads run it.
    pub fn keys_null(&self, trials: usize, seed: u64) -> Vec<Vec<f64>> {
        use rayon::prelude::*;
        (0..trials)
            .into_par_iter()
            .map(|trial| {
                let mut rng = Rng::stream(seed, trial as u64);
                let mut order: Vec<usize> = Vec::new();
                self.score(|item, picks| {
                    let pool = item.pool(self.heads);
                    if item.targets.len() == 1 {
                        picks.push(rng.below(pool));
                    } else {
                        // The first `count` of a partial Fisher–Yates: distinct keys.
                        order.clear();
                        order.extend(0..pool);
                        for i in 0..item.targets.len() {
                            let j = i + rng.below(pool - i);
                            order.swap(i, j);
                            picks.push(order[i]);
                        }
                    }
                })
            })
            .collect()
    }

    fn score(&self, mut pick: impl FnMut(&Item, &mut Vec<usize>)) -> Vec<f64> {
        let heads = self.heads;
        let mut totals = vec![0f64; heads];
        let mut item_sum = vec![0f32; heads];
        let mut picks = Vec::new();
        for item in &self.items {
            picks.clear();
            pick(item, &mut picks);
            if let [slot] = picks[..] {
                // One target (most relations): its weights are the item's sums as they are.
                for (total, &w) in totals.iter_mut().zip(&item.weights[slot * heads..(slot + 1) * heads]) {
                    *total += w as f64;
                }
                continue;
            }
            item_sum.iter_mut().for_each(|v| *v = 0.0);
            for &slot in &picks {
                for (sum, &w) in item_sum.iter_mut().zip(&item.weights[slot * heads..(slot + 1) * heads]) {
                    *sum += w;
                }
            }
            for (total, &sum) in totals.iter_mut().zip(&item_sum) {
                *total += sum as f64;
            }
        }
        let count = self.items.len().max(1) as f64;
        totals.into_iter().map(|t| t / count).collect()
    }
}

/// The keys a word pair's target is drawn from: the `to` tokens first, then
/// every other non-special word that does not overlap `from` (and, in a causal
/// model, lies wholly before `from`'s first token).
pub fn pair_candidates(words: &[crate::analysis::words::Word], from: &[usize], to: &[usize], causal: bool) -> Vec<Vec<usize>> {
    let first_from = from.iter().copied().min().unwrap_or(0);
    let mut candidates = vec![to.to_vec()];
    for word in words.iter().filter(|w| !w.special) {
        let tokens: Vec<usize> = word.tokens.clone().collect();
        let overlaps_from = tokens.iter().any(|t| from.contains(t));
        let after = causal && tokens.iter().any(|&t| t > first_from);
        if !overlaps_from && !after && tokens != to {
            candidates.push(tokens);
        }
    }
    candidates
}

/// One-sided Monte Carlo p-value: (1 + #{null >= observed}) / (K + 1).
pub fn p_value(observed: f64, null: impl IntoIterator<Item = f64>) -> f64 {
    let (mut at_least, mut trials) = (0usize, 0usize);
    for value in null {
        trials += 1;
        if value >= observed {
            at_least += 1;
        }
    }
    (1 + at_least) as f64 / (trials + 1) as f64
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the order of `p`:
/// q_(k) = min over j >= k of m p_(j) / j, capped at 1.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let mut q = vec![0.0; m];
    let mut running = 1.0f64;
    for rank in (0..m).rev() {
        let index = order[rank];
        running = running.min(p[index] * m as f64 / (rank + 1) as f64);
        q[index] = running;
    }
    q
}

/// One head's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadResult {
    pub layer: usize,
    pub head: usize,
    pub score: f64,
    pub null_mean: f64,
    pub null_sd: f64,
    pub p: f64,
    pub q: f64,
    pub pass: bool,
}

/// How many heads reach a score, observed and by chance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdCount {
    pub score: f64,
    /// Heads with score >= `score`.
    pub heads: usize,
    /// Mean over trials of the number of heads whose null score is >= `score`.
    pub null_mean: f64,
    /// 2.5th and 97.5th percentiles of that per-trial count.
    pub null_low: usize,
    pub null_high: usize,
}

/// Scores, null summaries, p and q for every head; heads in layer-major order.
pub fn results(observed: &[f64], null: &[Vec<f64>], heads_per_layer: usize, alpha: f64) -> Vec<HeadResult> {
    let trials = null.len().max(1) as f64;
    let p: Vec<f64> = observed.iter().enumerate().map(|(h, &score)| p_value(score, null.iter().map(|trial| trial[h]))).collect();
    let q = benjamini_hochberg(&p);
    observed
        .iter()
        .enumerate()
        .map(|(h, &score)| {
            let mean = null.iter().map(|t| t[h]).sum::<f64>() / trials;
            let variance = null.iter().map(|t| (t[h] - mean).powi(2)).sum::<f64>() / (trials - 1.0).max(1.0);
            HeadResult {
                layer: h / heads_per_layer.max(1),
                head: h % heads_per_layer.max(1),
                score,
                null_mean: mean,
                null_sd: variance.sqrt(),
                p: p[h],
                q: q[h],
                pass: q[h] <= alpha,
            }
        })
        .collect()
}

/// The chance count at `score`: observed heads at or above it, and the per-trial counts' mean and 95% range.
pub fn threshold_count(observed: &[f64], null: &[Vec<f64>], score: f64) -> ThresholdCount {
    let mut counts: Vec<usize> = null.iter().map(|trial| trial.iter().filter(|&&v| v >= score).count()).collect();
    counts.sort_unstable();
    let at = |fraction: f64| counts.get(((counts.len().saturating_sub(1)) as f64 * fraction).round() as usize).copied().unwrap_or(0);
    ThresholdCount {
        score,
        heads: observed.iter().filter(|&&v| v >= score).count(),
        null_mean: counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64,
        null_low: at(0.025),
        null_high: at(0.975),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_counts_ties_and_adds_one() {
        assert_eq!(p_value(0.5, [0.1, 0.5, 0.9, 0.2]), 3.0 / 5.0);
        assert_eq!(p_value(1.0, [0.1, 0.2, 0.3]), 1.0 / 4.0);
        assert_eq!(p_value(0.0, [0.1, 0.2, 0.3]), 1.0);
        assert_eq!(p_value(0.3, std::iter::empty()), 1.0);
    }

    #[test]
    fn benjamini_hochberg_matches_hand_computed_values() {
        // m = 5. Sorted p: 0.01, 0.02, 0.03, 0.04, 0.5 -> m p / rank: 0.05, 0.05, 0.05, 0.05, 0.5.
        let q = benjamini_hochberg(&[0.03, 0.5, 0.01, 0.04, 0.02]);
        let expected = [0.05, 0.5, 0.05, 0.05, 0.05];
        for (a, b) in q.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        // The step-up minimum: 0.01 * 4 / 1 = 0.04 but 0.04 * 4 / 2 = 0.08, 0.045 * 4 / 3 = 0.06, 0.06 * 4 / 4 = 0.06.
        let q = benjamini_hochberg(&[0.01, 0.04, 0.045, 0.06]);
        let expected = [0.04, 0.06, 0.06, 0.06];
        for (a, b) in q.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        // Capped at 1.
        assert_eq!(benjamini_hochberg(&[1.0, 0.9]), vec![1.0, 1.0]);
    }

    #[test]
    fn streams_are_reproducible_and_uniform_enough() {
        let draws: Vec<usize> = (0..5).map(|_| Rng::stream(7, 3).below(10)).collect();
        assert!(draws.windows(2).all(|w| w[0] == w[1]));
        let mut rng = Rng::new(1);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[rng.below(4)] += 1;
        }
        // Each count is binomial(40000, 1/4): sd 87, so 600 is about 7 sd.
        assert!(counts.iter().all(|&c| c.abs_diff(10_000) < 600), "{counts:?}");
    }

    fn positions(n: usize) -> Positions {
        Positions { special: vec![false; n], punct: vec![false; n], identity: vec![1, 2, 3, 1, 2, 3][..n].to_vec(), labels: vec![String::new(); n] }
    }

    #[test]
    fn relations_name_the_right_keys() {
        let p = positions(6);
        assert_eq!(Builtin::PreviousToken.targets(0, &p, false), Vec::<usize>::new());
        assert_eq!(Builtin::PreviousToken.targets(3, &p, false), vec![2]);
        assert_eq!(Builtin::NextToken.targets(5, &p, false), Vec::<usize>::new());
        assert_eq!(Builtin::NextToken.targets(2, &p, true), Vec::<usize>::new());
        assert_eq!(Builtin::DuplicateToken.targets(4, &p, false), vec![1]);
        assert_eq!(Builtin::Induction.targets(4, &p, false), vec![2]);
        assert_eq!(Builtin::Induction.targets(2, &p, false), Vec::<usize>::new());
    }

    #[test]
    fn pair_candidates_hold_the_target_and_respect_causality() {
        let word = |tokens: std::ops::Range<usize>, special: bool| crate::analysis::words::Word { tokens, label: String::new(), special, sequence: Some(0), chars: (0, 0) };
        // [CLS] w1 w2(2 tokens) w3 w4 [SEP]
        let words = vec![word(0..1, true), word(1..2, false), word(2..4, false), word(4..5, false), word(5..6, false), word(6..7, true)];
        // from w3, to w1: the target first, then w2 and w4 (not w3 itself, no specials).
        assert_eq!(pair_candidates(&words, &[4], &[1], false), vec![vec![1], vec![2, 3], vec![5]]);
        // Causal: only words wholly before the first `from` token.
        assert_eq!(pair_candidates(&words, &[4], &[1], true), vec![vec![1], vec![2, 3]]);
    }

    #[test]
    fn a_perfect_previous_token_head_passes_and_a_uniform_one_does_not() {
        let n = 6;
        let p = positions(n);
        // Two heads: 0 puts everything on the previous token, 1 is uniform.
        let mut maps = vec![0f32; 2 * n * n];
        maps[0] = 1.0;
        for query in 1..n {
            maps[query * n + query - 1] = 1.0;
        }
        maps[n * n..].iter_mut().for_each(|v| *v = 1.0 / n as f32);
        let mut problem = Problem::new(2);
        let mut rows = 0;
        for _ in 0..4 {
            rows += problem.add_builtin(&maps, &p, false, Builtin::PreviousToken);
        }
        assert_eq!(rows, 4 * (n - 1));
        let observed = problem.observed();
        assert!((observed[0] - 1.0).abs() < 1e-6 && (observed[1] - 1.0 / n as f64).abs() < 1e-6);
        let null = problem.keys_null(199, 0);
        assert_eq!(null, problem.keys_null(199, 0), "the same seed gives the same trials");
        let heads = results(&observed, &null, 2, 0.05);
        assert!(heads[0].pass && heads[0].p == 1.0 / 200.0);
        // A uniform head ties every trial: p = 1.
        assert!(!heads[1].pass && heads[1].p == 1.0);
        let count = threshold_count(&observed, &null, 0.5);
        assert_eq!((count.heads, count.null_high), (1, 0));
    }
}
