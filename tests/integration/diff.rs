//! `attnmap diff`: figures equal numpy's, exit codes like diff(1), and
//! incomparable inputs refused with the place they part.

use crate::helpers::{assert_clean_failure, attnmap, fixtures, minilm_dir, sre_dir, stderr, tiny_bert_dir};

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn dump_figures_equal_numpy() {
    let diff = fixtures().join("diff");
    let output = attnmap(&["diff", diff.join("old").to_str().unwrap(), diff.join("new").to_str().unwrap(), "--json", "--fail-above", "1"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(diff.join("expected.json")).unwrap()).unwrap();
    let ours = report["heads"].as_array().unwrap();
    let theirs = expected["heads"].as_array().unwrap();
    assert_eq!(ours.len(), 72);
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!((&a["layer"], &a["head"]), (&b["layer"], &b["head"]));
        for metric in ["mean_abs", "max_abs", "jsd"] {
            let (x, y) = (a[metric].as_f64().unwrap(), b[metric].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6, "L{} H{} {metric}: attnmap {x} vs numpy {y}", a["layer"], a["head"]);
        }
    }
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["threshold"], 1.0);
    assert_eq!(report["metric"], "jsd");
    // Top heads are the largest by the metric, in order.
    let top: Vec<f64> = report["top"].as_array().unwrap().iter().map(|h| h["jsd"].as_f64().unwrap()).collect();
    let max = theirs.iter().map(|h| h["jsd"].as_f64().unwrap()).fold(0.0, f64::max);
    assert!((top[0] - max).abs() <= 1e-6);
    assert!(top.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn a_model_against_itself_is_exactly_zero() {
    let model = minilm_dir();
    let output = attnmap(&["diff", "--model", model.to_str().unwrap(), "--against", model.to_str().unwrap(), "The WhirlyGigs arrived broken", "--json"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    for head in report["heads"].as_array().unwrap() {
        for metric in ["mean_abs", "max_abs", "jsd"] {
            assert_eq!(head[metric].as_f64().unwrap(), 0.0, "{head}");
        }
    }
    assert_eq!(report["verdict"], "pass");
}

#[test]
fn base_against_fine_tune_fails_a_small_threshold_and_passes_a_loose_one() {
    let (base, tuned) = (minilm_dir(), sre_dir());
    let probes = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(probes.path(), "The WhirlyGigs arrived broken\n\n{\"text\": \"Is the server down?\", \"pair\": \"The dashboard shows errors.\"}\nDisk usage at 95% on node 7.\n").unwrap();
    let run = |threshold: &str, metric: &str| {
        attnmap(
            &["diff", "--model", base.to_str().unwrap(), "--against", tuned.to_str().unwrap(), "--texts", probes.path().to_str().unwrap(), "--fail-above", threshold, "--metric", metric, "--json"],
            &[],
        )
    };
    let strict = run("0.001", "jsd");
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    let report = json(&strict);
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["texts"].as_array().unwrap().len(), 3);
    assert!(report["exceeding"].as_u64().unwrap() > 0);
    let loose = run("0.7", "jsd");
    assert_eq!(loose.status.code(), Some(0), "{}", stderr(&loose));
    assert_eq!(run("1.0", "max_abs").status.code(), Some(0));
    assert_eq!(run("0.01", "mean_abs").status.code(), Some(1));
    // The table reports each text as well as the aggregate.
    let table = attnmap(&["diff", "--model", base.to_str().unwrap(), "--against", tuned.to_str().unwrap(), "--texts", probes.path().to_str().unwrap(), "--fail-above", "1"], &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("per text") && text.contains("Disk usage at 95% on node 7."), "{text}");
}

#[test]
fn markdown_table_and_pictures() {
    let diff = fixtures().join("diff");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let output = attnmap(
        &["diff", diff.join("old").to_str().unwrap(), diff.join("new").to_str().unwrap(), "--markdown", "--top", "3", "--out", out.to_str().unwrap(), "--fail-above", "0.01"],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("## attnmap diff: FAIL"), "{text}");
    assert!(text.contains("| layer | head | mean_abs | max_abs | jsd |"));
    let pictures: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(pictures.iter().filter(|p| p.starts_with('L')).count(), 3, "{pictures:?}");
    for file in ["grid.png", "report.md", "report.json"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let side_by_side = image::open(out.join(pictures.iter().find(|p| p.starts_with('L')).unwrap())).unwrap();
    assert!(side_by_side.width() > 2 * side_by_side.height(), "three panels side by side");
    // The plain table is the default.
    let plain = attnmap(&["diff", diff.join("old").to_str().unwrap(), diff.join("new").to_str().unwrap()], &[]);
    assert_eq!(plain.status.code(), Some(1), "the default threshold 0 fails on any change");
    assert!(String::from_utf8_lossy(&plain.stdout).contains("top changed heads"));
}

#[test]
fn incomparable_inputs_say_where_they_part() {
    let diff = fixtures().join("diff");
    // Different layer/head counts.
    let output = attnmap(&["diff", "--model", minilm_dir().to_str().unwrap(), "--against", tiny_bert_dir().to_str().unwrap(), "the cat sat"], &[]);
    assert_clean_failure(&output, "old has 6 layers x 12 heads, new has 2 x 4");
    // Different tokens: dump the fixture text's neighbour and compare.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    let made = attnmap(&["dump", "The WhirlyGigs arrived intact, and support never answered.", "--model", minilm_dir().to_str().unwrap(), "--out", other.to_str().unwrap()], &[]);
    assert!(made.status.success(), "{}", stderr(&made));
    let output = attnmap(&["diff", diff.join("old").to_str().unwrap(), other.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "first difference at token");
    // Not a dump.
    let output = attnmap(&["diff", diff.join("old").to_str().unwrap(), dir.path().to_str().unwrap()], &[]);
    assert_clean_failure(&output, "manifest.json");
    // One folder only.
    let output = attnmap(&["diff", diff.join("old").to_str().unwrap()], &[]);
    assert_clean_failure(&output, "two dump folders");
}

/// The README's CI flow, as the runnable script under examples/.
#[test]
fn the_ci_example_runs_and_fails_past_its_threshold() {
    let work = tempfile::tempdir().unwrap();
    let run = |threshold: &str| {
        std::process::Command::new("bash")
            .arg(crate::helpers::repo_root().join("examples/ci-diff.sh"))
            .env("ATTNMAP", env!("CARGO_BIN_EXE_attnmap"))
            .env("OLD_MODEL", minilm_dir())
            .env("NEW_MODEL", sre_dir())
            .env("WORK", work.path())
            .env("THRESHOLD", threshold)
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap()
    };
    let strict = run("0.001");
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(work.path().join("report/report.md").is_file());
    assert!(work.path().join("baseline/attention.npy").is_file());
    let loose = run("0.7");
    assert_eq!(loose.status.code(), Some(0), "{}", stderr(&loose));
    assert!(String::from_utf8_lossy(&loose.stdout).contains("## attnmap diff: PASS"));
}
