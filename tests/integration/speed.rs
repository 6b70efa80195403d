//! Issue 10's correctness side (its speed side is in benches/): `info` opens no
//! weights, `show` keeps only the head it draws and equals the full capture bit
//! for bit, and `--layer L` runs no layer past L.

use attnmap::capture::Capture;
use attnmap::hooks::{HookPoint, HookSink};
use candle_core::Tensor;

use crate::helpers::{assert_clean_failure, attnmap, fixtures, loaded, run_broken_model, stderr};

/// info describes a model from config.json alone: a folder whose weights are cut short
/// still describes itself, and the first command that needs the weights names the file.
#[test]
fn info_reads_the_config_not_the_weights() {
    let source = fixtures().join("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join(file), model.join(file)).unwrap();
    }
    let weights = std::fs::read(source.join("model.safetensors")).unwrap();
    std::fs::write(model.join("model.safetensors"), &weights[..1000]).unwrap();
    let output = attnmap(&["info", "--model", model.to_str().unwrap()], &[]);
    assert!(output.status.success(), "info failed: {}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("architecture   llama") && text.contains("layers         2"), "{text}");
    let output = run_broken_model(&model, |_| {});
    assert_clean_failure(&output, "model.safetensors");
}

/// `show` keeps only its head; the map is the one the full capture holds, bit for bit.
#[test]
fn one_kept_head_equals_the_full_capture() {
    for name in ["tiny-llama", "tiny-bert"] {
        let model = loaded(&fixtures().join(name));
        let info = model.model.info().clone();
        let input = model.tokenizer.encode("the cat sat on the mat because it was warm", None).unwrap();
        let full = Capture::run(model.model.as_ref(), &input, None, &[]).unwrap().capture;
        let layer = info.layers - 1;
        for head in [0, info.heads - 1] {
            let one = Capture::run_heads(model.model.as_ref(), &input, Some(vec![layer]), Some(vec![head]), &[]).unwrap().capture;
            assert!(one.head(layer, head).unwrap() == full.head(layer, head).unwrap(), "{name} L{layer} H{head}");
            assert!(one.head(layer, (head + 1) % info.heads).is_none(), "{name}: other heads must not be kept");
            assert!(one.dense().is_none());
        }
    }
}

/// Records which layers the forward pass asks about.
struct Watch {
    last: usize,
    seen: std::cell::RefCell<Vec<usize>>,
}

impl HookSink for Watch {
    fn wants(&self, point: HookPoint) -> bool {
        self.seen.borrow_mut().push(point.layer);
        false
    }
    fn record(&mut self, _point: HookPoint, _value: &Tensor) -> attnmap::error::Result<()> {
        Ok(())
    }
    fn last_layer(&self) -> Option<usize> {
        Some(self.last)
    }
}

/// `show --layer L` runs layers 0..=L and stops: nothing past L is computed.
#[test]
fn the_forward_pass_stops_after_the_last_layer_wanted() {
    for name in ["tiny-llama", "tiny-bert", "tiny-gpt2", "tiny-gpt-neox"] {
        let model = loaded(&fixtures().join(name));
        let input = model.tokenizer.encode("the cat sat", None).unwrap();
        let mut watch = Watch { last: 0, seen: Default::default() };
        model.model.forward(&input, &mut watch).unwrap();
        // Every layer asks whether its pattern is wanted, so `seen` lists the layers run.
        let seen = watch.seen.into_inner();
        assert_eq!(seen.iter().max(), Some(&0), "{name} ran layers {seen:?}");
    }
}
