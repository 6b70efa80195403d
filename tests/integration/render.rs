//! Render room tests: decode the PNGs and check what a reader would see.

use attnmap::render::heatmap::layout;
use attnmap::render::*;
use image::RgbImage;

fn decode(png: &[u8]) -> RgbImage {
    match image::load_from_memory(png) {
        Ok(image) => image.to_rgb8(),
        Err(err) => panic!("renderer produced an undecodable PNG: {err}"),
    }
}

fn tokens(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tok{i}")).collect()
}

/// A softmax-like causal map: each query spreads its weight over keys 0..=query.
fn causal_attention(n: usize) -> Vec<f32> {
    let mut values = vec![0.0; n * n];
    for query in 0..n {
        let weights: Vec<f32> = (0..=query)
            .map(|key| 1.0 + ((query * 7 + key * 3) % 5) as f32)
            .collect();
        let total: f32 = weights.iter().sum();
        for (key, weight) in weights.iter().enumerate() {
            values[query * n + key] = weight / total;
        }
    }
    values
}

fn render(values: &[f32], n: usize, labels: &[String], mask: Mask) -> Result<Vec<u8>, RenderError> {
    let opts = HeatmapOptions {
        title: "test-model · layer 0 · head 0",
        subtitle: Some("render test"),
        row_labels: labels,
        col_labels: labels,
        scale: Scale::zero_to_max(values),
        mask,
        ..HeatmapOptions::default()
    };
    heatmap_png(values, n, n, &opts)
}

#[test]
fn picture_grows_with_tokens_and_is_capped() -> Result<(), RenderError> {
    let heatmap = |n: usize| -> Result<(Layout, (u32, u32)), RenderError> {
        let labels = tokens(n);
        let values = causal_attention(n);
        let opts = HeatmapOptions {
            row_labels: &labels,
            col_labels: &labels,
            scale: Scale::zero_to_max(&values),
            mask: Mask::Causal,
            ..HeatmapOptions::default()
        };
        let image = decode(&heatmap_png(&values, n, n, &opts)?);
        let grid = layout(n, n, &opts)?;
        assert_eq!(
            image.dimensions(),
            (grid.width, grid.height),
            "{n} tokens: layout and PNG disagree"
        );
        Ok((grid, image.dimensions()))
    };

    // Few tokens: full-size cells, so every extra token makes the picture bigger.
    let mut previous = (0, 0);
    for n in [1, 5, 10, 20, 28] {
        let (grid, (width, height)) = heatmap(n)?;
        assert_eq!((grid.cell_width, grid.cell_height), (36, 36), "{n} tokens");
        assert!(
            width > previous.0 && height > previous.1,
            "{n} tokens: {width}x{height} after {previous:?}"
        );
        previous = (width, height);
    }
    // More tokens: cells shrink (whole pixels, all the same size) so the
    // heatmap side stays between 512 and 1024 pixels, down to 2 px at 512.
    for n in [30, 64, 120, 256, 512] {
        let (grid, (width, height)) = heatmap(n)?;
        assert!(
            (512..=1024).contains(&grid.heatmap_width),
            "{n} tokens: heatmap {}",
            grid.heatmap_width
        );
        assert_eq!(grid.heatmap_width, n as u32 * grid.cell_width);
        assert!(
            width >= previous.0 / 2 && width <= 1024 + 700 && height <= 1024 + 700,
            "{n} tokens: {width}x{height}"
        );
    }
    assert_eq!(heatmap(512)?.0.cell_width, 2);

    // Past one pixel per token the heatmap stops growing and pools instead.
    let n = 3000;
    let values = vec![1.0 / n as f32; n * n];
    let opts = HeatmapOptions {
        scale: Scale::zero_to_max(&values),
        ..HeatmapOptions::default()
    };
    let grid = layout(n, n, &opts)?;
    assert_eq!((grid.heatmap_width, grid.heatmap_height), (2048, 2048));
    assert_eq!(grid.cell_width, 0);
    let image = decode(&heatmap_png(&values, n, n, &opts)?);
    assert_eq!(image.dimensions(), (grid.width, grid.height));
    Ok(())
}

#[test]
fn cells_have_their_colormap_colour() -> Result<(), RenderError> {
    let n = 5;
    let values: Vec<f32> = (0..n * n).map(|i| i as f32 / (n * n - 1) as f32).collect();
    let labels = tokens(n);
    for colormap in Colormap::ALL {
        let scale = Scale::Range { min: 0.0, max: 1.0 };
        let opts = HeatmapOptions {
            title: "colours",
            row_labels: &labels,
            col_labels: &labels,
            colormap,
            scale,
            ..HeatmapOptions::default()
        };
        let grid = layout(n, n, &opts)?;
        assert!(
            grid.cell_width >= 30,
            "5 tokens should get big cells, got {}",
            grid.cell_width
        );
        let image = decode(&heatmap_png(&values, n, n, &opts)?);
        assert_eq!(image.dimensions(), (grid.width, grid.height));
        for row in 0..n {
            for col in 0..n {
                let (x, y) = grid.cell_centre(row, col);
                let want = colormap.rgb(scale.normalise(values[row * n + col]));
                assert_eq!(
                    image.get_pixel(x, y).0,
                    want,
                    "{colormap} cell ({row}, {col})"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn masked_cells_are_the_mask_colour_and_do_not_set_the_scale() -> Result<(), RenderError> {
    let n = 6;
    let mut values = causal_attention(n);
    // Garbage above the diagonal (even NaN) must be neither drawn nor an error.
    for query in 0..n {
        for key in query + 1..n {
            values[query * n + key] = if key % 2 == 0 { f32::NAN } else { 50.0 };
        }
    }
    let labels = tokens(n);
    let scale = Scale::Range { min: 0.0, max: 1.0 };
    let opts = HeatmapOptions {
        row_labels: &labels,
        col_labels: &labels,
        scale,
        mask: Mask::Causal,
        ..HeatmapOptions::default()
    };
    let image = decode(&heatmap_png(&values, n, n, &opts)?);
    let grid = layout(n, n, &opts)?;
    let mask_rgb = Colormap::Viridis.mask_rgb();
    for query in 0..n {
        for key in 0..n {
            let (x, y) = grid.cell_centre(query, key);
            let got = image.get_pixel(x, y).0;
            if key > query {
                assert_eq!(got, mask_rgb, "masked cell ({query}, {key})");
            } else {
                assert_eq!(
                    got,
                    Colormap::Viridis.rgb(scale.normalise(values[query * n + key]))
                );
                assert_ne!(got, mask_rgb);
            }
        }
    }
    Ok(())
}

#[test]
fn same_input_gives_identical_bytes() -> Result<(), RenderError> {
    let n = 20;
    let labels = tokens(n);
    let first = render(&causal_attention(n), n, &labels, Mask::Causal)?;
    let second = render(&causal_attention(n), n, &labels, Mask::Causal)?;
    assert!(first == second, "two renders of the same map differ");
    let values = causal_attention(8);
    let opts = GridOptions {
        title: "grid",
        ..GridOptions::default()
    };
    let grid_values: Vec<f32> = values.iter().copied().cycle().take(2 * 3 * 64).collect();
    assert!(grid_png(&grid_values, 2, 3, 8, &opts)? == grid_png(&grid_values, 2, 3, 8, &opts)?);
    Ok(())
}

#[test]
fn non_finite_values_are_refused_with_their_position() {
    let n = 4;
    let labels = tokens(n);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut values = causal_attention(n);
        values[2 * n + 1] = bad;
        match render(&values, n, &labels, Mask::None) {
            Err(RenderError::NonFinite { row: 2, col: 1 }) => {}
            other => panic!("{bad} at (2, 1) gave {:?}", other.map(|png| png.len())),
        }
    }
    let mut grid_values = vec![0.1; 2 * 2 * 9];
    grid_values[9 * 3 + 4] = f32::NAN;
    match grid_png(&grid_values, 2, 2, 3, &GridOptions::default()) {
        Err(RenderError::NonFiniteInGrid {
            layer: 1,
            head: 1,
            row: 1,
            col: 1,
        }) => {}
        other => panic!(
            "NaN in layer 1 head 1 gave {:?}",
            other.map(|png| png.len())
        ),
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let opts = HeatmapOptions::default();
    assert!(matches!(
        heatmap_png(&[0.5; 5], 2, 3, &opts),
        Err(RenderError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        heatmap_png(&[], 0, 3, &opts),
        Err(RenderError::Empty { .. })
    ));
    let two = tokens(2);
    let wrong = HeatmapOptions {
        row_labels: &two,
        ..HeatmapOptions::default()
    };
    assert!(matches!(
        heatmap_png(&[0.5; 9], 3, 3, &wrong),
        Err(RenderError::LabelCount { .. })
    ));
    let inverted = HeatmapOptions {
        scale: Scale::Range { min: 1.0, max: 0.0 },
        ..HeatmapOptions::default()
    };
    assert!(matches!(
        heatmap_png(&[0.5; 9], 3, 3, &inverted),
        Err(RenderError::InvalidScale { .. })
    ));
    assert!(matches!(
        grid_png(&[0.5; 7], 1, 1, 3, &GridOptions::default()),
        Err(RenderError::ShapeMismatch { .. })
    ));
}

#[test]
fn viridis_matches_matplotlib_at_both_ends() {
    assert_eq!(Colormap::Viridis.rgb(0.0), [0x44, 0x01, 0x54]);
    assert_eq!(Colormap::Viridis.rgb(1.0), [0xfd, 0xe7, 0x25]);
    // Mid-table entries pick index floor(t * 256) as matplotlib does: viridis(0.5) is #21918c.
    assert_eq!(Colormap::Viridis.rgb(0.5), [0x21, 0x91, 0x8c]);
    assert_eq!(Colormap::Cividis.rgb(0.5), [0x7d, 0x7c, 0x78]);
    assert_eq!(Colormap::Magma.rgb(0.0), [0x00, 0x00, 0x04]);
    assert_eq!(Colormap::Greys.rgb(0.0), [0xff, 0xff, 0xff]);
    assert_eq!(Colormap::RdBu.rgb(0.0), [0x67, 0x00, 0x1f]);
    assert_eq!(Colormap::RdBu.rgb(1.0), [0x05, 0x30, 0x61]);
    assert_eq!(Colormap::default(), Colormap::Viridis);
    assert!(Colormap::RdBu.is_diverging() && !Colormap::Viridis.is_diverging());
    for (colormap, name) in Colormap::ALL.iter().zip(Colormap::NAMES) {
        assert_eq!(colormap.name(), *name);
        assert_eq!(Colormap::from_name(name), Some(*colormap));
        assert_eq!(Colormap::from_name(&name.to_uppercase()), Some(*colormap));
        // The mask colour must not be a colour of the map, or masked would read as a value.
        assert!((0..=255).all(|i| colormap.rgb(i as f32 / 255.0) != colormap.mask_rgb()));
    }
    assert_eq!(Colormap::from_name("jet"), None);
    assert!(matches!(
        "jet".parse::<Colormap>(),
        Err(RenderError::UnknownColormap { .. })
    ));
}

#[test]
fn scales_handle_flat_maps_and_diffs() {
    assert_eq!(
        Scale::zero_to_max(&[0.2, 0.7, 0.1]),
        Scale::Range { min: 0.0, max: 0.7 }
    );
    assert_eq!(
        Scale::symmetric(&[-0.3, 0.2]),
        Scale::Range {
            min: -0.3,
            max: 0.3
        }
    );
    let flat = Scale::zero_to_max(&[0.0; 4]);
    assert!(flat.normalise(0.0).is_finite());
    let point = Scale::Range { min: 0.5, max: 0.5 };
    assert!(point.normalise(0.5).is_finite());
    // A flat map still renders.
    let opts = HeatmapOptions {
        scale: point,
        ..HeatmapOptions::default()
    };
    assert!(heatmap_png(&[0.5; 4], 2, 2, &opts).is_ok());
}

#[test]
fn diff_maps_centre_zero_on_the_diverging_midpoint() -> Result<(), RenderError> {
    let n = 3;
    let values = [0.0, 0.4, -0.4, 0.2, 0.0, -0.2, 0.1, -0.1, 0.0];
    let scale = Scale::symmetric(&values);
    let opts = HeatmapOptions {
        colormap: Colormap::RdBu,
        scale,
        colorbar_label: "A − B",
        ..HeatmapOptions::default()
    };
    let image = decode(&heatmap_png(&values, n, n, &opts)?);
    let grid = layout(n, n, &opts)?;
    let (x, y) = grid.cell_centre(0, 0);
    assert_eq!(image.get_pixel(x, y).0, Colormap::RdBu.rgb(0.5));
    let (x, y) = grid.cell_centre(0, 1);
    assert_eq!(image.get_pixel(x, y).0, Colormap::RdBu.rgb(1.0));
    Ok(())
}

#[test]
fn grid_grows_with_layers_and_heads() -> Result<(), RenderError> {
    let seq = 20;
    let tile = causal_attention(seq);
    let dims = |layers: usize, heads: usize| -> Result<(u32, u32), RenderError> {
        let values: Vec<f32> = tile
            .iter()
            .copied()
            .cycle()
            .take(layers * heads * seq * seq)
            .collect();
        let opts = GridOptions {
            title: "grid",
            mask: Mask::Causal,
            ..GridOptions::default()
        };
        Ok(decode(&grid_png(&values, layers, heads, seq, &opts)?).dimensions())
    };
    let (w_small, h_small) = dims(2, 3)?;
    let (w_wide, h_wide) = dims(2, 12)?;
    let (w_tall, h_tall) = dims(6, 3)?;
    assert!(
        w_wide > w_small && h_wide == h_small,
        "more heads widen: {w_small}x{h_small} -> {w_wide}x{h_wide}"
    );
    assert!(
        h_tall > h_small && w_tall == w_small,
        "more layers heighten: {w_small}x{h_small} -> {w_tall}x{h_tall}"
    );
    let (w_big, h_big) = dims(6, 12)?;
    assert!(w_big >= w_wide && h_big >= h_tall);
    // A big model stays within a few thousand pixels instead of growing without bound.
    let (w_huge, h_huge) = dims(32, 32)?;
    assert!(
        w_huge <= 2600 && h_huge <= 2600,
        "32x32 heads gave {w_huge}x{h_huge}"
    );
    Ok(())
}

#[test]
fn labels_the_font_cannot_draw_do_not_panic() -> Result<(), RenderError> {
    let labels: Vec<String> = [
        "🤖",
        "你好",
        "a\nb",
        "",
        "x".repeat(400).as_str(),
        "👨‍👩‍👧",
        "\u{0}",
        "é",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let n = labels.len();
    let png = render(&causal_attention(n), n, &labels, Mask::Causal)?;
    let (width, _) = decode(&png).dimensions();
    // The 400-character label was cut, not allowed to stretch the picture.
    assert!(width < 1000, "long label widened the picture to {width}");
    let opts = GridOptions {
        title: "🤖 model",
        ..GridOptions::default()
    };
    grid_png(&causal_attention(4), 1, 1, 4, &opts)?;
    Ok(())
}

/// A dump paints each head onto a copy of one pre-drawn frame and codes only what the head
/// drew: every picture must decode to the pixels `heatmap_png` draws, including maps whose tick labels are wider
/// than the frame's (drawn whole), pooled long inputs, a pair's labels and another colormap.
#[test]
fn pictures_drawn_on_a_frame_equal_pictures_drawn_whole() -> Result<(), RenderError> {
    for (n, mask, colormap) in [(7, Mask::Causal, Colormap::default()), (40, Mask::None, Colormap::default()), (131, Mask::Causal, Colormap::from_name("magma").expect("magma")), (2500, Mask::Causal, Colormap::default())] {
        let labels: Vec<String> = (0..n).map(|i| if i % 9 == 4 { format!("a rather long token label {i}") } else { format!("t{i}") }).collect();
        let subtitle = format!("{n} tokens");
        let base = HeatmapOptions { title: "model · layer 0 · head 0", subtitle: Some(&subtitle), row_labels: &labels, col_labels: &labels, colormap, mask, ..HeatmapOptions::default() };
        let frame = HeatmapFrame::new(n, n, &base)?;
        let causal = causal_attention(n);
        // Maxima of one, two and three decimals, a flat map and a 0..1 scale: tick labels of several widths.
        for (index, peak) in [1.0f32, 0.37, 0.042, 0.0, 0.5].into_iter().enumerate() {
            let values: Vec<f32> = if peak == 0.0 { vec![0.0; n * n] } else { causal.iter().map(|v| v * peak).collect() };
            let scale = if index == 4 { Scale::Range { min: 0.0, max: 1.0 } } else { Scale::zero_to_max(&values) };
            let title = format!("model · layer {index} · head {}", index * 11);
            let whole = heatmap_png(&values, n, n, &HeatmapOptions { title: &title, scale, ..base })?;
            let framed = frame.png(&values, &title, scale)?;
            assert!(decode(&framed) == decode(&whole), "{n} tokens, peak {peak}: the framed picture differs from the whole one");
        }
    }
    Ok(())
}
