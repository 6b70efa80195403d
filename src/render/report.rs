//! `attnmap diff`'s report as text: a table for the terminal, Markdown for a
//! CI job summary, and JSON for scripts.

use std::fmt::Write;

use crate::analysis::diff::{DiffReport, HeadDiff, Summary};

fn verdict_line(report: &DiffReport) -> String {
    let metric = report.metric.name();
    let total = report.layers * report.heads_per_layer;
    if report.passed() {
        format!("PASS: no head has {metric} above {} ({total} heads compared)", report.threshold)
    } else {
        format!("FAIL: {} of {total} heads have {metric} above {}", report.exceeding, report.threshold)
    }
}

fn texts_line(report: &DiffReport) -> String {
    let lengths: Vec<usize> = report.texts.iter().map(|t| t.tokens).collect();
    let (min, max) = (lengths.iter().min().copied().unwrap_or(0), lengths.iter().max().copied().unwrap_or(0));
    let range = if min == max { format!("{min} tokens") } else { format!("{min}-{max} tokens") };
    format!("{} text{} ({range})", report.texts.len(), if report.texts.len() == 1 { "" } else { "s" })
}

fn mark(report: &DiffReport, head: &HeadDiff) -> &'static str {
    if report.metric.of(head) > report.threshold {
        "*"
    } else {
        ""
    }
}

/// A plain table for a terminal or a CI log.
pub fn text(report: &DiffReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "attnmap diff: {}", verdict_line(report));
    let _ = writeln!(out, "  old:    {}", report.old);
    let _ = writeln!(out, "  new:    {}", report.new);
    let _ = writeln!(out, "  probe:  {}", texts_line(report));
    let _ = writeln!(out, "  metric: {} (threshold {}; * marks heads above it)", report.metric.name(), report.threshold);
    let _ = writeln!(out);
    let _ = writeln!(out, "top changed heads (by {}):", report.metric.name());
    let _ = writeln!(out, "  {:>5} {:>4}  {:>10}  {:>10}  {:>10}", "layer", "head", "mean_abs", "max_abs", "jsd");
    if report.top.iter().all(|h| report.metric.of(h) == 0.0) {
        let _ = writeln!(out, "  (no head changed)");
    } else {
        for head in &report.top {
            let line = format!("  {:>5} {:>4}  {:>10.6}  {:>10.6}  {:>10.6} {}", head.layer, head.head, head.mean_abs, head.max_abs, head.jsd, mark(report, head));
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "per layer:");
    let _ = writeln!(out, "  {:>5}  {:>10}  {:>10}  {:>10}  {:>10}", "layer", "mean_abs", "max_abs", "mean jsd", "max jsd");
    for layer in &report.per_layer {
        let _ = writeln!(out, "  {:>5}  {}", layer.layer, summary_cells(&layer.summary));
    }
    let _ = writeln!(out, "  {:>5}  {}", "all", summary_cells(&report.overall));
    if report.texts.len() > 1 {
        let _ = writeln!(out);
        let _ = writeln!(out, "per text (most-changed head by {}):", report.metric.name());
        let _ = writeln!(out, "  {:>4}  {:>6}  {:>10}  {:>10}  {:>10}  {:>9}  text", "#", "tokens", "mean_abs", "max_abs", "mean jsd", "worst");
        for text in &report.texts {
            let worst = format!("L{} H{}", text.worst.layer, text.worst.head);
            let s = &text.overall;
            let _ = writeln!(out, "  {:>4}  {:>6}  {:>10.6}  {:>10.6}  {:>10.6}  {worst:>9}  {}", text.index + 1, text.tokens, s.mean_abs, s.max_abs, s.jsd, snippet(&text.text));
        }
    }
    out
}

/// The start of a probe text, on one line.
fn snippet(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 48 {
        format!("{}…", flat.chars().take(47).collect::<String>())
    } else {
        flat
    }
}

fn summary_cells(summary: &Summary) -> String {
    format!("{:>10.6}  {:>10.6}  {:>10.6}  {:>10.6}", summary.mean_abs, summary.max_abs, summary.jsd, summary.max_jsd)
}

/// Markdown for a CI job summary ($GITHUB_STEP_SUMMARY and the like).
pub fn markdown(report: &DiffReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## attnmap diff: {}\n", verdict_line(report));
    let _ = writeln!(out, "| | |\n| --- | --- |");
    let _ = writeln!(out, "| old | `{}` |", report.old.replace('|', "\\|"));
    let _ = writeln!(out, "| new | `{}` |", report.new.replace('|', "\\|"));
    let _ = writeln!(out, "| probe | {} |", texts_line(report));
    let _ = writeln!(out, "| metric | `{}`, threshold {} |\n", report.metric.name(), report.threshold);
    let _ = writeln!(out, "### Top changed heads (by {})\n", report.metric.name());
    let _ = writeln!(out, "| layer | head | mean_abs | max_abs | jsd | above |\n| ---: | ---: | ---: | ---: | ---: | :---: |");
    for head in &report.top {
        let above = if mark(report, head).is_empty() { "" } else { "yes" };
        let _ = writeln!(out, "| {} | {} | {:.6} | {:.6} | {:.6} | {above} |", head.layer, head.head, head.mean_abs, head.max_abs, head.jsd);
    }
    let _ = writeln!(out, "\n### Per layer\n");
    let _ = writeln!(out, "| layer | mean_abs | max_abs | mean jsd | max jsd |\n| ---: | ---: | ---: | ---: | ---: |");
    for layer in &report.per_layer {
        let s = &layer.summary;
        let _ = writeln!(out, "| {} | {:.6} | {:.6} | {:.6} | {:.6} |", layer.layer, s.mean_abs, s.max_abs, s.jsd, s.max_jsd);
    }
    let s = &report.overall;
    let _ = writeln!(out, "| **all** | {:.6} | {:.6} | {:.6} | {:.6} |", s.mean_abs, s.max_abs, s.jsd, s.max_jsd);
    if report.texts.len() > 1 {
        let _ = writeln!(out, "\n### Per text\n");
        let _ = writeln!(out, "| # | tokens | mean_abs | max_abs | mean jsd | most changed | text |\n| ---: | ---: | ---: | ---: | ---: | :---: | --- |");
        for text in &report.texts {
            let s = &text.overall;
            let _ = writeln!(
                out,
                "| {} | {} | {:.6} | {:.6} | {:.6} | L{} H{} | {} |",
                text.index + 1,
                text.tokens,
                s.mean_abs,
                s.max_abs,
                s.jsd,
                text.worst.layer,
                text.worst.head,
                snippet(&text.text).replace('|', "\\|")
            );
        }
    }
    out
}

/// The whole report as JSON (every head included).
pub fn json(report: &DiffReport) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
