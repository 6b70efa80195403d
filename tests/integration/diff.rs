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
    let mut pictures: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pictures.retain(|p| p.starts_with('L'));
    pictures.sort();
    // The three pictures are the report's top three heads.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let mut top: Vec<String> = report["top"].as_array().unwrap().iter().map(|h| format!("L{:02}_H{:02}.png", h["layer"].as_u64().unwrap(), h["head"].as_u64().unwrap())).collect();
    top.sort();
    assert_eq!(pictures, top);
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

/// The 12-text probe set of tests/fixtures/probes-sre.txt, MiniLM against its fine-tune.
fn probe_set_report(extra: &[&str]) -> std::process::Output {
    let (base, tuned, probes) = (minilm_dir(), sre_dir(), fixtures().join("probes-sre.txt"));
    let args = [&["-q", "diff", "--model", base.to_str().unwrap(), "--against", tuned.to_str().unwrap(), "--texts", probes.to_str().unwrap()], extra].concat();
    attnmap(&args, &[])
}

/// Each text of the probe set run alone: per text, every head's jsd (from the report's own figures).
fn per_text_jsd() -> Vec<Vec<f64>> {
    let (base, tuned) = (minilm_dir(), sre_dir());
    std::fs::read_to_string(fixtures().join("probes-sre.txt"))
        .unwrap()
        .lines()
        .map(|text| {
            let output = attnmap(&["-q", "diff", "--model", base.to_str().unwrap(), "--against", tuned.to_str().unwrap(), text, "--json", "--fail-above", "1"], &[]);
            assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            json(&output)["heads"].as_array().unwrap().iter().map(|h| h["jsd"].as_f64().unwrap()).collect()
        })
        .collect()
}

/// A gate judges the worst case: a threshold between the largest per-head mean and the
/// worst single (text, head) passes with --aggregate mean and fails by default, and the
/// report names the failing text and head with that text's own value, as each text run
/// alone gives it. Per-head means stay in the report and equal the means of those runs.
#[test]
fn the_worst_text_fails_the_gate_and_is_named() {
    let per_text = per_text_jsd();
    let heads = per_text[0].len();
    let mean = |head: usize| per_text.iter().map(|t| t[head]).sum::<f64>() / per_text.len() as f64;
    let largest_mean = (0..heads).map(mean).fold(0.0, f64::max);
    let (worst_text, worst_head, worst) = per_text
        .iter()
        .enumerate()
        .flat_map(|(t, values)| values.iter().enumerate().map(move |(h, &v)| (t, h, v)))
        .fold((0, 0, f64::MIN), |best, candidate| if candidate.2 > best.2 { candidate } else { best });
    // The probe set was chosen so that this holds with a wide margin (0.100 vs 0.224 here).
    let threshold = 0.15;
    assert!(largest_mean < threshold - 0.02 && worst > threshold + 0.02, "probe set: largest mean {largest_mean}, worst {worst}");

    let gate = probe_set_report(&["--fail-above", "0.15", "--json"]);
    assert_eq!(gate.status.code(), Some(1), "worst-case judging is the default: {}", stderr(&gate));
    let report = json(&gate);
    assert_eq!((report["aggregate"].as_str(), report["verdict"].as_str()), (Some("worst"), Some("fail")));
    let first = &report["failing"][0];
    let layer_head = |index: usize| (index / 12, index % 12);
    assert_eq!((first["layer"].as_u64().unwrap() as usize, first["head"].as_u64().unwrap() as usize), layer_head(worst_head));
    assert_eq!(first["text_index"].as_u64().unwrap() as usize, worst_text);
    assert_eq!(first["text"].as_str().unwrap(), std::fs::read_to_string(fixtures().join("probes-sre.txt")).unwrap().lines().nth(worst_text).unwrap());
    assert!((first["text_value"].as_f64().unwrap() - worst).abs() <= 1e-9, "the text's own value: {first} vs {worst}");
    assert_eq!(first["value"], first["text_value"]);
    // Every head past the threshold on some text is listed, and only those.
    let exceeding = (0..heads).filter(|&h| per_text.iter().any(|t| t[h] > threshold)).count();
    assert_eq!(report["exceeding"].as_u64().unwrap() as usize, exceeding);
    assert_eq!(report["failing"].as_array().unwrap().len(), exceeding);
    for (index, head) in report["heads"].as_array().unwrap().iter().enumerate() {
        assert!((head["mean"].as_f64().unwrap() - mean(index)).abs() <= 1e-9, "head {index}: mean {head}");
        assert!((head["jsd"].as_f64().unwrap() - mean(index)).abs() <= 1e-9, "head {index}: jsd stays the mean");
        let worst_of_head = per_text.iter().map(|t| t[index]).fold(f64::MIN, f64::max);
        assert!((head["worst"].as_f64().unwrap() - worst_of_head).abs() <= 1e-9, "head {index}: worst {head}");
    }

    let lenient = probe_set_report(&["--fail-above", "0.15", "--json", "--aggregate", "mean"]);
    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
    let report = json(&lenient);
    assert_eq!((report["aggregate"].as_str(), report["verdict"].as_str()), (Some("mean"), Some("pass")));
    assert_eq!(report["worst_case"]["text_index"].as_u64().unwrap() as usize, worst_text, "the worst text is still reported");

    // The table and the Markdown say which aggregate judged, and name the text and head.
    let table = probe_set_report(&["--fail-above", "0.15"]);
    let text = String::from_utf8_lossy(&table.stdout);
    let (layer, head) = layer_head(worst_head);
    let named = format!("worst: layer {layer} head {head}, jsd {worst:.6} on text {}", worst_text + 1);
    assert!(text.starts_with("attnmap diff: FAIL") && text.contains(&named) && text.contains("--aggregate worst"), "{text}");
    let markdown = probe_set_report(&["--fail-above", "0.15", "--markdown", "--aggregate", "mean"]);
    let text = String::from_utf8_lossy(&markdown.stdout);
    assert!(text.starts_with("## attnmap diff: PASS") && text.contains("| aggregate | `mean`") && text.contains(&format!("largest jsd {worst:.6} on text {}", worst_text + 1)), "{text}");

    // --out draws exactly the top heads of either ranking, though only their maps were kept.
    for aggregate in ["worst", "mean"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("report");
        let output = probe_set_report(&["--fail-above", "0.15", "--aggregate", aggregate, "--top", "4", "--out", out.to_str().unwrap()]);
        assert!(matches!(output.status.code(), Some(0 | 1)), "{}", stderr(&output));
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(report["aggregate"], aggregate);
        let mut top: Vec<String> = report["top"].as_array().unwrap().iter().map(|h| format!("L{:02}_H{:02}.png", h["layer"].as_u64().unwrap(), h["head"].as_u64().unwrap())).collect();
        let mut pictures: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|f| f.starts_with('L')).collect();
        top.sort();
        pictures.sort();
        assert_eq!(pictures, top, "--aggregate {aggregate}");
    }
}

/// Copy the fixture dump `old` to a temp folder and let `spoil` change its manifest or maps.
fn spoiled_dump(spoil: impl FnOnce(&mut serde_json::Value, &mut Vec<f32>, &mut Vec<usize>)) -> (tempfile::TempDir, std::process::Output) {
    let source = fixtures().join("diff/old");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("old");
    std::fs::create_dir(&copy).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(source.join("manifest.json")).unwrap()).unwrap();
    let (mut shape, mut values) = attnmap::output::read_npy_f32(&std::fs::read(source.join("attention.npy")).unwrap()).unwrap();
    spoil(&mut manifest, &mut values, &mut shape);
    std::fs::write(copy.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(copy.join("attention.npy"), attnmap::output::npy_f32(&shape, &values)).unwrap();
    let output = attnmap(&["diff", copy.to_str().unwrap(), source.to_str().unwrap(), "--fail-above", "1"], &[]);
    (dir, output)
}

/// attnmap never writes NaN, infinite or negative weights, rows that do not sum to 1,
/// unknown layouts or shapes that disagree: reading one is an input error naming the cell or field.
#[test]
fn damaged_dumps_are_refused_naming_the_cell_or_field() {
    // The fixture is [6, 12, 16, 16]; layer 2, head 7, query 3, key 5.
    let cell = ((2 * 12 + 7) * 16 + 3) * 16 + 5;
    let (_dir, untouched) = spoiled_dump(|_, _, _| {});
    assert_eq!(untouched.status.code(), Some(0), "a faithful copy reads: {}", stderr(&untouched));
    for (value, what) in [(f32::NAN, "is NaN"), (f32::INFINITY, "is infinite"), (-1e-3, "is negative")] {
        let (_dir, output) = spoiled_dump(|_, values, _| values[cell] = value);
        assert_clean_failure(&output, &format!("layer 2, head 7, query 3, key 5 {what}"));
    }
    // Moving weight between two cells of a row keeps its sum: the diff reads it. Adding some does not.
    let (_dir, output) = spoiled_dump(|_, values, _| {
        values[cell] += 1e-3;
        values[cell + 1] -= 1e-3;
        assert!(values[cell + 1] >= 0.0);
    });
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (_dir, output) = spoiled_dump(|_, values, _| values[cell] += 1e-4);
    assert_clean_failure(&output, "layer 2, head 7, query row 3 sums to");
    let (_dir, output) = spoiled_dump(|manifest, _, _| manifest["layout_version"] = 2.into());
    assert_clean_failure(&output, "\"layout_version\" is 2");
    let (_dir, output) = spoiled_dump(|manifest, _, _| {
        manifest.as_object_mut().unwrap().remove("layout_version");
    });
    assert_clean_failure(&output, "no \"layout_version\"");
    let (_dir, output) = spoiled_dump(|manifest, _, _| manifest["heads"] = 6.into());
    assert_clean_failure(&output, "attention.npy has shape [6, 12, 16, 16] but manifest.json says [6, 6, 16, 16]");
    let (_dir, output) = spoiled_dump(|manifest, _, _| manifest["attention"]["shape"] = serde_json::json!([6, 12, 16, 15]));
    assert_clean_failure(&output, "\"attention\".\"shape\" is [6,12,16,15]");
    let (_dir, output) = spoiled_dump(|_, values, shape| {
        values.truncate(6 * 12 * 16 * 8);
        *shape = vec![6, 12, 16, 8];
    });
    assert_clean_failure(&output, "attention.npy has shape [6, 12, 16, 8]");
}

/// Flags that would do nothing are refused, naming the flag; --against needs --model.
#[test]
fn flags_that_would_be_ignored_are_refused() {
    let diff = fixtures().join("diff");
    let (old, new) = (diff.join("old"), diff.join("new"));
    let dumps = [old.to_str().unwrap(), new.to_str().unwrap()];
    for (extra, needle) in [
        (&["--scale", "fixed"][..], "--scale applies to the pictures"),
        (&["--colormap", "magma"][..], "--colormap applies to the pictures"),
        (&["--force"][..], "--force applies to the pictures"),
        (&["--revision", "v1.0"][..], "--revision applies to --model"),
        (&["--against-revision", "v2"][..], "--against-revision applies to --against"),
    ] {
        let output = attnmap(&[&["diff"], &dumps[..], extra].concat(), &[]);
        assert_clean_failure(&output, needle);
    }
    let output = attnmap(&["diff", "--against", minilm_dir().to_str().unwrap(), "the cat"], &[]);
    assert_clean_failure(&output, "--against NEW needs --model OLD");
    // diff has no --quantized: clap refuses it (exit 2) rather than ignoring it.
    let output = attnmap(&[&["diff"], &dumps[..], &["--quantized"]].concat(), &[]);
    assert_eq!(output.status.code(), Some(2));
    // --revision on a local folder has no meaning anywhere.
    let output = attnmap(&["info", "--model", tiny_bert_dir().to_str().unwrap(), "--revision", "v1.0"], &[]);
    assert_clean_failure(&output, "--revision v1.0 applies to Hub models");
    // Colours only exist in pictures: show refuses them for .npy and .json.
    let output = attnmap(&["the cat", "-l", "0", "-H", "0", "--model", tiny_bert_dir().to_str().unwrap(), "-o", "-", "--format", "npy", "--scale", "fixed"], &[]);
    assert_clean_failure(&output, "--scale applies to PNG pictures");
    // heads and find colour their pictures over their figures' own range, and each null has its own count.
    let model = tiny_bert_dir();
    let model = model.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("pictures");
    for (args, needle) in [
        (vec!["heads", "the cat", "--model", model, "--colormap", "magma"], "--colormap applies to the pictures written with --out DIR"),
        (vec!["heads", "the cat", "--model", model, "--scale", "fixed", "--out", out.to_str().unwrap()], "--scale does not apply here"),
        (vec!["find", "self", "the cat", "--model", model, "--force"], "--force applies to the pictures"),
        (vec!["find", "self", "the cat", "--model", model, "--null", "shuffle", "--trials", "50"], "with --null shuffle, set --shuffles"),
        (vec!["find", "self", "the cat", "--model", model, "--shuffles", "5"], "add --null shuffle"),
    ] {
        assert_clean_failure(&attnmap(&args, &[]), needle);
    }
    assert!(!out.exists());
    // With --out the style flags are honoured: fixed draws old and new on 0..1.
    let dir = tempfile::tempdir().unwrap();
    let draw = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let output = attnmap(&[&["diff"], &dumps[..], &["--top", "1", "--out", out.to_str().unwrap(), "--fail-above", "1"], extra].concat(), &[]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let picture = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with('L')).unwrap();
        (std::fs::read(picture).unwrap(), std::fs::read(out.join("grid.png")).unwrap())
    };
    let (auto_pair, auto_grid) = draw("auto", &[]);
    let (fixed_pair, fixed_grid) = draw("fixed", &["--scale", "fixed"]);
    assert_ne!(auto_pair, fixed_pair);
    assert_ne!(auto_grid, fixed_grid);
}

/// A dump diffed against itself changed nowhere: no old | new | difference pictures, and it says so.
#[test]
fn diff_out_draws_only_heads_that_changed() {
    let old = fixtures().join("diff/old");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let output = attnmap(&["diff", old.to_str().unwrap(), old.to_str().unwrap(), "--out", out.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("no head changed"), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("(no head changed)"));
    let mut files: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["grid.png", "report.json", "report.md"]);
    // Only changed heads are drawn even when --top asks for more than changed: one
    // head of the new dump restored to the old maps is not drawn.
    let new = fixtures().join("diff/new");
    let work = tempfile::tempdir().unwrap();
    let partial = work.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(new.join("manifest.json"), partial.join("manifest.json")).unwrap();
    let (shape, old_values) = attnmap::output::read_npy_f32(&std::fs::read(old.join("attention.npy")).unwrap()).unwrap();
    let (_, mut new_values) = attnmap::output::read_npy_f32(&std::fs::read(new.join("attention.npy")).unwrap()).unwrap();
    // Only head L0 H0 differs from old.
    let head = 16 * 16;
    new_values[head..].copy_from_slice(&old_values[head..]);
    std::fs::write(partial.join("attention.npy"), attnmap::output::npy_f32(&shape, &new_values)).unwrap();
    let out = work.path().join("report");
    let output = attnmap(&["diff", old.to_str().unwrap(), partial.to_str().unwrap(), "--top", "5", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let pictures: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|f| f.starts_with('L')).collect();
    assert_eq!(pictures, ["L00_H00.png"]);
}
