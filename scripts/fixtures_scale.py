#!/usr/bin/env python3
"""The scale test's model (issue 10): a random BERT of 96 layers x 96 heads, and its references.

Its weights (66 MB of float32) are too big to commit, so they come from a generator that the
Rust test (tests/integration/scale_model.rs) implements bit for bit: each tensor is a
splitmix64 stream keyed by its name, turned into 24-bit integers, scaled by a power of two
and shifted, all exactly in float64, then rounded once to float32. What is committed is the
recipe and its result's sha256, the tokenizer and config, and transformers' attention for
24 heads spread over the layers (first and last included):

  tests/fixtures/scale/config.json         BertConfig: 96 layers, 96 heads, hidden 192 (head_dim 2)
  tests/fixtures/scale/tokenizer.json      a WordLevel tokenizer over the words of TEXT
  tests/fixtures/scale/weights.json        the recipe: seed, tensors (per-layer templates), sha256
  tests/fixtures/scale/reference.safetensors
      input_ids, token_type_ids  int64   [128]
      sample_layer, sample_head  int64   [24]
      row_index                  int64   [R]    rows 0, 1, S-1 and every ceil(S/8)-th row
      attention_rows             float32 [24, R, S]
      attention_colsum           float64 [24, S] sum over all query rows
      attention_rowproj          float64 [24, S] each row against r_k = ((k*7919) % 1009)/1009
  tests/fixtures/scale/case.json           text, sizes, the float32 vs float64 spread, versions

Reference = BertModel.from_pretrained(dir, attn_implementation="eager", dtype=float32,
add_pooling_layer=False).eval(), no_grad, output_attentions=True, on the ids that
tokenizers.Tokenizer.from_file(tokenizer.json) gives (the Rust side's path).

Checks (exit 1 if one fails): transformers loads every generated tensor and nothing else (no
missing, unexpected or mismatched keys, and its state dict equals the generated arrays bit for
bit, so nothing was initialised at random); the text is exactly 128 tokens with no [UNK]; rows
sum to 1; a float64 run of the same weights agrees with the float32 maps within 2e-6 (a deep
random network can amplify rounding from layer to layer; these weight scales keep it calm, so
the Rust tests' 1e-5 is a real bound); the maps are neither uniform nor one-hot; the files stay
under 400 KB.

Usage:
  python scripts/fixtures_scale.py --out tests/fixtures/scale
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, BertModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import fail, row_index_for, rowproj, versions  # noqa: E402

SEED = 0x5CA1E_96_96
LAYERS, HEADS, HIDDEN, INTERMEDIATE, POSITIONS = 96, 96, 192, 32, 128
SAMPLES = 24
ROW_DIVISOR = 8

# 126 words: with [CLS] and [SEP] exactly 128 tokens.
TEXT = (
    "In the winter the clockmaker taught his apprentice to listen before he "
    "looked . Every wheel , spring and pin has a voice , he said , and a good ear hears the "
    "fault long before the eye can find it . The boy swept the floor , polished the brass and "
    "listened . By spring he could name each clock in the shop by its tick ; by summer "
    "he could hear which pendulum ran fast on warm days and which spring was tired . When the "
    "astronomer came with an order for a clock that could keep time to a tenth of a second , "
    "the old man smiled , handed the boy a file and said : listen first , then cut ."
)

# The recipe of one tensor: value = offset + amplitude * u, u = (x >> 40) * 2^-23 - 1 in [-1, 1)
# for the splitmix64 output x. Amplitudes are powers of two, so every step is exact in float64.
# Tried and measured (float32 vs float64 spread, mean row maximum; uniform is 1/128 = 0.008):
# - every matrix at 2^-2 or 2^-3 (init-like): the tokens' hidden states collapse onto one
#   vector within 12 layers (the value path and GELU's mean add the same vector to every
#   token), and layers 12-95 are uniform maps, which test nothing;
# - query and key at 2^-2: row maxima 0.35, but peaky maps amplify f32 rounding to 4e-6-8e-6;
# - query and key at 2^-3, value 2^-4, the rest smaller (below): row maxima 0.03-0.05 in
#   every layer, tokens still distinct at layer 96, spread 1.4e-6, as in the other fixtures,
#   so the Rust tests' 1e-5 holds on other CPUs.
EMBEDDING = (0.0, 1.0)
QUERY = (0.0, 0.125)
KEY = (0.0, 0.125)
VALUE = (0.0, 0.0625)
OUTPUT = (0.0, 0.03125)
DENSE = (0.0, 0.03125)
BIAS = (0.0, 0.0078125)
NORM_WEIGHT = (1.0, 0.03125)
NORM_BIAS = (0.0, 0.0078125)


def recipe(vocab_size):
    """(name, shape, (offset, amplitude)) for the embeddings, and the per-layer templates."""
    globals_ = [
        ("embeddings.word_embeddings.weight", [vocab_size, HIDDEN], EMBEDDING),
        ("embeddings.position_embeddings.weight", [POSITIONS, HIDDEN], EMBEDDING),
        ("embeddings.token_type_embeddings.weight", [2, HIDDEN], EMBEDDING),
        ("embeddings.LayerNorm.weight", [HIDDEN], NORM_WEIGHT),
        ("embeddings.LayerNorm.bias", [HIDDEN], NORM_BIAS),
    ]
    per_layer = []
    for part, scale in (("query", QUERY), ("key", KEY), ("value", VALUE)):
        per_layer += [(f"encoder.layer.{{layer}}.attention.self.{part}.weight", [HIDDEN, HIDDEN], scale), (f"encoder.layer.{{layer}}.attention.self.{part}.bias", [HIDDEN], BIAS)]
    per_layer += [
        ("encoder.layer.{layer}.attention.output.dense.weight", [HIDDEN, HIDDEN], OUTPUT),
        ("encoder.layer.{layer}.attention.output.dense.bias", [HIDDEN], BIAS),
        ("encoder.layer.{layer}.attention.output.LayerNorm.weight", [HIDDEN], NORM_WEIGHT),
        ("encoder.layer.{layer}.attention.output.LayerNorm.bias", [HIDDEN], NORM_BIAS),
        ("encoder.layer.{layer}.intermediate.dense.weight", [INTERMEDIATE, HIDDEN], DENSE),
        ("encoder.layer.{layer}.intermediate.dense.bias", [INTERMEDIATE], BIAS),
        ("encoder.layer.{layer}.output.dense.weight", [HIDDEN, INTERMEDIATE], DENSE),
        ("encoder.layer.{layer}.output.dense.bias", [HIDDEN], BIAS),
        ("encoder.layer.{layer}.output.LayerNorm.weight", [HIDDEN], NORM_WEIGHT),
        ("encoder.layer.{layer}.output.LayerNorm.bias", [HIDDEN], NORM_BIAS),
    ]
    return globals_, per_layer


def expand(globals_, per_layer):
    """Every tensor of the recipe, embeddings first, then layer by layer."""
    out = list(globals_)
    for layer in range(LAYERS):
        out += [(name.format(layer=layer), shape, scale) for name, shape, scale in per_layer]
    return out


MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def splitmix64(indices, key):
    """splitmix64's output for the states key + (i + 1) * GOLDEN, as uint64 (wrapping)."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (indices + np.uint64(1)) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def generate(name, shape, scale):
    offset, amplitude = scale
    count = int(np.prod(shape))
    x = splitmix64(np.arange(count, dtype=np.uint64), fnv1a64(name) ^ SEED)
    unit = (x >> np.uint64(40)).astype(np.float64) * 2.0**-23 - 1.0  # exact: 24-bit integers
    return (offset + amplitude * unit).astype(np.float32).reshape(shape)


def weights_sha256(tensors):
    """sha256 over the tensors in name order: name, '\\n', dims as u64 LE, data as f32 LE."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        array = tensors[name]
        h.update(name.encode("utf-8") + b"\n")
        h.update(np.asarray(array.shape, dtype="<u8").tobytes())
        h.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return h.hexdigest()


def build_tokenizer(path):
    words = TEXT.split()
    if len(words) != POSITIONS - 2:
        fail(f"TEXT has {len(words)} words, not {POSITIONS - 2}")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate(specials + sorted(set(words)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.add_special_tokens(specials)
    tok.save(path)
    return len(vocab)


def sample_heads():
    """24 (layer, head) pairs spread over the model, the first and last head included."""
    pairs = []
    for i in range(SAMPLES):
        layer = round(i * (LAYERS - 1) / (SAMPLES - 1))
        head = round(i * (HEADS - 1) / (SAMPLES - 1)) if i in (0, SAMPLES - 1) else (i * 37 + 11) % HEADS
        pairs.append((layer, head))
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/scale", help="folder for the fixtures (default tests/fixtures/scale)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    out = args.out
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    vocab_size = build_tokenizer(os.path.join(out, "tokenizer.json"))
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=POSITIONS,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )
    cfg.save_pretrained(out)

    globals_, per_layer = recipe(vocab_size)
    tensors = {name: generate(name, shape, scale) for name, shape, scale in expand(globals_, per_layer)}
    digest = weights_sha256(tensors)
    spec = {
        "generator": "scripts/fixtures_scale.py; tests/integration/scale_model.rs implements the same",
        "rule": "x_i = splitmix64 output for state (fnv1a64(name) ^ seed) + (i + 1) * 0x9E3779B97F4A7C15, "
        "wrapping; u_i = (x_i >> 40) * 2^-23 - 1; value = float32(offset + amplitude * u_i), in float64 before the one rounding",
        "sha256_rule": "over tensors in name order: utf-8 name, '\\n', dims as u64 LE, data as f32 LE",
        "seed": SEED,
        "layers": LAYERS,
        "tensors": [{"name": n, "shape": s, "offset": o, "amplitude": a} for n, s, (o, a) in globals_],
        "per_layer": [{"name": n, "shape": s, "offset": o, "amplitude": a} for n, s, (o, a) in per_layer],
        "sha256": digest,
        "bytes": sum(t.nbytes for t in tensors.values()),
    }
    with open(os.path.join(out, "weights.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")

    # The model folder transformers loads: the committed files plus the generated weights.
    with tempfile.TemporaryDirectory() as work:
        for name in ("config.json", "tokenizer.json"):
            shutil.copyfile(os.path.join(out, name), os.path.join(work, name))
        save_file(tensors, os.path.join(work, "model.safetensors"))
        model, info = BertModel.from_pretrained(
            work, attn_implementation="eager", dtype=torch.float32, add_pooling_layer=False, output_loading_info=True
        )
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(kind):
            fail(f"transformers reports {kind}: {list(info[kind])[:5]}")
    state = model.state_dict()
    if set(state) != set(tensors):
        fail(f"state dict keys differ from the generated ones: {sorted(set(state) ^ set(tensors))[:5]}")
    for name, array in tensors.items():
        if not np.array_equal(state[name].numpy(), array):
            fail(f"{name}: transformers' parameter is not the generated array")
    model.eval()

    encoding = Tokenizer.from_file(os.path.join(out, "tokenizer.json")).encode(TEXT)
    ids, type_ids = encoding.ids, encoding.type_ids
    if len(ids) != POSITIONS or 1 in ids:
        fail(f"the text gives {len(ids)} tokens (want {POSITIONS}) or an [UNK]")
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        att = torch.stack(model(input_ids=input_ids, token_type_ids=torch.tensor([type_ids]), output_attentions=True).attentions)[:, 0]
        att64 = torch.stack(model.double()(input_ids=input_ids, token_type_ids=torch.tensor([type_ids]), output_attentions=True).attentions)[:, 0]
    att, att64 = att.numpy(), att64.numpy()
    s = len(ids)
    if att.shape != (LAYERS, HEADS, s, s):
        fail(f"attention has shape {att.shape}")
    rowsum_err = float(np.abs(att.astype(np.float64).sum(-1) - 1.0).max())
    if rowsum_err > 1e-6:
        fail(f"rows do not sum to 1 (max err {rowsum_err:.3g})")
    spread = float(np.abs(att64 - att).max())
    spread_by_layer = np.abs(att64 - att).max(axis=(1, 2, 3))
    if spread > 2e-6:
        fail(f"float32 and float64 maps differ by {spread:.3g}: rounding grows through the layers; use smaller weights")
    peak = att.max(-1)
    peak_by_layer = peak.mean(axis=(1, 2))
    if not (peak_by_layer > 3.0 / s).all() or not (peak_by_layer < 0.9).all():
        fail(f"mean row maximum by layer {peak_by_layer.min():.3f}..{peak_by_layer.max():.3f}: some layer's maps are too flat or too peaky to test anything")

    pairs = sample_heads()
    sampled = np.stack([att[layer, head] for layer, head in pairs]).astype(np.float32)
    rows = row_index_for(s, ROW_DIVISOR)
    save_file(
        {
            "input_ids": np.asarray(ids, dtype=np.int64),
            "token_type_ids": np.asarray(type_ids, dtype=np.int64),
            "sample_layer": np.asarray([l for l, _ in pairs], dtype=np.int64),
            "sample_head": np.asarray([h for _, h in pairs], dtype=np.int64),
            "row_index": rows,
            "attention_rows": np.ascontiguousarray(sampled[:, rows, :]),
            "attention_colsum": np.ascontiguousarray(sampled.astype(np.float64).sum(axis=1)),
            "attention_rowproj": rowproj(sampled),
        },
        os.path.join(out, "reference.safetensors"),
        metadata={"case": "scale"},
    )
    case = {
        "text": TEXT,
        "seq_len": s,
        "layers": LAYERS,
        "heads": HEADS,
        "samples": [list(p) for p in pairs],
        "float64_spread": spread,
        "mean_row_max": float(peak.mean()),
        "float64_spread_sampled": float(max(np.abs(att64[l, h] - att[l, h]).max() for l, h in sample_heads())),
        "generator": {"script": "scripts/fixtures_scale.py", **versions()},
    }
    with open(os.path.join(out, "case.json"), "w", encoding="utf-8") as f:
        json.dump(case, f, indent=2)
        f.write("\n")

    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    if total > 400_000:
        fail(f"{out} is {total} bytes, over its 400 KB budget")
    print(f"weights: {spec['bytes']} bytes, sha256 {digest}")
    print(f"float32 vs float64: max {spread:.2e}; by layer (every 12th): {' '.join(f'{v:.1e}' for v in spread_by_layer[::12])}")
    print(f"mean row max by layer (every 12th): {' '.join(f'{v:.3f}' for v in peak_by_layer[::12])} (uniform {1 / s:.4f}); rows sum to 1 within {rowsum_err:.1e}")
    print(f"wrote {out} ({total} bytes); all checks passed")


if __name__ == "__main__":
    main()
