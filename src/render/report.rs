//! `attnmap diff`'s report as text: a table for the terminal, Markdown for a
//! CI job summary, and JSON for scripts.

use std::fmt::Write;

use crate::analysis::diff::{Aggregate, DiffReport, Failure, HeadReport, Summary};

/// What the threshold is compared with, in words: "jsd on any text" or "mean jsd over 12 texts".
fn judged_name(report: &DiffReport) -> String {
    let metric = report.metric.name();
    match report.aggregate {
        Aggregate::Worst => format!("{metric} on any text"),
        Aggregate::Mean => format!("mean {metric} over {} text{}", report.texts.len(), plural(report.texts.len())),
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// "layer 2 head 5, jsd 0.200000 on text 3 (\"Disk usage…\")"; under --aggregate mean
/// the head's mean comes first, then its worst text's own value.
fn failure_words(report: &DiffReport, failure: &Failure) -> String {
    let metric = report.metric.name();
    let on_text = format!("{metric} {:.6} on text {} ({:?})", failure.text_value, failure.text_index + 1, snippet(&failure.text));
    match report.aggregate {
        Aggregate::Worst => format!("layer {} head {}, {on_text}", failure.layer, failure.head),
        Aggregate::Mean => format!("layer {} head {}, mean {metric} {:.6}; largest {on_text}", failure.layer, failure.head, failure.value),
    }
}

fn verdict_line(report: &DiffReport) -> String {
    let total = report.layers * report.heads_per_layer;
    if report.passed() {
        format!("PASS: no head has {} above {} ({total} heads compared)", judged_name(report), report.threshold)
    } else {
        let worst = failure_words(report, &report.failing[0]);
        format!("FAIL: {} of {total} heads have {} above {}; worst: {worst}", report.exceeding, judged_name(report), report.threshold)
    }
}

fn texts_line(report: &DiffReport) -> String {
    let lengths: Vec<usize> = report.texts.iter().map(|t| t.tokens).collect();
    let (min, max) = (lengths.iter().min().copied().unwrap_or(0), lengths.iter().max().copied().unwrap_or(0));
    let range = if min == max { format!("{min} tokens") } else { format!("{min}-{max} tokens") };
    format!("{} text{} ({range})", report.texts.len(), plural(report.texts.len()))
}

fn rule_line(report: &DiffReport) -> String {
    let how = match report.aggregate {
        Aggregate::Worst => "each head's worst text is judged (--aggregate worst)",
        Aggregate::Mean => "each head's mean over the texts is judged (--aggregate mean)",
    };
    format!("{} (threshold {}; {how}; * marks heads above it)", report.metric.name(), report.threshold)
}

fn mark(report: &DiffReport, head: &HeadReport) -> &'static str {
    if head.judged > report.threshold {
        "*"
    } else {
        ""
    }
}

/// A plain table for a terminal or a CI log.
pub fn text(report: &DiffReport) -> String {
    let mut out = String::new();
    let metric = report.metric.name();
    let _ = writeln!(out, "attnmap diff: {}", verdict_line(report));
    let _ = writeln!(out, "  old:    {}", report.old);
    let _ = writeln!(out, "  new:    {}", report.new);
    let _ = writeln!(out, "  probe:  {}", texts_line(report));
    let _ = writeln!(out, "  metric: {}", rule_line(report));
    let _ = writeln!(out, "  worst:  {}", failure_words(report, &report.worst_case));
    let _ = writeln!(out);
    let _ = writeln!(out, "top changed heads (by {}; mean_abs and jsd are means over the texts, max_abs the largest):", judged_name(report));
    let (mean_col, worst_col) = (format!("mean {metric}"), format!("worst {metric}"));
    let _ = writeln!(out, "  {:>5} {:>4}  {:>10}  {:>10}  {:>10}  {mean_col:>13}  {worst_col:>13}  {:>5}", "layer", "head", "mean_abs", "max_abs", "jsd", "text");
    if report.top.iter().all(|h| h.over_texts.max_abs == 0.0) {
        let _ = writeln!(out, "  (no head changed)");
    } else {
        for head in &report.top {
            let h = &head.over_texts;
            let line = format!(
                "  {:>5} {:>4}  {:>10.6}  {:>10.6}  {:>10.6}  {:>13.6}  {:>13.6}  {:>5} {}",
                h.layer,
                h.head,
                h.mean_abs,
                h.max_abs,
                h.jsd,
                head.mean,
                head.worst,
                head.worst_text + 1,
                mark(report, head)
            );
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
        let _ = writeln!(out, "per text (most-changed head by {metric}, and its value on that text):");
        let _ = writeln!(out, "  {:>4}  {:>6}  {:>10}  {:>10}  {:>10}  {:>9}  {:>10}  text", "#", "tokens", "mean_abs", "max_abs", "mean jsd", "worst", metric);
        for text in &report.texts {
            let worst = format!("L{} H{}", text.worst.layer, text.worst.head);
            let s = &text.overall;
            let value = report.metric.of(&text.worst);
            let _ = writeln!(
                out,
                "  {:>4}  {:>6}  {:>10.6}  {:>10.6}  {:>10.6}  {worst:>9}  {value:>10.6}  {}",
                text.index + 1,
                text.tokens,
                s.mean_abs,
                s.max_abs,
                s.jsd,
                snippet(&text.text)
            );
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
    let metric = report.metric.name();
    let cell = |text: &str| text.replace('|', "\\|");
    let _ = writeln!(out, "## attnmap diff: {}\n", cell(&verdict_line(report)));
    let _ = writeln!(out, "| | |\n| --- | --- |");
    let _ = writeln!(out, "| old | `{}` |", cell(&report.old));
    let _ = writeln!(out, "| new | `{}` |", cell(&report.new));
    let _ = writeln!(out, "| probe | {} |", texts_line(report));
    let _ = writeln!(out, "| metric | `{metric}`, threshold {} |", report.threshold);
    let _ = writeln!(out, "| aggregate | `{}`: {} |", report.aggregate.name(), cell(&judged_name(report)));
    let _ = writeln!(out, "| worst | {} |\n", cell(&failure_words(report, &report.worst_case)));
    let _ = writeln!(out, "### Top changed heads (by {})\n", judged_name(report));
    let _ = writeln!(
        out,
        "| layer | head | mean_abs | max_abs | jsd | mean {metric} | worst {metric} | worst text | above |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"
    );
    for head in &report.top {
        let above = if mark(report, head).is_empty() { "" } else { "yes" };
        let h = &head.over_texts;
        let _ = writeln!(
            out,
            "| {} | {} | {:.6} | {:.6} | {:.6} | {:.6} | {:.6} | {} | {above} |",
            h.layer,
            h.head,
            h.mean_abs,
            h.max_abs,
            h.jsd,
            head.mean,
            head.worst,
            head.worst_text + 1
        );
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
        let _ = writeln!(out, "| # | tokens | mean_abs | max_abs | mean jsd | most changed | {metric} | text |\n| ---: | ---: | ---: | ---: | ---: | :---: | ---: | --- |");
        for text in &report.texts {
            let s = &text.overall;
            let _ = writeln!(
                out,
                "| {} | {} | {:.6} | {:.6} | {:.6} | L{} H{} | {:.6} | {} |",
                text.index + 1,
                text.tokens,
                s.mean_abs,
                s.max_abs,
                s.jsd,
                text.worst.layer,
                text.worst.head,
                report.metric.of(&text.worst),
                cell(&snippet(&text.text))
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
