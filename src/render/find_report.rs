//! `attnmap find`'s report: the summary line first, then the heads by q and score; or JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::analysis::find::{HeadResult, ThresholdCount};

/// Everything `find` learned, as printed and as saved.
#[derive(Debug, Clone, Serialize)]
pub struct FindReport {
    pub pattern: String,
    pub model: String,
    /// "keys" or "shuffle".
    pub null: &'static str,
    pub trials: usize,
    pub seed: u64,
    pub alpha: f64,
    pub texts: usize,
    /// Queries scored (token rows, or word pairs).
    pub queries: usize,
    pub level: &'static str,
    pub layers: usize,
    pub heads_per_layer: usize,
    /// Every head, layer-major.
    pub heads: Vec<HeadResult>,
    pub threshold: Option<ThresholdCount>,
}

impl FindReport {
    pub fn passing(&self) -> usize {
        self.heads.iter().filter(|h| h.pass).count()
    }
}

fn plural(count: usize, word: &str) -> String {
    format!("{count} {word}{}", if count == 1 { "" } else { "s" })
}

/// The one line a reader cannot misread.
pub fn summary(report: &FindReport) -> String {
    let null = match report.null {
        "shuffle" => format!("{} of each text's tokens", plural(report.trials, "shuffle")),
        _ => format!("{} random-key trials", report.trials),
    };
    let mut line = format!(
        "{} on {} ({}): {} of {} heads pass at FDR {} (null: {null}).",
        report.pattern,
        plural(report.texts, "text"),
        plural(report.queries, if report.pattern.starts_with("pairs") { "pair" } else { "query" }).replace("querys", "queries"),
        report.passing(),
        report.heads.len(),
        report.alpha,
    );
    if let Some(t) = &report.threshold {
        let _ = write!(line, " At score >= {}: {}; by chance {:.1} (95%: {}\u{2013}{}).", t.score, plural(t.heads, "head"), t.null_mean, t.null_low, t.null_high);
    }
    line
}

/// The heads sorted by q, then score (highest first).
pub fn ranked(heads: &[HeadResult]) -> Vec<&HeadResult> {
    let mut rows: Vec<&HeadResult> = heads.iter().collect();
    rows.sort_by(|a, b| a.q.total_cmp(&b.q).then(b.score.total_cmp(&a.score)).then((a.layer, a.head).cmp(&(b.layer, b.head))));
    rows
}

/// The summary line, then the first `top` heads by q and score.
pub fn text(report: &FindReport, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", summary(report));
    let _ = writeln!(out, "model {} · {} level · seed {} · p = (1 + #trials >= score) / (trials + 1), q = Benjamini-Hochberg over all {} heads", report.model, report.level, report.seed, report.heads.len());
    let _ = writeln!(out);
    let _ = writeln!(out, "{:>5} {:>4}  {:>8}  {:>9}  {:>7}  {:>7}  {:>7}  pass", "layer", "head", "score", "null_mean", "null_sd", "p", "q");
    let rows = ranked(&report.heads);
    for head in rows.iter().take(top) {
        let _ = writeln!(
            out,
            "{:>5} {:>4}  {:>8.4}  {:>9.4}  {:>7.4}  {:>7.4}  {:>7.4}  {}",
            head.layer,
            head.head,
            head.score,
            head.null_mean,
            head.null_sd,
            head.p,
            head.q,
            if head.pass { "yes" } else { "no" }
        );
    }
    if rows.len() > top {
        let _ = writeln!(out, "({} more heads; --top N lists more, --json all)", rows.len() - top);
    }
    out
}

/// `{"summary", "pattern", "null", "trials", "alpha", ..., "heads": [...], "threshold": {...} | null}`.
pub fn json(report: &FindReport) -> String {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("summary".into(), summary(report).into());
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
