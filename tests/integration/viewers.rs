//! The viewers: SVG parsed as XML, terminal text measured, and the HTML page
//! opened in a real headless Chromium that reports what it decoded and drew.

use std::path::{Path, PathBuf};
use std::process::Command;

use attnmap::output::read_npy_f32;
use attnmap::render::html::{self, Page, View};
use attnmap::render::terminal::{heatmap_term, TermColour, TermOptions};
use attnmap::render::*;

use crate::helpers::{assert_clean_failure, attnmap, fixtures, stderr, tiny_bert_dir};

/// Tokens a page or picture must show as themselves, never as markup.
const HTML_TOKENS: [&str; 5] = ["</script>", "<s>", "&amp;", "\"q\"", "a'b"];

fn causal(n: usize) -> Vec<f32> {
    let mut values = vec![0.0; n * n];
    for q in 0..n {
        let total: f32 = (0..=q).map(|k| 1.0 + ((q * 7 + k * 3) % 5) as f32).sum();
        for k in 0..=q {
            values[q * n + k] = (1.0 + ((q * 7 + k * 3) % 5) as f32) / total;
        }
    }
    values
}

fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| HTML_TOKENS.get(i).map(|t| t.to_string()).unwrap_or_else(|| format!("tok{i}"))).collect()
}

fn options<'a>(labels: &'a [String], values: &[f32], mask: Mask) -> HeatmapOptions<'a> {
    HeatmapOptions {
        title: "model · layer 0 · head 0 & <b>",
        subtitle: Some("viewer test"),
        row_labels: labels,
        col_labels: labels,
        scale: Scale::zero_to_max(values),
        mask,
        ..HeatmapOptions::default()
    }
}

#[test]
fn svg_is_the_pngs_picture_as_valid_xml() -> Result<(), RenderError> {
    let n = 9;
    let (values, labels) = (causal(n), labels(n));
    let opts = options(&labels, &values, Mask::Causal);
    let svg = heatmap_svg(&values, n, n, &opts)?;
    assert!(svg == heatmap_svg(&values, n, n, &opts)?, "SVG bytes must be deterministic");
    let text = String::from_utf8(svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("invalid XML: {e}"));
    let root = doc.root_element();
    let layout = heatmap::layout(n, n, &opts)?;
    assert_eq!(root.attribute("viewBox"), Some(format!("0 0 {} {}", layout.width, layout.height).as_str()));
    let png = image::load_from_memory(&heatmap_png(&values, n, n, &opts)?).unwrap();
    assert_eq!((png.width(), png.height()), (layout.width, layout.height), "same size as the PNG");

    // Every visible cell is a rect with a tooltip naming its tokens and weight.
    let tooltips: Vec<String> = doc.descendants().filter(|d| d.has_tag_name("title") && d.parent().is_some_and(|p| p.has_tag_name("rect"))).map(|d| d.text().unwrap_or("").to_string()).collect();
    assert_eq!(tooltips.len(), n * (n + 1) / 2, "one tooltip per unmasked cell");
    let cell = tooltips.iter().find(|t| t.contains("query 1 <s> \u{2192} key 0 </script>:")).expect("tooltip of (1, 0)");
    assert!(cell.ends_with(&format!("{:.4}", values[n])), "{cell}");
    // Masked cells are the colormap's mask colour.
    let mask = Colormap::Viridis.mask_rgb();
    let mask_hex = format!("#{:02x}{:02x}{:02x}", mask[0], mask[1], mask[2]);
    let masked = doc.descendants().filter(|d| d.has_tag_name("rect") && d.attribute("fill") == Some(mask_hex.as_str()) && d.attribute("width") == Some("36")).count();
    assert_eq!(masked, n * (n - 1) / 2);
    // Labels and the title are text, unescaped back to themselves by the parser.
    let texts: Vec<String> = doc.descendants().filter(|d| d.has_tag_name("text")).map(|d| d.text().unwrap_or("").to_string()).collect();
    for token in HTML_TOKENS {
        assert!(texts.iter().any(|t| t == token), "label {token:?} missing from {texts:?}");
    }
    assert!(texts.iter().any(|t| t == "model · layer 0 · head 0 & <b>"));
    assert!(texts.iter().any(|t| t == "attention weight") && texts.iter().any(|t| t == "key"));
    Ok(())
}

#[test]
fn svg_past_128_tokens_embeds_the_cells_as_an_image() -> Result<(), RenderError> {
    let n = 130;
    let (values, labels) = (causal(n), labels(n));
    let svg = String::from_utf8(heatmap_svg(&values, n, n, &options(&labels, &values, Mask::Causal))?).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("invalid XML: {e}"));
    let images: Vec<_> = doc.descendants().filter(|d| d.has_tag_name("image")).collect();
    assert_eq!(images.len(), 1);
    let href = images[0].attribute(("http://www.w3.org/1999/xlink", "href")).unwrap();
    assert!(href.starts_with("data:image/png;base64,"));
    assert_eq!(doc.descendants().filter(|d| d.has_tag_name("title")).count(), 1, "only the document title");
    // Thinned labels carry their token index.
    assert!(doc.descendants().any(|d| d.has_tag_name("text") && d.text() == Some("#3 \"q\"")), "thinned label with its index");
    Ok(())
}

#[test]
fn grid_svg_is_valid_xml() -> Result<(), RenderError> {
    let n = 6;
    let values: Vec<f32> = (0..2 * 3).flat_map(|_| causal(n)).collect();
    let labels = labels(n);
    let opts = GridOptions { title: "grid <&>", mask: Mask::Causal, labels: &labels, ..GridOptions::default() };
    let svg = String::from_utf8(grid_svg(&values, 2, 3, n, &opts)?).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("invalid XML: {e}"));
    assert!(doc.root_element().attribute("viewBox").is_some());
    let png = image::load_from_memory(&grid_png(&values, 2, 3, n, &opts)?).unwrap();
    assert_eq!(doc.root_element().attribute("viewBox"), Some(format!("0 0 {} {}", png.width(), png.height()).as_str()));
    assert!(doc.descendants().any(|d| d.has_tag_name("title") && d.text().is_some_and(|t| t.starts_with("layer 1, head 2: query 1 <s>"))));
    Ok(())
}

fn term(colour: TermColour, columns: usize, n: usize) -> String {
    let (values, labels) = (causal(n), labels(n));
    heatmap_term(
        &values,
        n,
        &TermOptions { title: "t", view: "attention weights", labels: &labels, colormap: Colormap::Viridis, scale: Scale::zero_to_max(&values), mask: Mask::Causal, columns, lines: 24, colour },
    )
}

#[test]
fn terminal_map_fits_the_width_and_has_no_escapes_without_colour() {
    for (n, columns) in [(9, 40), (300, 80), (300, 30)] {
        let text = term(TermColour::None, columns, n);
        assert!(!text.contains('\x1b'), "escape bytes without colour");
        for line in text.lines() {
            assert!(line.chars().count() <= columns, "line wider than {columns}: {line:?}");
        }
        assert!(text.lines().count() <= 24, "taller than the terminal:\n{text}");
        assert!(text.contains('@'), "the strongest cell shows the top of the ramp");
        assert!(text.contains("rows query"), "legend line");
    }
    let pooled = term(TermColour::None, 80, 300);
    assert!(pooled.contains("max-pooled"), "{pooled}");
    let coloured = term(TermColour::Ansi256, 80, 9);
    assert!(coloured.contains("\x1b[38;5;") && coloured.contains('\u{2580}'));
    assert!(term(TermColour::TrueColour, 80, 9).contains("\x1b[38;2;"));
}

#[test]
fn show_term_respects_no_color_and_columns() {
    let model = tiny_bert_dir();
    let args = ["the cat sat on the mat", "-l", "0", "-H", "1", "--model", model.to_str().unwrap(), "--format", "term"];
    let output = attnmap(&args, &[("NO_COLOR", "1"), ("COLUMNS", "36"), ("LINES", "20")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!text.contains('\x1b'));
    assert!(text.lines().all(|l| l.chars().count() <= 36), "{text}");
    let mut forced = args.to_vec();
    forced.extend(["--color", "always"]);
    let output = attnmap(&forced, &[("COLORTERM", "truecolor"), ("COLUMNS", "36")]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("\x1b[38;2;"), "truecolor when COLORTERM says so");
}

#[test]
fn show_picks_svg_and_html_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_bert_dir();
    for ext in ["svg", "html"] {
        let out = dir.path().join(format!("map.{ext}"));
        let output = attnmap(&["the <s> cat", "-l", "1", "-H", "0", "--model", model.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let svg = std::fs::read_to_string(dir.path().join("map.svg")).unwrap();
    roxmltree::Document::parse(&svg).unwrap();
    let page = std::fs::read_to_string(dir.path().join("map.html")).unwrap();
    let data = page_data(&page);
    assert_eq!(data["views"][0]["layers"], serde_json::json!([1]));
    assert_eq!(data["views"][0]["heads"], serde_json::json!(["0"]));
}

/// The JSON a page carries (parsed the way the page parses it).
fn page_data(page: &str) -> serde_json::Value {
    let start = page.find("id=\"attnmap-data\">").expect("data script") + "id=\"attnmap-data\">".len();
    let end = start + page[start..].find("</script>").expect("end of the data script");
    serde_json::from_str(&page[start..end]).expect("page data is JSON")
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = chunk.iter().filter(|&&c| c != b'=').map(|&c| value(c)).collect();
        let n = digits.iter().enumerate().fold(0u32, |acc, (i, &d)| acc | (u32::from(d) << (18 - 6 * i)));
        out.extend([(n >> 16) as u8, (n >> 8) as u8, n as u8].into_iter().take(digits.len().saturating_sub(1)));
    }
    out
}

/// A causal dump whose tokens include HTML, shared by the page tests.
fn html_dump(dir: &Path) -> PathBuf {
    let out = dir.join("maps");
    let model = fixtures().join("tiny-gpt2");
    let output = attnmap(&["dump", "a </script> <s> &amp; b", "--out", out.to_str().unwrap(), "--model", model.to_str().unwrap(), "--svg"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    out
}

#[test]
fn dump_writes_a_self_contained_view_within_a_code_of_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let maps = html_dump(dir.path());
    let page = std::fs::read_to_string(maps.join("view.html")).unwrap();
    assert!(page.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';"));
    for scheme in ["http:", "https:", "//cdn", "ftp:"] {
        assert!(!page.contains(scheme), "the page names an external URL ({scheme})");
    }
    assert!(!page.contains("<s>"), "tokens travel escaped inside the data, never as markup");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(maps.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["files"].as_array().unwrap().iter().any(|f| f == "view.html"));
    let data = page_data(&page);
    assert_eq!(data["labels"], manifest["labels"]);
    assert_eq!(data["causal"], true);
    let (shape, weights) = read_npy_f32(&std::fs::read(maps.join("attention.npy")).unwrap()).unwrap();
    let codes: Vec<u8> = data["views"][0]["codes"].as_array().unwrap().iter().flat_map(|map| base64_decode(map.as_str().unwrap())).collect();
    assert_eq!(codes.len(), weights.len());
    let map_len = shape[2] * shape[3];
    for (index, scale) in data["views"][0]["scales"].as_array().unwrap().iter().enumerate() {
        let scale = scale.as_f64().unwrap() as f32;
        for i in index * map_len..(index + 1) * map_len {
            let decoded = f32::from(codes[i]) * scale / 255.0;
            assert!((decoded - weights[i]).abs() <= 1.0 / 255.0, "map {index} cell {i}: {decoded} vs {}", weights[i]);
        }
    }

    // --svg: every head and the grid as SVG, valid XML.
    for file in ["grid.svg", "heads/L00_H00.svg", &format!("heads/L{:02}_H{:02}.svg", shape[0] - 1, shape[1] - 1)] {
        let svg = std::fs::read_to_string(maps.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{file} is not XML: {e}"));
    }

    // Other views listed in the manifest get a switch: per head [layers, heads, q, k], or per layer [layers, q, k].
    let with_views = dir.path().join("with-views");
    std::fs::create_dir(&with_views).unwrap();
    std::fs::copy(maps.join("attention.npy"), with_views.join("attention.npy")).unwrap();
    let halved: Vec<f32> = weights.iter().map(|w| w / 2.0).collect();
    std::fs::write(with_views.join("norm.npy"), attnmap::output::npy_f32(&shape, &halved)).unwrap();
    let per_layer: Vec<f32> = weights.chunks(shape[1] * map_len).flat_map(|layer| layer[..map_len].to_vec()).collect();
    std::fs::write(with_views.join("rollout.npy"), attnmap::output::npy_f32(&[shape[0], shape[2], shape[3]], &per_layer)).unwrap();
    let mut listed = manifest.clone();
    listed["views"] = serde_json::json!([{ "name": "norm", "file": "norm.npy" }, { "name": "rollout", "file": "rollout.npy" }]);
    std::fs::write(with_views.join("manifest.json"), listed.to_string()).unwrap();
    let output = attnmap(&["view", with_views.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let data = page_data(&std::fs::read_to_string(with_views.join("view.html")).unwrap());
    let names: Vec<&str> = data["views"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["weights", "norm", "rollout"]);
    assert_eq!(data["views"][2]["heads"], serde_json::json!(["all"]));
    assert_eq!(data["views"][2]["codes"].as_array().unwrap().len(), shape[0]);

    // Narrowed on request.
    let narrow = dir.path().join("narrow.html");
    let output = attnmap(&["view", maps.to_str().unwrap(), "-o", narrow.to_str().unwrap(), "--layers", "1", "--heads", "0,2-3"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let data = page_data(&std::fs::read_to_string(&narrow).unwrap());
    assert_eq!(data["views"][0]["layers"], serde_json::json!([1]));
    assert_eq!(data["views"][0]["heads"], serde_json::json!(["0", "2", "3"]));
    assert_clean_failure(&attnmap(&["view", maps.to_str().unwrap(), "-o", narrow.to_str().unwrap(), "--layers", "7"], &[]), "--layers 7");
}

#[test]
fn view_past_the_size_limit_says_how_to_narrow() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = serde_json::json!({ "model": "big", "layers": 32, "heads": 32, "seq_len": 2048, "tokens": [], "labels": [] });
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
    let output = attnmap(&["view", dir.path().to_str().unwrap()], &[]);
    assert_clean_failure(&output, "--layers");
    assert!(!dir.path().join("view.html").exists());
}

#[test]
fn a_page_of_512_tokens_and_72_heads_stays_under_60_mb() {
    let seq = 512;
    let map: Vec<f32> = (0..seq * seq).map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0 / seq as f32).collect();
    let values: Vec<f32> = (0..72).flat_map(|_| map.iter().copied()).collect();
    let labels: Vec<String> = (0..seq).map(|i| format!("tok{i}")).collect();
    let page = Page {
        title: "big".into(),
        subtitle: String::new(),
        labels: &labels,
        tokens: &labels,
        seq,
        causal: false,
        colormap: Colormap::Viridis,
        scale: "max",
        note: "",
        views: vec![View { name: "weights".into(), description: "attention weight".into(), layers: (0..6).collect(), heads: (0..12).map(|h| h.to_string()).collect(), maps: attnmap::render::html::Maps::Values(&values) }],
    };
    let bytes = html::view_html(&page).unwrap();
    assert!(bytes.len() < 60_000_000, "{} bytes", bytes.len());
}

/// Headless Chromium, or a failure that says how to install it: a browser test
/// that silently passes without a browser would prove nothing.
fn chromium() -> PathBuf {
    let candidates = [std::env::var("CHROMIUM").ok(), Some("chromium".into()), Some("chromium-browser".into()), Some("google-chrome".into())];
    for candidate in candidates.into_iter().flatten() {
        if Command::new(&candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return PathBuf::from(candidate);
        }
    }
    panic!("chromium is not installed, so the HTML viewer cannot be tested in a browser: install it with `apt-get update && apt-get install -y chromium` (.ci/run does this), or set CHROMIUM to a Chromium binary");
}

fn headless(page: &Path, fragment: &str, extra: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}#{fragment}", page.canonicalize().unwrap().display());
    let mut command = Command::new(chromium());
    command.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]);
    command.arg(format!("--user-data-dir={}", profile.path().display()));
    command.args(extra).arg(url);
    command.output().unwrap()
}

fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

#[test]
fn the_view_decodes_and_draws_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let maps = html_dump(dir.path());
    let page = maps.join("view.html");
    let output = headless(&page, "selftest", &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&output.stdout);
    let start = dom.find("<pre id=\"selftest-report\">").unwrap_or_else(|| panic!("no self-test report in the DOM: {}", stderr(&output))) + "<pre id=\"selftest-report\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let report: serde_json::Value = serde_json::from_str(&unescape_html(&dom[start..end])).unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", &dom[start..end]));
    assert_eq!(report["errors"], serde_json::json!([]), "script errors");
    assert!(report["draw_ms"].as_f64().is_some(), "the first map was drawn");

    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(maps.join("manifest.json")).unwrap()).unwrap();
    let (shape, weights) = read_npy_f32(&std::fs::read(maps.join("attention.npy")).unwrap()).unwrap();
    let view = &report["views"][0];
    assert_eq!(view["values"].as_u64().unwrap() as usize, weights.len(), "every value decoded");
    assert_eq!(view["maps"].as_u64().unwrap() as usize, shape[0] * shape[1]);
    assert_eq!(report["thumbs_drawn"].as_u64().unwrap() as usize, shape[0] * shape[1], "a thumbnail per map");
    assert!(report["map_colours"].as_u64().unwrap() > 3, "the big map is not blank");
    let seq = shape[2];
    for cell in view["cells"].as_array().unwrap() {
        let (layer, head) = (cell["layer"].as_u64().unwrap() as usize, cell["head"].as_str().unwrap().parse::<usize>().unwrap());
        let (query, key) = (cell["query"].as_u64().unwrap() as usize, cell["key"].as_u64().unwrap() as usize);
        let expected = weights[((layer * shape[1] + head) * seq + query) * seq + key];
        let got = cell["weight"].as_f64().unwrap() as f32;
        assert!((got - expected).abs() <= 1.0 / 255.0, "L{layer} H{head} ({query}, {key}): page {got}, npy {expected}");
    }
    // Interactions the self-test performed: hover, click a token, arrow key.
    let tooltip = report["tooltip"].as_str().unwrap();
    let expected = weights[seq]; // layer 0, head 0 (the first map shown), query 1, key 0
    assert!(tooltip.contains("query #1") && tooltip.contains("key   #0") && tooltip.contains("rank "), "{tooltip}");
    let shown: f32 = tooltip.split("weight ").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|w| w.parse().ok()).unwrap_or(f32::NAN);
    assert!((shown - expected).abs() <= 1.0 / 255.0 + 5e-5, "tooltip weight {shown} vs npy {expected}");
    assert_eq!(report["selected_query"], 1);
    assert_eq!(report["strip_coloured"].as_u64().unwrap() as usize, seq, "clicking a token colours the strip by its row");
    assert_eq!(report["arrow_right"]["head_after"], 1, "→ selects the next head");
    assert!(report["arrow_right"]["fragment"].as_str().unwrap().contains("head=1"), "the selection is kept in the URL fragment");

    // Tokens that look like HTML come back as text from the page's token strip.
    assert_eq!(report["tokens"], manifest["labels"]);
    let tokens: Vec<&str> = report["tokens"].as_array().unwrap().iter().filter_map(|t| t.as_str()).collect();
    assert!(tokens.concat().contains("</script>") || tokens.iter().any(|t| t.contains('<')), "{tokens:?}");

    // A screenshot of the page is a picture, not a blank page.
    let shot = dir.path().join("shot.png");
    let output = headless(&page, "layer=1&head=2&q=3", &[&format!("--screenshot={}", shot.display()), "--window-size=1300,900"]);
    let image = image::open(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", stderr(&output))).to_rgb8();
    let mut colours: Vec<[u8; 3]> = image.pixels().step_by(7).map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 20, "a blank screenshot ({} colours)", colours.len());
}

#[test]
fn show_to_a_terminal_prints_the_map_not_png_bytes() {
    // `script` gives the command a terminal for stdout (util-linux, on every Debian).
    let model = tiny_bert_dir();
    let command = format!("{} -q 'the cat sat' -l 0 -H 1 --model {} -o -", env!("CARGO_BIN_EXE_attnmap"), model.display());
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("NO_COLOR", "1")
        .env("COLUMNS", "50")
        .output()
        .unwrap_or_else(|e| panic!("`script` (util-linux) is needed to give the test a terminal: {e}"));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("PNG"), "PNG bytes sent to a terminal");
    assert!(text.contains("rows query") && !text.contains('\x1b'), "{text}");
}
