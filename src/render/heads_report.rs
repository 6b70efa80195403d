//! `attnmap heads`' report as text: a table with a per-layer summary, CSV, JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::analysis::stats::{HeadStats, COLUMNS, PATTERNS};

/// Every head's statistics over a probe set.
#[derive(Debug, Clone, Serialize)]
pub struct HeadsReport {
    pub model: String,
    pub texts: usize,
    /// "tokens" or "words".
    pub level: &'static str,
    pub causal: bool,
    pub layers: usize,
    pub heads_per_layer: usize,
    pub heads: Vec<HeadStats>,
}

fn cell(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

/// The table (`rows`: the heads to list, already sorted and cut), then one summary line per layer.
pub fn table(report: &HeadsReport, rows: &[HeadStats]) -> String {
    let mut out = String::new();
    let plural = if report.texts == 1 { "" } else { "s" };
    let _ = writeln!(out, "attnmap heads: {} · {} text{plural} · {} heads ({} level)", report.model, report.texts, report.heads.len(), report.level);
    let short = ["entropy", "ent_norm", "first", "special", "punct", "self", "prev", "next", "distance", "max"];
    let mut header = format!("{:>5} {:>4}", "layer", "head");
    for name in short {
        let _ = write!(header, " {name:>8}");
    }
    let _ = writeln!(out, "{header}  pattern");
    for head in rows {
        let mut line = format!("{:>5} {:>4}", head.layer, head.head);
        for value in head.values {
            let _ = write!(line, " {:>8}", cell(value));
        }
        let _ = writeln!(out, "{line}  {}", head.pattern);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "per layer (mean over its heads; how many heads carry each label):");
    for layer in 0..report.layers {
        let heads: Vec<&HeadStats> = report.heads.iter().filter(|h| h.layer == layer).collect();
        let mean = |column: &str| {
            let values: Vec<f64> = heads.iter().filter_map(|h| h.get(column)).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        let labels: Vec<String> = PATTERNS
            .iter()
            .filter_map(|p| {
                let count = heads.iter().filter(|h| h.pattern == *p).count();
                (count > 0).then(|| format!("{count} {p}"))
            })
            .collect();
        let _ = writeln!(
            out,
            "  layer {layer}: entropy_norm {}, first {}, prev {}, distance {}; {}",
            cell(mean("entropy_norm")),
            cell(mean("first")),
            cell(mean("prev")),
            cell(mean("distance")),
            labels.join(", ")
        );
    }
    out
}

/// Every head as CSV: layer, head, the columns (empty where undefined), pattern.
pub fn csv(heads: &[HeadStats]) -> String {
    let mut out = format!("layer,head,{},pattern\n", COLUMNS.join(","));
    for head in heads {
        let values: Vec<String> = head.values.iter().map(|v| v.map(|v| format!("{v}")).unwrap_or_default()).collect();
        let _ = writeln!(out, "{},{},{},{}", head.layer, head.head, values.join(","), head.pattern);
    }
    out
}

/// `{"model", "texts", "level", "causal", "heads": [{"layer", "head", <columns>, "pattern"}]}`.
pub fn json(report: &HeadsReport) -> String {
    let value = serde_json::json!({
        "model": report.model,
        "texts": report.texts,
        "level": report.level,
        "causal": report.causal,
        "heads": report.heads,
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
