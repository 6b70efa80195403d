#!/usr/bin/env python3
"""References for attnmap's views (norm, rollout, flow) and word-level maps.

Reference:
  - attention: transformers eager, float32, eval, no_grad, output_attentions=True;
    tok(text, text_pair=pair, truncation=True, max_length=<max tokens>, padding=False).
  - norm (Kobayashi et al. 2020): a forward hook on each layer's value projection captures
    x W_V + b_V (bias included); each query head's values (its KV group for grouped-query
    models) go through that head's slice of the output projection W_O (bias excluded):
    value_norm[l, h, j] = ||v_{g(h), j} W_O^h||, norm = attention * value_norm[..., None, :].
  - rollout (Abnar & Zuidema 2020), numpy float64 from the reference attention:
    Â_l = rownorm(0.5 * mean_h A_l + 0.5 I); R_0 = Â_0; R_l = Â_l R_{l-1}.
  - flow: networkx.maximum_flow_value on the layered graph, edge (l+1, i) -> (l, j) with
    capacity Â_l[i, j]; flow_l[i, j] = max-flow from (l+1, i) to (0, j), rows normalised to 1.
  - words: transformers' word_ids() and sequence_ids(); consecutive tokens with the same
    (sequence, word) form a word, special tokens stand alone; merged rows are the mean over a
    word's tokens, columns the sum (numpy).

Models: the real all-MiniLM-L6-v2 (--minilm, default .models/minilm) on a short text and one of
about 60 tokens, and every tiny random model already under tests/fixtures/tiny-* (made by
make_fixtures.py, fixtures_gpt.py, fixtures_llama.py; their configs and weights are reused).

Outputs (under --out, default tests/fixtures/views):
  <model>_<case>.safetensors   input_ids [S] int64; value_norm [L, H, S]; norm [len(norm_layers), H, S, S]
                               with norm_layers; rollout [L, S, S]; flow [L, S, S] (short inputs) or
                               flow_rows [R, S] of layer flow_layer with flow_row_index; word_start,
                               word_end [W]; words_weights, words_norm [len(words_heads), W, W]
                               of layer words_layer; words_rollout [L, W, W]
  cases.json                   {"generator": {...}, "cases": [...]}

Usage:
  /work/venv/bin/python scripts/fixtures_views.py
"""

import argparse
import json
import os
import platform
import sys

import networkx
import numpy as np
import safetensors
import torch
import transformers
from safetensors.numpy import save_file
from transformers import AutoModel, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE_BUDGET = 1_100_000  # about 1 MB of the 16 MB all fixtures may take
FLOW_FULL_MAX = 32  # networkx flow for every pair up to this many tokens; sampled rows beyond

MINILM_SHORT = "The WhirlyGigs arrived broken, so I asked for a refund."
MINILM_LONG = (
    "Support never answered my emails about the WhirlyGigs, which arrived broken in a crushed box; "
    "after three weeks of waiting, I finally called the store, and a friendly person named Ana "
    "promised a full refund within 5 days, but nothing has come back to my card so far."
)
TINY_TEXT = "The quick brown fox jumps over the lazy dog."
TINY_PAIR = ("Where did the cat sleep?", "On the warm red mat.")
ENCODERS = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert")


def fail(message):
    print(f"fixtures_views.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def max_tokens(config):
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        return config.max_position_embeddings - config.pad_token_id - 1
    if config.model_type == "gpt2":
        return config.n_positions
    return config.max_position_embeddings


def value_projection(model, layer):
    """The module whose output holds the values (bias included), and how to cut them out."""
    t = model.config.model_type
    if t in ("bert", "roberta", "xlm-roberta", "camembert"):
        return model.encoder.layer[layer].attention.self.value, lambda out: out
    if t == "distilbert":
        return model.transformer.layer[layer].attention.v_lin, lambda out: out
    if t == "gpt2":
        d = model.config.n_embd
        return model.h[layer].attn.c_attn, lambda out: out[..., 2 * d:]
    if t == "gpt_neox":
        heads = model.config.num_attention_heads
        def cut(out):
            s = out.shape[-2]
            per_head = out.reshape(s, heads, -1)
            d = per_head.shape[-1] // 3
            return per_head[..., 2 * d:].reshape(s, -1)
        return model.layers[layer].attention.query_key_value, cut
    if t in ("llama", "mistral", "qwen2"):
        return model.layers[layer].self_attn.v_proj, lambda out: out
    fail(f"no value projection known for {t}")


def output_projection(model, layer):
    """W_O as [heads * d, d_model] (so that f = v_h @ W_O[h*d:(h+1)*d])."""
    t = model.config.model_type
    if t in ("bert", "roberta", "xlm-roberta", "camembert"):
        return model.encoder.layer[layer].attention.output.dense.weight.T
    if t == "distilbert":
        return model.transformer.layer[layer].attention.out_lin.weight.T
    if t == "gpt2":
        return model.h[layer].attn.c_proj.weight  # Conv1D: already [in, out]
    if t == "gpt_neox":
        return model.layers[layer].attention.dense.weight.T
    return model.layers[layer].self_attn.o_proj.weight.T


def reference(model, ids, type_ids):
    config = model.config
    layers = config.num_hidden_layers if hasattr(config, "num_hidden_layers") else config.n_layer
    captured = {}
    hooks = []
    for layer in range(layers):
        module, cut = value_projection(model, layer)
        hooks.append(module.register_forward_hook(lambda m, i, out, layer=layer, cut=cut: captured.__setitem__(layer, cut(out[0]).detach())))
    kwargs = {"input_ids": torch.tensor([ids])}
    if type_ids is not None and config.model_type == "bert":
        kwargs["token_type_ids"] = torch.tensor([type_ids])
    with torch.no_grad():
        out = model(**kwargs, output_attentions=True, return_dict=True)
    for hook in hooks:
        hook.remove()
    att = torch.stack([a[0] for a in out.attentions]).float().numpy()  # [L, H, S, S]
    heads = att.shape[1]
    s = len(ids)
    value_norm = np.zeros((layers, heads, s), dtype=np.float64)
    for layer in range(layers):
        v = captured[layer].double().numpy()  # [S, kv_heads * d]
        w_o = output_projection(model, layer).detach().double().numpy()  # [heads * d, d_model]
        d = w_o.shape[0] // heads
        kv_heads = v.shape[1] // d
        group = heads // kv_heads
        for h in range(heads):
            g = h // group
            f = v[:, g * d:(g + 1) * d] @ w_o[h * d:(h + 1) * d]
            value_norm[layer, h] = np.linalg.norm(f, axis=1)
    return att, value_norm


def residual(att_layer):
    s = att_layer.shape[-1]
    a = 0.5 * att_layer.astype(np.float64).mean(axis=0) + 0.5 * np.eye(s)
    return a / a.sum(axis=1, keepdims=True)


def rollout(att):
    out, r = [], None
    for layer in range(att.shape[0]):
        a = residual(att[layer])
        r = a if r is None else a @ r
        out.append(r)
    return np.stack(out)


def flow_rows(att, layer, rows):
    """networkx max-flow from (layer+1, i) to every (0, j), rows normalised."""
    s = att.shape[-1]
    graph = networkx.DiGraph()
    for l in range(layer + 1):
        a = residual(att[l])
        for i in range(s):
            for j in range(s):
                if a[i, j] > 0:
                    graph.add_edge((l + 1, i), (l, j), capacity=float(a[i, j]))
    out = np.zeros((len(rows), s))
    for r, i in enumerate(rows):
        for j in range(s):
            if networkx.has_path(graph, (layer + 1, i), (0, j)):
                out[r, j] = networkx.maximum_flow_value(graph, (layer + 1, i), (0, j))
        out[r] /= out[r].sum()
    return out


def words_of(encoding, special_mask):
    """(start, end) token spans: consecutive tokens with the same (sequence, word); specials alone."""
    word_ids, sequence_ids = encoding.word_ids(), encoding.sequence_ids()
    keys = [None if special_mask[t] or word_ids[t] is None else (sequence_ids[t], word_ids[t]) for t in range(len(word_ids))]
    spans, t = [], 0
    while t < len(keys):
        start = t
        t += 1
        if keys[start] is not None:
            while t < len(keys) and keys[t] == keys[start]:
                t += 1
        spans.append((start, t))
    return spans


def merge(maps, spans):
    """[..., S, S] -> [..., W, W]: rows mean over a word's tokens, columns sum."""
    rows = np.stack([maps[..., a:b, :].mean(axis=-2) for a, b in spans], axis=-2)
    return np.stack([rows[..., a:b].sum(axis=-1) for a, b in spans], axis=-1)


def run_case(out_dir, name, model_dir, case, text, pair, norm_layers, flow_sample, words_heads=None):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32).eval()
    enc = tok(text, text_pair=pair, truncation=True, max_length=max_tokens(model.config), padding=False, return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    att, value_norm = reference(model, ids, enc.get("token_type_ids"))
    layers, heads, s, _ = att.shape
    norm = att.astype(np.float64) * value_norm[:, :, None, :]
    rolled = rollout(att)
    tensors = {
        "input_ids": np.array(ids, dtype=np.int64),
        "value_norm": value_norm.astype(np.float32),
        "norm_layers": np.array(norm_layers, dtype=np.int64),
        "norm": norm[norm_layers].astype(np.float32),
        "rollout": rolled.astype(np.float32),
    }
    if flow_sample is None:
        if s > FLOW_FULL_MAX:
            fail(f"{name}/{case}: {s} tokens is too long for a full flow reference")
        tensors["flow"] = np.stack([flow_rows(att, layer, range(s)) for layer in range(layers)]).astype(np.float32)
    else:
        rows = [0, s // 2, s - 1][:flow_sample]
        tensors["flow_layer"] = np.array([layers - 1], dtype=np.int64)
        tensors["flow_row_index"] = np.array(rows, dtype=np.int64)
        tensors["flow_rows"] = flow_rows(att, layers - 1, rows).astype(np.float32)
    spans = words_of(enc, enc["special_tokens_mask"])
    words_layer = layers - 1
    words_heads = list(range(heads)) if words_heads is None else words_heads
    tensors["words_heads"] = np.array(words_heads, dtype=np.int64)
    tensors["word_start"] = np.array([a for a, _ in spans], dtype=np.int64)
    tensors["word_end"] = np.array([b for _, b in spans], dtype=np.int64)
    tensors["words_layer"] = np.array([words_layer], dtype=np.int64)
    tensors["words_weights"] = merge(att[words_layer][words_heads].astype(np.float64), spans).astype(np.float32)
    tensors["words_norm"] = merge(norm[words_layer][words_heads], spans).astype(np.float32)
    tensors["words_rollout"] = merge(rolled, spans).astype(np.float32)
    # Self-checks: rows of shares sum to 1, word rows too, norms are attention times a column factor.
    for label, maps in (("rollout", rolled), ("words_rollout", tensors["words_rollout"]), ("words_weights", tensors["words_weights"])):
        if np.abs(maps.sum(axis=-1) - 1).max() > 1e-5:
            fail(f"{name}/{case}: {label} rows do not sum to 1")
    file = f"{name}_{case}.safetensors"
    save_file(tensors, os.path.join(out_dir, file))
    print(f"{name}/{case}: {s} tokens, {len(spans)} words, {layers} layers x {heads} heads")
    return {
        "model": name,
        "model_path": os.path.relpath(model_dir, ROOT),
        "case": case,
        "text": text,
        "pair": pair,
        "seq_len": s,
        "words": len(spans),
        "layers": layers,
        "heads": heads,
        "kv_heads": getattr(model.config, "num_key_value_heads", heads),
        "file": file,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minilm", default=os.path.join(ROOT, ".models/minilm"))
    parser.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/views"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    cases = [
        run_case(args.out, "minilm", args.minilm, "short", MINILM_SHORT, None, list(range(6)), None),
        run_case(args.out, "minilm", args.minilm, "long", MINILM_LONG, None, [5], 3, [0, 5, 11]),
    ]
    fixtures = os.path.join(ROOT, "tests/fixtures")
    for name in sorted(os.listdir(fixtures)):
        model_dir = os.path.join(fixtures, name)
        if not name.startswith("tiny-") or not os.path.isfile(os.path.join(model_dir, "model.safetensors")):
            continue
        model_type = json.load(open(os.path.join(model_dir, "config.json")))["model_type"]
        pair = TINY_PAIR if model_type in ENCODERS else (TINY_TEXT, None)
        case = "pair" if pair[1] else "short"
        config = transformers.AutoConfig.from_pretrained(model_dir)
        layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or config.n_layers
        cases.append(run_case(args.out, name, model_dir, case, pair[0], pair[1], list(range(layers)), None))
    size = sum(os.path.getsize(os.path.join(args.out, c["file"])) for c in cases)
    if size > SIZE_BUDGET:
        fail(f"the view fixtures take {size} bytes, over the {SIZE_BUDGET} budget")
    generator = {
        "script": "scripts/fixtures_views.py",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "networkx": networkx.__version__,
        "safetensors": safetensors.__version__,
        "flow_full_max": FLOW_FULL_MAX,
        "bytes": size,
    }
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"generator": generator, "cases": cases}, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"{len(cases)} cases, {size} bytes")


if __name__ == "__main__":
    main()
