//! Hostile files, devices, signals and huge inputs (issue 12): a crafted file
//! is an error, never a panic or a huge allocation; writing never replaces what
//! the user pointed at with something else; every failure is one error line.

use crate::helpers::{assert_clean_failure, attnmap, fixtures, run_broken_model, tiny_bert_dir};

/// A safetensors file from a header (JSON) and a data section.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// The regression the issue carries: a shape whose byte count wraps to 4 (2^62 + 1 elements
/// of 4 bytes) must be refused, not allocated ("capacity overflow", exit 101 before).
#[test]
fn safetensors_shape_that_wraps_is_an_error() {
    let output = run_broken_model(&tiny_bert_dir(), |model| {
        let header = r#"{"embeddings.word_embeddings.weight":{"dtype":"F32","shape":[4611686018427387905],"data_offsets":[0,4]}}"#;
        std::fs::write(model.join("model.safetensors"), safetensors(header, &[0; 4])).unwrap();
    });
    assert_clean_failure(&output, "does not take");
}

#[test]
fn safetensors_overlapping_or_outside_tensors_are_errors() {
    // Many tensors over the same bytes would each be allocated: refused before any is read.
    let output = run_broken_model(&tiny_bert_dir(), |model| {
        let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        std::fs::write(model.join("model.safetensors"), safetensors(header, &[0; 8])).unwrap();
    });
    assert_clean_failure(&output, "overlap");
    let output = run_broken_model(&tiny_bert_dir(), |model| {
        let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551610,18446744073709551615]}}"#;
        std::fs::write(model.join("model.safetensors"), safetensors(header, &[0; 8])).unwrap();
    });
    assert_clean_failure(&output, "truncated");
    let output = run_broken_model(&tiny_bert_dir(), |model| {
        let header = r#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#;
        std::fs::write(model.join("model.safetensors"), safetensors(header, &[0; 8])).unwrap();
    });
    assert_clean_failure(&output, "unknown dtype");
}

/// Config counts that would size loops and tables before any weight is compared with them.
#[test]
fn absurd_config_counts_are_refused() {
    for (field, value) in [("num_hidden_layers", "4611686018427387905"), ("hidden_size", "1099511627776"), ("num_attention_heads", "1000000")] {
        let output = run_broken_model(&tiny_bert_dir(), |model| {
            let config = std::fs::read_to_string(model.join("config.json")).unwrap();
            let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
            json[field] = serde_json::Value::Number(value.parse().unwrap());
            std::fs::write(model.join("config.json"), json.to_string()).unwrap();
        });
        assert_clean_failure(&output, "config.json");
    }
    let llama = fixtures().join("tiny-llama");
    let output = run_broken_model(&llama, |model| {
        let config = std::fs::read_to_string(model.join("config.json")).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
        json["num_hidden_layers"] = serde_json::json!(1u64 << 60);
        std::fs::write(model.join("config.json"), json.to_string()).unwrap();
    });
    assert_clean_failure(&output, "num_hidden_layers");
}

/// A dump's attention.npy whose shape multiplies past usize must not wrap to the data length.
#[test]
fn dump_with_a_wrapping_npy_shape_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let dump = fixtures().join("diff/old");
    let crafted = dir.path().join("crafted");
    std::fs::create_dir(&crafted).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dump.join("manifest.json")).unwrap()).unwrap();
    let seq = manifest["seq_len"].as_u64().unwrap();
    manifest["layers"] = serde_json::json!(1u64 << 62);
    manifest["heads"] = serde_json::json!(4);
    std::fs::write(crafted.join("manifest.json"), manifest.to_string()).unwrap();
    // 2^62 * 4 * seq * seq * 4 bytes wraps to 0 modulo 2^64.
    let shape = format!("({}, 4, {seq}, {seq})", 1u64 << 62);
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    std::fs::write(crafted.join("attention.npy"), npy).unwrap();
    let output = attnmap(&["diff", dump.to_str().unwrap(), crafted.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "attention.npy");
    // A dump whose attention.npy is a device is refused, not read forever.
    std::fs::remove_file(crafted.join("attention.npy")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", crafted.join("attention.npy")).unwrap();
    std::fs::write(crafted.join("manifest.json"), std::fs::read(dump.join("manifest.json")).unwrap()).unwrap();
    let output = attnmap(&["diff", dump.to_str().unwrap(), crafted.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "not a regular file");
}

