//! Views of a capture beyond the raw softmax weights: what a head moves (norm),
//! and how layers compose (rollout, flow).
//!
//! - `norm` (Kobayashi et al. 2020, "Attention is not only a weight"):
//!   N[i, j] = α_ij · ‖f_h(x_j)‖, f_h(x) = (x W_V^h + b_V^h) W_O^h, output bias excluded.
//!   The model pushes ‖f_h(x_j)‖ at `hook_value_norm`; here it only meets the pattern.
//! - `rollout` (Abnar & Zuidema 2020): A_l = mean over heads; Â_l = 0.5·A_l + 0.5·I, rows
//!   renormalised; R_0 = Â_0, R_l = Â_l · R_{l−1}.
//! - `flow` (Abnar & Zuidema 2020): Â_l as capacities of a layered graph, node (l+1, i) to
//!   (l, j); flow[i, j] = max-flow from output position i after layer L to input token j,
//!   rows normalised to 1.
//!
//! Everything takes plain slices (`[heads, seq, seq]` per layer, row-major) and works in f64.

use rayon::prelude::*;

use crate::capture::Capture;
use crate::error::{Error, Result};
use crate::hooks::HookKind;

/// Which picture of a layer's attention to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    /// The softmax weights themselves.
    Weights,
    /// Weights times the norm of what each key's value sends through the head.
    Norm,
    /// Head-averaged weights with the residual, multiplied through the layers.
    Rollout,
    /// Max-flow through the head-averaged, residual-augmented layers.
    Flow,
}

impl View {
    pub const ALL: [View; 4] = [View::Weights, View::Norm, View::Rollout, View::Flow];

    pub fn name(self) -> &'static str {
        match self {
            View::Weights => "weights",
            View::Norm => "norm",
            View::Rollout => "rollout",
            View::Flow => "flow",
        }
    }

    pub fn parse(name: &str) -> Option<View> {
        View::ALL.into_iter().find(|v| v.name() == name)
    }

    /// One map per head (weights, norm), or one per layer mixing all heads (rollout, flow).
    pub fn per_head(self) -> bool {
        matches!(self, View::Weights | View::Norm)
    }

    /// What the view computes, for manifests and `--json`.
    pub fn formula(self) -> &'static str {
        match self {
            View::Weights => "A[l,h,i,j] = softmax(q_i k_j^T / sqrt(d) + mask)",
            View::Norm => "N[l,h,i,j] = A[l,h,i,j] * ||(x_j W_V^h + b_V^h) W_O^h|| (Kobayashi et al. 2020; output bias excluded; GQA heads use their KV group's values)",
            View::Rollout => "Â_l = rownorm(0.5 * mean_h A[l,h] + 0.5 * I); R_0 = Â_0, R_l = Â_l R_{l-1} (Abnar & Zuidema 2020)",
            View::Flow => "flow_l[i,j] = max-flow from position i after layer l to input token j through capacities Â_0..Â_l, rows normalised to 1 (Abnar & Zuidema 2020)",
        }
    }

    /// The colour bar's caption: what the numbers are.
    pub fn colorbar_label(self) -> &'static str {
        match self {
            View::Weights => "attention weight",
            View::Norm => "‖α f(x)‖ (value-space norm)",
            View::Rollout => "rollout share",
            View::Flow => "flow share",
        }
    }

    /// A picture's subtitle: what this view does and does not say.
    pub fn caveat(self) -> &'static str {
        match self {
            View::Weights => "attention weights only: not what the values carry",
            View::Norm => "weight × ‖value·W_O‖: what the head moves, in its own units",
            View::Rollout => "all heads averaged with the residual, layers multiplied: a heuristic",
            View::Flow => "max-flow through head-averaged layers: a heuristic, not a gradient",
        }
    }

    /// The hooks a capture must hold beyond the pattern.
    pub fn hooks(self) -> &'static [HookKind] {
        match self {
            View::Norm => &[HookKind::ValueNorm],
            _ => &[],
        }
    }
}

/// One head's norm map: `pattern[i, j] * value_norms[j]`. `pattern` is `[seq, seq]`,
/// `value_norms` `[seq]` (that head's ‖f_h(x_j)‖).
pub fn norm_map(pattern: &[f32], value_norms: &[f32], seq: usize) -> Vec<f32> {
    pattern
        .chunks(seq)
        .flat_map(|row| row.iter().zip(value_norms).map(|(&a, &n)| (a as f64 * n as f64) as f32))
        .collect()
}

/// Every head of a layer: `patterns` `[heads, seq, seq]`, `value_norms` `[heads, seq]`.
pub fn norm_layer(patterns: &[f32], value_norms: &[f32], seq: usize) -> Vec<f32> {
    patterns
        .chunks(seq * seq)
        .zip(value_norms.chunks(seq))
        .flat_map(|(pattern, norms)| norm_map(pattern, norms, seq))
        .collect()
}

/// Â_l of one layer (`[heads, seq, seq]`): the mean over heads, half of it kept and half
/// replaced by the identity (the residual), rows renormalised to 1.
pub fn residual_attention(patterns: &[f32], heads: usize, seq: usize) -> Vec<f64> {
    let mut mean = vec![0f64; seq * seq];
    for head in patterns.chunks(seq * seq).take(heads) {
        for (m, &a) in mean.iter_mut().zip(head) {
            *m += a as f64;
        }
    }
    let heads = heads.max(1) as f64;
    for (row_index, row) in mean.chunks_mut(seq).enumerate() {
        for m in row.iter_mut() {
            *m *= 0.5 / heads;
        }
        row[row_index] += 0.5;
        let sum: f64 = row.iter().sum();
        if sum > 0.0 {
            row.iter_mut().for_each(|m| *m /= sum);
        }
    }
    mean
}

/// `a · b` for `[seq, seq]` matrices, rows in parallel; zeros of `a` (causal maps) are skipped.
fn matmul(a: &[f64], b: &[f64], seq: usize) -> Vec<f64> {
    let mut out = vec![0f64; seq * seq];
    out.par_chunks_mut(seq).zip(a.par_chunks(seq)).for_each(|(out_row, a_row)| {
        for (k, &weight) in a_row.iter().enumerate() {
            if weight != 0.0 {
                for (o, &value) in out_row.iter_mut().zip(&b[k * seq..(k + 1) * seq]) {
                    *o += weight * value;
                }
            }
        }
    });
    out
}

/// R_0 .. R_{n-1} for the `n` layers given (each `[heads, seq, seq]`, from layer 0 up).
pub fn rollout(layers: &[&[f32]], heads: usize, seq: usize) -> Vec<Vec<f32>> {
    let mut rolling = Rollout::default();
    layers.iter().map(|patterns| rolling.push(patterns, heads, seq)).collect()
}

/// Rollout one layer at a time, keeping only the running product (one `[seq, seq]` in f64):
/// what a dump streaming its layers needs.
#[derive(Debug, Default)]
pub struct Rollout {
    rolled: Option<Vec<f64>>,
}

impl Rollout {
    /// R_l from the next layer's patterns (`[heads, seq, seq]`), layers pushed from 0 up.
    pub fn push(&mut self, patterns: &[f32], heads: usize, seq: usize) -> Vec<f32> {
        let residual = residual_attention(patterns, heads, seq);
        let next = match self.rolled.take() {
            None => residual,
            Some(previous) => matmul(&residual, &previous, seq),
        };
        let out = next.iter().map(|&v| v as f32).collect();
        self.rolled = Some(next);
        out
    }
}

/// A layered graph's edges in compressed rows, with each edge's reverse for the residual.
struct Graph {
    /// Edges of node n are `start[n]..start[n + 1]`.
    start: Vec<usize>,
    to: Vec<usize>,
    capacity: Vec<f64>,
    reverse: Vec<usize>,
    /// Each node's total capacity out and in (bounds on any flow from or to it).
    out_capacity: Vec<f64>,
    in_capacity: Vec<f64>,
}

/// Below this a residual capacity counts as used up (f64 sums of f32 weights).
const FLOW_EPS: f64 = 1e-12;

impl Graph {
    /// Nodes `level * seq + token`, level 0 the input tokens, level l+1 the output of layer l;
    /// an edge (l+1, i) -> (l, j) of capacity Â_l[i, j] wherever it is positive.
    fn layered(residuals: &[Vec<f64>], seq: usize) -> Graph {
        let nodes = (residuals.len() + 1) * seq;
        let mut adjacency: Vec<Vec<(usize, f64, bool)>> = vec![Vec::new(); nodes];
        for (layer, residual) in residuals.iter().enumerate() {
            for i in 0..seq {
                for j in 0..seq {
                    let capacity = residual[i * seq + j];
                    if capacity > 0.0 {
                        adjacency[(layer + 1) * seq + i].push((layer * seq + j, capacity, true));
                        adjacency[layer * seq + j].push(((layer + 1) * seq + i, 0.0, false));
                    }
                }
            }
        }
        // Lay the edges out in rows and pair each with its reverse.
        let mut start = Vec::with_capacity(nodes + 1);
        let mut total = 0;
        for edges in &adjacency {
            start.push(total);
            total += edges.len();
        }
        start.push(total);
        let mut to = vec![0; total];
        let mut capacity = vec![0.0; total];
        let mut reverse = vec![0; total];
        let mut fill = start.clone();
        let mut pending: std::collections::HashMap<(usize, usize), usize> = std::collections::HashMap::new();
        for (node, edges) in adjacency.iter().enumerate() {
            for &(target, cap, _) in edges {
                let index = fill[node];
                fill[node] += 1;
                to[index] = target;
                capacity[index] = cap;
                if let Some(other) = pending.remove(&(target, node)) {
                    reverse[index] = other;
                    reverse[other] = index;
                } else {
                    pending.insert((node, target), index);
                }
            }
        }
        let mut out_capacity = vec![0.0; nodes];
        let mut in_capacity = vec![0.0; nodes];
        for (node, edges) in adjacency.iter().enumerate() {
            for &(target, cap, forward) in edges {
                if forward {
                    out_capacity[node] += cap;
                    in_capacity[target] += cap;
                }
            }
        }
        Graph { start, to, capacity, reverse, out_capacity, in_capacity }
    }
}

/// Dinic's max-flow on one graph, reusing its buffers from target to target.
struct Dinic<'g> {
    graph: &'g Graph,
    residual: Vec<f64>,
    level: Vec<i32>,
    next_edge: Vec<usize>,
    queue: Vec<usize>,
}

impl<'g> Dinic<'g> {
    fn new(graph: &'g Graph) -> Self {
        let nodes = graph.start.len() - 1;
        Dinic { graph, residual: graph.capacity.clone(), level: vec![-1; nodes], next_edge: vec![0; nodes], queue: Vec::with_capacity(nodes) }
    }

    fn max_flow(&mut self, source: usize, sink: usize) -> f64 {
        self.residual.copy_from_slice(&self.graph.capacity);
        // No flow exceeds what leaves the source or enters the sink: reaching that bound
        // spares the last search, which would only confirm it (most targets end this way).
        let bound = self.graph.out_capacity[source].min(self.graph.in_capacity[sink]);
        let mut total = 0.0;
        while total < bound - FLOW_EPS && self.levels(source, sink) {
            let nodes = self.next_edge.len();
            self.next_edge.copy_from_slice(&self.graph.start[..nodes]);
            loop {
                let pushed = self.push(source, sink, f64::INFINITY);
                if pushed <= FLOW_EPS {
                    break;
                }
                total += pushed;
            }
        }
        total
    }

    /// Breadth-first levels over edges with capacity left; whether the sink is reachable.
    fn levels(&mut self, source: usize, sink: usize) -> bool {
        self.level.fill(-1);
        self.queue.clear();
        self.level[source] = 0;
        self.queue.push(source);
        let mut head = 0;
        while head < self.queue.len() {
            let node = self.queue[head];
            head += 1;
            if node == sink {
                continue;
            }
            for edge in self.graph.start[node]..self.graph.start[node + 1] {
                let target = self.graph.to[edge];
                if self.level[target] < 0 && self.residual[edge] > FLOW_EPS {
                    self.level[target] = self.level[node] + 1;
                    self.queue.push(target);
                }
            }
        }
        self.level[sink] >= 0
    }

    /// Push up to `limit` from `node` to the sink along increasing levels, through as many
    /// paths as it takes (depth at most the node count); returns what got through.
    fn push(&mut self, node: usize, sink: usize, limit: f64) -> f64 {
        if node == sink {
            return limit;
        }
        let mut sent = 0.0;
        while self.next_edge[node] < self.graph.start[node + 1] {
            let edge = self.next_edge[node];
            let target = self.graph.to[edge];
            if self.residual[edge] > FLOW_EPS && self.level[target] == self.level[node] + 1 {
                let pushed = self.push(target, sink, (limit - sent).min(self.residual[edge]));
                if pushed > FLOW_EPS {
                    self.residual[edge] -= pushed;
                    self.residual[self.graph.reverse[edge]] += pushed;
                    sent += pushed;
                    if limit - sent <= FLOW_EPS {
                        // This edge may still carry more: come back to it next time.
                        return sent;
                    }
                }
            }
            self.next_edge[node] += 1;
        }
        sent
    }
}

/// The longest input `flow` accepts for `layers` layers: past it a map takes more than
/// about a minute of one core (measured in benches/commands.sh; the work grows about as
/// layers · seq⁴: MiniLM's 6 layers took 1.2 CPU-seconds at 64 tokens, 16 at 128).
pub fn flow_max_tokens(layers: usize) -> usize {
    // 160 tokens through 6 layers is about 40 CPU-seconds; keep layers · seq⁴ below that.
    let budget = 6.0 * 160f64.powi(4);
    (budget / layers.max(1) as f64).powf(0.25) as usize
}

/// Refuse a flow that would run for minutes, naming the limit.
pub fn check_flow_size(layers: usize, seq: usize) -> Result<()> {
    let limit = flow_max_tokens(layers);
    if seq > limit {
        return Err(Error::Input(format!(
            "--view flow through {layers} layers is limited to {limit} tokens (one max-flow per pair of tokens; longer inputs take minutes): this input has {seq}; shorten the text, pick an earlier --layer, or use --view rollout"
        )));
    }
    Ok(())
}

/// flow_l for every layer l of the `n` given (each `[heads, seq, seq]`, from layer 0 up), each
/// `[seq, seq]` with rows normalised to 1.
pub fn flow(layers: &[&[f32]], heads: usize, seq: usize) -> Vec<Vec<f32>> {
    let residuals: Vec<Vec<f64>> = layers.iter().map(|p| residual_attention(p, heads, seq)).collect();
    flow_of_residuals(&residuals, seq)
}

/// [`flow`] from each layer's Â_l ([`residual_attention`]): all a streamed dump keeps of the
/// layers for flow (one `[seq, seq]` per layer, not every head's maps).
pub fn flow_of_residuals(residuals: &[Vec<f64>], seq: usize) -> Vec<Vec<f32>> {
    let graph = Graph::layered(residuals, seq);
    (0..residuals.len()).map(|layer| flow_of_layer(&graph, layer, seq)).collect()
}

/// Flows from each position after `layer` to every input token; sources in parallel.
fn flow_of_layer(graph: &Graph, layer: usize, seq: usize) -> Vec<f32> {
    let rows: Vec<Vec<f32>> = (0..seq)
        .into_par_iter()
        .map_init(
            || Dinic::new(graph),
            |dinic, i| {
                let source = (layer + 1) * seq + i;
                let row: Vec<f64> = (0..seq).map(|j| dinic.max_flow(source, j)).collect();
                let sum: f64 = row.iter().sum();
                row.iter().map(|&f| if sum > 0.0 { (f / sum) as f32 } else { 0.0 }).collect()
            },
        )
        .collect();
    rows.concat()
}

/// The layers `0..=last` of a capture, which rollout and flow need.
fn layers_up_to<'c>(capture: &'c Capture, last: usize) -> Result<Vec<&'c [f32]>> {
    (0..=last)
        .map(|layer| capture.layer(layer).ok_or_else(|| Error::Input(format!("layer {layer} was not captured; rollout and flow need layers 0-{last}"))))
        .collect()
}

/// One map of a capture in `view`: `[seq, seq]`, for `head` of `layer` (weights, norm) or
/// for `layer` as a whole (rollout, flow; `head` must be `None`).
pub fn view_map(capture: &Capture, view: View, layer: usize, head: Option<usize>) -> Result<Vec<f32>> {
    let (seq, heads) = (capture.seq, capture.heads);
    match (view, head) {
        (View::Weights | View::Norm, None) => Err(Error::Usage(format!("--view {} draws one head: add --head H", view.name()))),
        (View::Rollout | View::Flow, Some(head)) => Err(Error::Usage(format!(
            "--view {} mixes every head of layers 0-{layer} (their mean), so --head {head} does not apply: drop --head",
            view.name()
        ))),
        (View::Weights, Some(head)) => capture.head(layer, head).map(<[f32]>::to_vec).ok_or_else(|| Error::Input(format!("layer {layer} was not captured"))),
        (View::Norm, Some(head)) => {
            let pattern = capture.head(layer, head).ok_or_else(|| Error::Input(format!("layer {layer} was not captured")))?;
            let norms = capture.value_norms(layer).ok_or_else(|| Error::Input(format!("the value norms of layer {layer} were not captured (run with HookKind::ValueNorm)")))?;
            Ok(norm_map(pattern, &norms[head * seq..(head + 1) * seq], seq))
        }
        (View::Rollout, None) => Ok(rollout(&layers_up_to(capture, layer)?, heads, seq).pop().unwrap_or_default()),
        (View::Flow, None) => {
            check_flow_size(layer + 1, seq)?;
            let layers = layers_up_to(capture, layer)?;
            let residuals: Vec<Vec<f64>> = layers.iter().map(|p| residual_attention(p, heads, seq)).collect();
            Ok(flow_of_layer(&Graph::layered(&residuals, seq), layer, seq))
        }
    }
}

/// A whole view of a capture with every layer: `[layers, heads, seq, seq]` for weights and
/// norm, `[layers, seq, seq]` for rollout and flow (R_l, flow_l for every l).
pub fn view_all(capture: &Capture, view: View) -> Result<Vec<f32>> {
    let (seq, heads) = (capture.seq, capture.heads);
    let missing = || Error::Input("the capture is missing layers".into());
    match view {
        View::Weights => capture.dense().ok_or_else(missing),
        View::Norm => {
            let mut all = Vec::with_capacity(capture.layers * heads * seq * seq);
            for layer in 0..capture.layers {
                let patterns = capture.layer(layer).ok_or_else(missing)?;
                let norms = capture.value_norms(layer).ok_or_else(|| Error::Input(format!("the value norms of layer {layer} were not captured")))?;
                all.extend(norm_layer(patterns, norms, seq));
            }
            Ok(all)
        }
        View::Rollout => Ok(rollout(&layers_up_to(capture, capture.layers - 1)?, heads, seq).concat()),
        View::Flow => {
            check_flow_size(capture.layers, seq)?;
            Ok(flow(&layers_up_to(capture, capture.layers - 1)?, heads, seq).concat())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32], tolerance: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tolerance)
    }

    #[test]
    fn norm_scales_each_key_column_by_its_value_norm() {
        // Two heads, two tokens: head 0 looks at token 1, whose value is short (0.1).
        let patterns = [0.2, 0.8, 0.4, 0.6, 1.0, 0.0, 0.5, 0.5];
        let norms = [3.0, 0.1, 1.0, 2.0];
        let n = norm_layer(&patterns, &norms, 2);
        assert!(close(&n, &[0.6, 0.08, 1.2, 0.06, 1.0, 0.0, 0.5, 1.0], 1e-6), "{n:?}");
    }

    #[test]
    fn residual_attention_averages_heads_and_adds_half_the_identity() {
        // Head 0: everything on token 0; head 1: everything on token 1.
        let patterns = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
        let residual = residual_attention(&patterns, 2, 2);
        assert_eq!(residual, vec![0.75, 0.25, 0.25, 0.75]);
    }

    #[test]
    fn rollout_multiplies_layers_from_the_bottom() {
        // One head per layer. Layer 0: token 1 looks at token 0; layer 1: token 0 looks at token 1.
        let layer0 = [1.0, 0.0, 1.0, 0.0];
        let layer1 = [0.0, 1.0, 0.0, 1.0];
        let rolled = rollout(&[&layer0, &layer1], 1, 2);
        // Â_0 = [[1, 0], [.5, .5]], Â_1 = [[.5, .5], [0, 1]]; R_1 = Â_1 Â_0 = [[.75, .25], [.5, .5]].
        assert!(close(&rolled[0], &[1.0, 0.0, 0.5, 0.5], 1e-7));
        assert!(close(&rolled[1], &[0.75, 0.25, 0.5, 0.5], 1e-7), "{:?}", rolled[1]);
        for row in rolled[1].chunks(2) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn flow_on_two_layers_of_two_tokens_matches_the_hand_computation() {
        // Â_0 = [[1, 0], [.5, .5]], Â_1 = [[.5, .5], [0, 1]] (as in the rollout test).
        // From (2, 0): edges to (1, 0) cap .5 and (1, 1) cap .5; (1, 0) -> (0, 0) cap 1;
        // (1, 1) -> (0, 0) cap .5, (1, 1) -> (0, 1) cap .5.
        // To token 0: .5 via (1, 0) + .5 via (1, 1) = 1. To token 1: .5 via (1, 1).
        // Row 0 = [1, .5] / 1.5. From (2, 1): only (1, 1) cap 1: to token 0 .5, token 1 .5.
        let layer0 = [1.0, 0.0, 1.0, 0.0];
        let layer1 = [0.0, 1.0, 0.0, 1.0];
        let flows = flow(&[&layer0, &layer1], 1, 2);
        assert!(close(&flows[1], &[2.0 / 3.0, 1.0 / 3.0, 0.5, 0.5], 1e-7), "{:?}", flows[1]);
        // One layer: the flow is Â_0 itself, row-normalised.
        assert!(close(&flows[0], &[1.0, 0.0, 0.5, 0.5], 1e-7), "{:?}", flows[0]);
    }

    #[test]
    fn flow_finds_paths_that_need_a_reverse_edge() {
        // Two tokens per level; source s = (3, 0), sink t = (0, 0); x = level 2, y = level 1.
        // s -> x0, s -> x1; x0 -> y0, x0 -> y1; x1 -> y0 only; y0 -> t, y1 -> t; all capacity 1.
        // The first path found, s-x0-y0-t, blocks x1; the maximum (2) needs x0's unit moved to
        // y1 through the reverse edge y0 -> x0.
        let residuals = vec![vec![1.0, 0.0, 1.0, 0.0], vec![1.0, 1.0, 1.0, 0.0], vec![1.0, 1.0, 0.0, 0.0]];
        let graph = Graph::layered(&residuals, 2);
        let mut dinic = Dinic::new(&graph);
        assert!((dinic.max_flow(6, 0) - 2.0).abs() < 1e-12);
        // Nothing reaches token 1, and the answer does not depend on earlier targets.
        assert_eq!(dinic.max_flow(6, 1), 0.0);
        assert!((dinic.max_flow(6, 0) - 2.0).abs() < 1e-12);
        // From x1 = (2, 1): one unit through y0.
        assert!((dinic.max_flow(5, 0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn flow_refuses_long_inputs_with_the_limit() {
        assert_eq!(flow_max_tokens(6), 160);
        assert!(flow_max_tokens(1) > flow_max_tokens(30));
        let message = check_flow_size(6, 161).unwrap_err().to_string();
        assert!(message.contains("160 tokens") && message.contains("161"), "{message}");
        assert!(check_flow_size(6, 160).is_ok());
    }

    #[test]
    fn views_parse_and_say_what_they_are() {
        for view in View::ALL {
            assert_eq!(View::parse(view.name()), Some(view));
            assert!(!view.formula().is_empty());
        }
        assert_eq!(View::parse("gradient"), None);
        assert!(View::Norm.per_head() && !View::Flow.per_head());
    }
}
