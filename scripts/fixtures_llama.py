#!/usr/bin/env python3
"""Reference fixtures for attnmap's LLaMA family (llama, mistral, qwen2) and GGUF loading.

Reference = Hugging Face transformers, eager attention, float32, eval mode, no padding,
truncation at config.max_position_embeddings (the same rules as scripts/make_fixtures.py,
whose helpers and case-file format this script reuses).

Outputs (under --out, default tests/fixtures):
  tiny-llama/    random LlamaForCausalLM: GQA 4/2, head_dim 16 != hidden/heads, q/k/v/o and MLP
                 biases, RoPE "llama3" scaling (all three frequency bands), SentencePiece-style
                 BPE tokenizer (Metaspace, byte fallback, <s> prepended); weights under `model.`
  tiny-mistral/  random MistralForCausalLM: sliding_window 8 (shorter than every case), RoPE
                 "linear" scaling written the transformers 4.x way (rope_theta + rope_scaling),
                 gelu_pytorch_tanh MLP, the same tokenizer as tiny-llama
  tiny-qwen2/    random Qwen2Model (weights without the `model.` prefix): q/k/v bias, no o bias,
                 use_sliding_window with max_window_layers 1 (layer 0 full, layer 1 window 6),
                 byte-level BPE tokenizer with Qwen2's split regex
  smollm2/       cases for the real SmolLM2-135M-Instruct Q4_1 GGUF (.models/smollm2, fetched by
                 scripts/fetch-models.sh); reference = transformers loading the same GGUF
                 (dequantized, q/k rows un-permuted)
  cases-llama.json  {"generator": {...}, "cases": [...]}

Token ids for SmolLM2 come from the ORIGINAL SmolLM2 tokenizer, rebuilt here from the GGUF
vocabulary and merges with the original pre-tokenizer, Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False)] (llama.cpp's "smollm" pre-type does the same). transformers'
own GGUF tokenizer does not know "smollm" and splits like plain GPT-2; where that gives other ids
the case records both (`hf_gguf_tokenizer_ids_differ`) and the original's ids are the reference.

Usage:
  python scripts/fixtures_llama.py [--out tests/fixtures] [--smollm2 .models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import tokenizers
import torch
from safetensors.numpy import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2Model,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import FULL_MAX, LONG_300, LONG_600, fail, perturb_parameters, rowproj, sha256, versions  # noqa: E402

SEED = 4321
INIT_RANGE = 0.25  # large enough that the tiny models' attention is peaky, not uniform
TINY_MAX_POSITIONS = 48
SMOLLM2_GGUF = ".models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

TINY_CASES = [
    ("short", "The quick brown fox jumps over the lazy dog."),
    ("digits", "Paid $2.4M (60%) on 14/3/2019; Zürich & 東京 🤖!"),
    (
        "truncated",
        "Once upon a time, there was a little house near the river. Every morning the old man "
        "walked to the market with his dog, and every evening they came back home before the "
        "sun went down. He said: 'I have 3 apples and 12 books!' Then the night was very dark "
        "and cold.",
    ),
]

SMOLLM2_CASES = [
    ("short", "The WhirlyGigs arrived broken on 3 May."),
    (
        "medium",
        # Whitespace runs before digits ("  15", "\n\n2") are where the original tokenizer and
        # transformers' GGUF tokenizer disagree.
        "Recipe for 4 people (serves 2 hungry ones):\n\n2 eggs,  15 g of butter and 250 ml of milk. "
        "Step 1: whisk for 30 seconds. Step 2: heat the pan to 180 degrees - about 3.5 minutes on "
        "a gas hob. Step 3: pour, wait 45 s, flip!\n\n1 tip: it costs roughly $1.20 per portion, "
        "or 60% less than a cafe's. Leftovers keep for 2 days at 4 degrees;   3 of us ate it all by 9 pm.",
    ),
    ("long_600", LONG_300 + "\n\n" + LONG_600),
]
SMOLLM2_LONG_TOKENS = 600  # the long case is cut, word by word, to at most this many tokens

TRAIN_TEXT = [LONG_300, LONG_600] + [text for _, text in TINY_CASES] + [
    "The cat sat on the mat. A dog ran to the red house. Numbers: 0 1 2 3 4 5 6 7 8 9.",
    "Where did the little dog find the old blue book? Under the tree, near the river!",
]


def train_sentencepiece_style(vocab_size):
    """A Llama/Mistral-style tokenizer.json: BPE with byte fallback over Metaspace pieces, <s> prepended.

    The byte tokens <0x00>..<0xFF> sit right after <unk>, <s>, </s>, as in Llama's vocabulary, so
    characters the merges never saw (東京, 🤖) fall back to bytes instead of <unk>.
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    spec = json.loads(tok.to_str())
    learned = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for token, _ in learned:
        if token not in vocab:
            vocab[token] = len(vocab)
    spec["model"]["vocab"] = vocab
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=TINY_MAX_POSITIONS
    )


def train_byte_level(vocab_size):
    """A Qwen2-style tokenizer.json: NFC, Qwen2's split regex, byte-level BPE, no BOS."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = tokenizers.normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=TINY_MAX_POSITIONS
    )


def build_tiny(out_dir, kind, tokenizer):
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    vocab = len(tokenizer.get_vocab())
    common = dict(
        vocab_size=vocab,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=TINY_MAX_POSITIONS,
        initializer_range=INIT_RANGE,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    if kind == "llama":
        config = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            head_dim=16,
            attention_bias=True,
            mlp_bias=True,
            hidden_act="silu",
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
            **common,
        )
        model = LlamaForCausalLM(config)
    elif kind == "mistral":
        config = MistralConfig(
            hidden_size=32,
            intermediate_size=64,
            sliding_window=8,
            hidden_act="gelu_pytorch_tanh",
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
            **common,
        )
        model = MistralForCausalLM(config)
    elif kind == "qwen2":
        config = Qwen2Config(
            hidden_size=32,
            intermediate_size=64,
            use_sliding_window=True,
            sliding_window=6,
            max_window_layers=1,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            **{**common, "tie_word_embeddings": True},
        )
        model = Qwen2Model(config)
    else:
        raise ValueError(kind)
    perturb_parameters(model, is_norm=lambda name: "norm" in name, norm_spread=0.3)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if kind == "mistral":
        # Write the RoPE settings the transformers 4.x way, as most Hub checkpoints still do,
        # so the Rust side reads both spellings; the reference below loads this file back.
        path = os.path.join(out_dir, "config.json")
        cfg = json.load(open(path, encoding="utf-8"))
        rope = cfg.pop("rope_parameters")
        cfg["rope_theta"] = rope["rope_theta"]
        cfg["rope_scaling"] = {"type": "linear", "factor": rope["factor"]}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
    for stray in ("generation_config.json",):
        if os.path.exists(os.path.join(out_dir, stray)):
            os.remove(os.path.join(out_dir, stray))


def encode(tok, text, max_len):
    """transformers' ids with truncation, and the untruncated count; checked against tokenizer.json."""
    ids = tok(text, truncation=True, max_length=max_len, padding=False)["input_ids"]
    full = tok(text, truncation=False, padding=False)["input_ids"]
    return list(ids), len(full)


def rust_style_ids(tokenizer_json, text, max_len):
    """What the Rust side does: tokenizers.Tokenizer.from_file + no_padding + truncation."""
    t = Tokenizer.from_file(tokenizer_json)
    t.no_padding()
    t.enable_truncation(max_len)
    e = t.encode(text)
    return list(e.ids), list(e.tokens)


def reference_tensors(model, ids, rows, keep_hidden):
    """Run the reference on one input: the case tensors in make_fixtures.py's format."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True, return_dict=True)
    att = torch.stack([a[0] for a in out.attentions]).float().numpy()  # [L, H, S, S]
    hid = out.last_hidden_state[0].float().numpy()
    s = len(ids)
    if not np.isfinite(att).all() or not np.isfinite(hid).all():
        fail("non-finite reference values")
    rowsum_err = float(np.abs(att.astype(np.float64).sum(-1) - 1.0).max())
    if rowsum_err > 1e-5:
        fail(f"attention rows do not sum to 1 (max err {rowsum_err:.3g})")
    upper = np.triu(np.ones((s, s), dtype=bool), 1)
    if not (att[..., upper] == 0.0).all():
        fail("masked (future) cells are not exactly 0 in the reference")
    tensors = {
        "input_ids": np.asarray(ids, dtype=np.int64),
        "token_type_ids": np.zeros(s, dtype=np.int64),
    }
    if keep_hidden:
        tensors["last_hidden_state"] = np.ascontiguousarray(hid, dtype=np.float32)
    full = s <= FULL_MAX
    if full:
        tensors["attentions"] = np.ascontiguousarray(att, dtype=np.float32)
    else:
        tensors["attention_rows"] = np.ascontiguousarray(att[:, :, rows, :], dtype=np.float32)
        tensors["row_index"] = np.asarray(rows, dtype=np.int64)
        tensors["attention_colsum"] = np.ascontiguousarray(att.astype(np.float64).sum(axis=2), dtype=np.float64)
        tensors["attention_rowproj"] = rowproj(att)
    return att, tensors, full


def stats(att):
    a = att.astype(np.float64)
    ent = -(a * np.log(np.clip(a, 1e-30, None))).sum(-1)
    return f"mean_max_prob={att.max(-1).mean():.3f} mean_entropy={ent.mean():.3f}"


def entry(model_name, case, text, ids, n_full, max_len, att, full, tensors, extra=None):
    layers, heads = att.shape[0], att.shape[1]
    e = {
        "model": model_name,
        "case": case,
        "text": text,
        "pair": None,
        "seq_len": len(ids),
        "layers": layers,
        "heads": heads,
        "full": full,
        "truncated_from": n_full if n_full > max_len else None,
        "rows": None if full else int(len(tensors["row_index"])),
        "file": f"{model_name}/{case}.safetensors",
    }
    e.update(extra or {})
    return e


def run_tiny(out, name, report):
    model_dir = os.path.join(out, name)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32).eval()
    cfg = model.config
    max_len = cfg.max_position_embeddings
    entries = []
    for case, text in TINY_CASES:
        ids, n_full = encode(tok, text, max_len)
        r_ids, r_tokens = rust_style_ids(os.path.join(model_dir, "tokenizer.json"), text, max_len)
        if r_ids != ids:
            fail(f"{name}/{case}: transformers and tokenizer.json disagree:\n  hf:  {ids}\n  raw: {r_ids}")
        if tok.unk_token_id is not None and tok.unk_token_id in ids:
            fail(f"{name}/{case}: <unk> in the ids (byte fallback should cover every character)")
        att, tensors, full = reference_tensors(model, ids, None, keep_hidden=True)
        if not full:
            fail(f"{name}/{case}: tiny cases must stay within {FULL_MAX} tokens")
        windows = set(getattr(cfg, "layer_types", None) or []) if name == "tiny-qwen2" else set()
        window = getattr(cfg, "sliding_window", None)
        if window is not None and len(ids) > window:
            # The window must really hide keys: a query `window` or more positions on sees nothing that old.
            sliding_layers = [
                layer
                for layer in range(att.shape[0])
                if name == "tiny-mistral" or cfg.layer_types[layer] == "sliding_attention"
            ]
            for layer in sliding_layers:
                for q in range(window, len(ids)):
                    if att[layer, :, q, : q - window + 1].any():
                        fail(f"{name}/{case}: layer {layer} query {q} sees keys outside the window")
                if not att[layer, :, window:, :].any():
                    fail(f"{name}/{case}: layer {layer} is empty")
        save_file(tensors, os.path.join(model_dir, f"{case}.safetensors"), metadata={"case": f"{name}/{case}"})
        report.append(
            f"{name}/{case}: S={len(ids)} (before truncation {n_full}) {stats(att)} "
            f"windows={sorted(windows) or window} tokens={' '.join(r_tokens[:16])}{' ...' if len(r_tokens) > 16 else ''}"
        )
        entries.append(entry(name, case, text, ids, n_full, max_len, att, full, tensors))
    if not any(e["truncated_from"] for e in entries):
        fail(f"{name}: no case is truncated at {max_len}")
    return entries


def original_smollm2_tokenizer(hf_gguf_tokenizer):
    """The original SmolLM2 tokenizer.json pipeline over the GGUF's vocabulary and merges."""
    backend = Tokenizer.from_str(hf_gguf_tokenizer.backend_tokenizer.to_str())
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    return backend


def run_smollm2(out, gguf_path, report):
    if not os.path.isfile(gguf_path):
        fail(f"{gguf_path} is missing: run scripts/fetch-models.sh")
    digest = sha256(gguf_path)
    if digest != SMOLLM2_SHA256:
        fail(f"{gguf_path} has sha256 {digest}, expected {SMOLLM2_SHA256}")
    folder, file = os.path.split(os.path.abspath(gguf_path))
    hf_tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    original = original_smollm2_tokenizer(hf_tok)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=file, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    base = model.model
    max_len = model.config.max_position_embeddings
    out_dir = os.path.join(out, "smollm2")
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    entries = []
    for case, text in SMOLLM2_CASES:
        if case == "long_600":
            words = text.split(" ")
            while len(original.encode(" ".join(words)).ids) > SMOLLM2_LONG_TOKENS:
                words = words[:-1]
            text = " ".join(words)
        ids = original.encode(text).ids
        hf_ids = hf_tok(text)["input_ids"]
        if len(ids) > max_len:
            fail(f"smollm2/{case}: {len(ids)} tokens exceeds {max_len}")
        s = len(ids)
        # Few rows keep the files small (colsum and rowproj still cover every row): the long
        # case keeps only its last row, the one that attends over all 600 keys.
        rows = None if s <= FULL_MAX else ([s // 3, 2 * s // 3, s - 1] if s < 300 else [s - 1])
        att, tensors, full = reference_tensors(base, ids, rows, keep_hidden=s <= FULL_MAX)
        save_file(tensors, os.path.join(out_dir, f"{case}.safetensors"), metadata={"case": f"smollm2/{case}"})
        differ = list(hf_ids) != list(ids)
        report.append(
            f"smollm2/{case}: S={s} {stats(att)} transformers-gguf-tokenizer ids differ: {differ}"
            + (f" ({len(hf_ids)} vs {s} tokens)" if differ else "")
        )
        entries.append(
            entry(
                "smollm2",
                case,
                text,
                ids,
                s,
                max_len,
                att,
                full,
                tensors,
                {"model_path": SMOLLM2_GGUF, "hf_gguf_tokenizer_ids_differ": differ},
            )
        )
    if not any(e["hf_gguf_tokenizer_ids_differ"] for e in entries):
        fail("expected at least one SmolLM2 case where transformers' GGUF tokenizer differs from the original")
    return entries, digest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures", help="fixtures folder (default tests/fixtures)")
    ap.add_argument("--smollm2", default=SMOLLM2_GGUF, help=f"the SmolLM2 GGUF (default {SMOLLM2_GGUF})")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # bit-identical float32 reductions run to run
    out = args.out
    os.makedirs(out, exist_ok=True)
    report = []

    sp_tok = train_sentencepiece_style(480)
    bl_tok = train_byte_level(480)
    built = {}
    for name, kind, tok in [("tiny-llama", "llama", sp_tok), ("tiny-mistral", "mistral", sp_tok), ("tiny-qwen2", "qwen2", bl_tok)]:
        build_tiny(os.path.join(out, name), kind, tok)
        built[name] = {
            "seed": SEED,
            "initializer_range": INIT_RANGE,
            "vocab_size": len(tok.get_vocab()),
            "model_safetensors_sha256": sha256(os.path.join(out, name, "model.safetensors")),
            "tokenizer_json_sha256": sha256(os.path.join(out, name, "tokenizer.json")),
            "config_json_sha256": sha256(os.path.join(out, name, "config.json")),
        }
    entries = []
    for name in built:
        entries += run_tiny(out, name, report)
    smol_entries, smol_sha = run_smollm2(out, args.smollm2, report)
    entries += smol_entries

    generator = {
        "script": "scripts/fixtures_llama.py",
        **versions(),
        "reference": "AutoModel.from_pretrained(dir, attn_implementation='eager', dtype=float32).eval() "
        "(SmolLM2: AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., ...).model), torch.no_grad(), "
        "output_attentions=True; tiny ids: tok(text, truncation=True, max_length=config.max_position_embeddings); "
        "SmolLM2 ids: the original tokenizer pipeline (Digits(individual_digits) + ByteLevel) over the GGUF vocabulary",
        "full_max_seq_len": FULL_MAX,
        "row_rule": "S > 64: rows [S//3, 2S//3, S-1] (S < 300) or [S-1]; colsum and rowproj cover every row",
        "tiny": built,
        "smollm2": {"gguf": SMOLLM2_GGUF, "sha256": smol_sha, "long_case_max_tokens": SMOLLM2_LONG_TOKENS},
    }
    with open(os.path.join(out, "cases-llama.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": generator, "cases": entries}, f, indent=2, ensure_ascii=False)
        f.write("\n")

    mine = ["tiny-llama", "tiny-mistral", "tiny-qwen2", "smollm2", "cases-llama.json"]
    total = 0
    for item in mine:
        path = os.path.join(out, item)
        if os.path.isdir(path):
            total += sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        else:
            total += os.path.getsize(path)
    report.append(f"total size of this script's fixtures: {total} bytes")
    print("\n".join(report))
    if total >= 6_000_000:
        fail(f"the llama fixtures are {total} bytes, over the ~6 MB budget")
    print(f"\nwrote {len(entries)} cases; all checks passed")


if __name__ == "__main__":
    main()
