#!/usr/bin/env python3
"""Tiny random GPT-2, DistilBERT, RoBERTa, XLM-RoBERTa and GPT-NeoX models and their references.

Reference = Hugging Face transformers, eager attention, float32, eval mode, no padding,
tok(text, text_pair=pair, truncation=True, max_length=<the model's real maximum>, padding=False).
The maximum is n_positions (gpt2), max_position_embeddings (distilbert, gpt_neox) and
max_position_embeddings - pad_token_id - 1 for roberta / xlm-roberta, whose positions start
at pad_token_id + 1.

Every model is built from a config with a fixed seed, with its own tiny tokenizer trained here
with the `tokenizers` library of its family (byte-level BPE for gpt2, roberta and gpt_neox,
WordPiece for distilbert, Unigram for xlm-roberta) and wrapped in the transformers tokenizer
class of that family, so what is saved is what transformers itself would save.

Outputs (under --out, default tests/fixtures):
  tiny-<name>/                   config.json, model.safetensors, tokenizer.json, tokenizer_config.json
  tiny-<name>/<case>.safetensors reference tensors, same format as scripts/make_fixtures.py
  cases-gpt.json                 {"generator": {...}, "cases": [...]}

Checks (exit 1 if one fails): the Rust-side tokenization (tokenizers.Tokenizer.from_file,
no_padding, enable_truncation(max)) gives the transformers ids; truncated cases have exactly
max tokens; rows sum to 1; causal cells are exactly 0; every parameter matters (resetting any one
tensor moves the attention or the hidden states by far more than the Rust tolerance); the fixtures
stay under 3 MB.

Usage:
  python scripts/fixtures_gpt.py --out tests/fixtures
"""

import argparse
import json
import math
import os
import platform
import shutil
import sys

import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModel,
    AutoTokenizer,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    GPT2Tokenizer,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXModel,
    GPTNeoXTokenizer,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaTokenizer,
    XLMRobertaConfig,
    XLMRobertaModel,
    XLMRobertaTokenizer,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as shared  # noqa: E402  (row sampling, rowproj, Rust-style tokenization, texts)

SEED = 4321
BIAS_STD = 0.2  # biases and LayerNorm shifts: non-zero, so dropping one fails the test
NORM_STD = 0.2  # LayerNorm scales are 1 + N(0, NORM_STD)
SENSITIVITY = 1e-3  # resetting any parameter must move attention or hidden states by more than this
SIZE_BUDGET = 3_000_000
# A key bias adds q.b_k to every score of a query row, which softmax cancels exactly: no test
# can see it dropped, so the sensitivity check leaves separate key biases out.
KEY_BIASES = ("k_lin.bias", "self.key.bias")

# Texts the tokenizers are trained on: the shared fixture texts plus digits and punctuation.
CORPUS = [text for _, text, _ in shared.TINY_CASES + shared.MINILM_CASES] + [
    pair for _, _, pair in shared.TINY_CASES if pair
] + [
    "In 2021, 18% more people (about 412) came; 3.5 km, 9:00-17:30, $2.4 million!",
    "What's the time? It's 10:45 - no, 11:15. Call 555-0199 or write to us.",
]

SHORT = "The quick brown fox jumps over the lazy dog."
DIGITS = "In 2019, 37 paid $2.40 (60%)!"
SYMBOLS = "Café, 東京 and 🤖 at 9:00?!"
LONG = (
    "Once upon a time, there was a little house near the river. Every morning the old man walked to "
    "the market with his dog, and every evening they came back home before the sun went down. He said: "
    "'I have 3 apples and 12 books!' Then the night was very dark and cold."
)
PAIR = ("Where did the cat sleep?", "On the warm red mat.")
PAIR_LONG = (
    "What did the little dog find near the old tree by the river, before the sun went down and the night came?",
    "He found a blue book, two red apples and a small green car under the tree; then he ran back home.",
)

DECODER_CASES = [("short", SHORT, None), ("digits", DIGITS, None), ("symbols", SYMBOLS, None), ("truncated", LONG, None)]
ENCODER_CASES = [
    ("short", SHORT, None),
    ("digits", DIGITS, None),
    ("pair", PAIR[0], PAIR[1]),
    ("truncated", LONG, None),
]
# A literal <pad> in the text is the pad id: RoBERTa gives it position pad_token_id and does not count it.
PAD_IN_TEXT = "The cat<pad> sat on the <pad>mat."
ROBERTA_CASES = ENCODER_CASES + [
    ("symbols", SYMBOLS, None),
    ("pair_truncated", PAIR_LONG[0], PAIR_LONG[1]),
    ("pad_in_text", PAD_IN_TEXT, None),
]


# --------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------


def train_byte_level_bpe(vocab_size, special_tokens):
    """Byte-level BPE as GPT-2 / RoBERTa / GPT-NeoX use; returns (vocab, merges)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def train_unigram(vocab_size):
    """A SentencePiece-style Unigram as XLM-RoBERTa's: <s> <pad> </s> <unk> first, <mask> last."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    specials, pieces = vocab[:4], vocab[4:]
    if [p for p, _ in specials] != ["<s>", "<pad>", "</s>", "<unk>"]:
        shared.fail(f"unigram specials out of order: {specials}")
    # The trainer keeps the same pieces every run, but its sums run in a hash order that changes
    # run to run: scores move in the 15th digit and the single characters it adds at the end get
    # scores 1e-4 apart in a random order. Rounding to 0.01 and sorting makes the fixtures
    # byte-identical (the tokenizer is whatever is saved: transformers and attnmap read the same).
    pieces = sorted(((p, round(score, 2)) for p, score in pieces), key=lambda ps: (-ps[1], ps[0]))
    return specials + pieces + [("<mask>", 0.0)]


def tiny_bert_wordpiece():
    """The WordPiece vocab of tests/fixtures/tiny-bert (made by make_fixtures.py)."""
    return {token: index for index, token in enumerate(shared.TINY_VOCAB)}


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def randomise(model, weight_std):
    """Redraw every parameter from the seeded stream: matrices and embeddings N(0, weight_std),
    biases N(0, BIAS_STD), LayerNorm scales 1 + N(0, NORM_STD), so attention is neither uniform
    nor one-hot and every bias and norm parameter changes the result."""
    norms = {name for name, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    with torch.no_grad():
        for name, param in model.named_parameters():
            owner, _, kind = name.rpartition(".")
            if owner in norms and kind == "weight":
                param.copy_(1.0 + NORM_STD * torch.randn_like(param))
            elif kind == "bias":
                param.normal_(0.0, BIAS_STD)
            else:
                param.normal_(0.0, weight_std)


def gpt2_family(vocab, merges):
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=32)


def build_tiny_gpt2():
    """GPT-2 as released: gelu_new, scale_attn_weights, saved as GPT2LMHeadModel (`transformer.` prefix)."""
    vocab, merges = train_byte_level_bpe(450, ["<|endoftext|>"])
    eot = vocab["<|endoftext|>"]
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=32, n_embd=48, n_layer=2, n_head=4, n_inner=80,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=eot, eos_token_id=eot,
    )
    return GPT2LMHeadModel(config), gpt2_family(vocab, merges), 0.2


def build_tiny_gpt2_scaled():
    """The GPT-2 options: scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn, erf gelu,
    default n_inner, no weight prefix (GPT2Model)."""
    vocab, merges = train_byte_level_bpe(450, ["<|endoftext|>"])
    eot = vocab["<|endoftext|>"]
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=32, n_embd=32, n_layer=2, n_head=4, n_inner=None,
        activation_function="gelu", scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True,
        layer_norm_epsilon=1e-5, bos_token_id=eot, eos_token_id=eot,
    )
    return GPT2Model(config), gpt2_family(vocab, merges), 0.3


def build_tiny_distilbert():
    tok = DistilBertTokenizer(vocab=tiny_bert_wordpiece(), do_lower_case=True, model_max_length=32)
    config = DistilBertConfig(
        vocab_size=len(shared.TINY_VOCAB), max_position_embeddings=32, n_layers=2, n_heads=4, dim=32,
        hidden_dim=37, activation="gelu", pad_token_id=0, sinusoidal_pos_embds=False,
    )
    return DistilBertForMaskedLM(config), tok, 0.3


def build_tiny_roberta():
    vocab, merges = train_byte_level_bpe(450, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=32)
    config = RobertaConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=34, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        hidden_act="gelu", layer_norm_eps=1e-5,
    )
    return RobertaForMaskedLM(config), tok, 0.3


def build_tiny_xlm_roberta():
    vocab = train_unigram(300)
    tok = XLMRobertaTokenizer(vocab=vocab, model_max_length=32)
    config = XLMRobertaConfig(
        vocab_size=len(vocab), hidden_size=40, num_hidden_layers=2, num_attention_heads=4, intermediate_size=50,
        max_position_embeddings=34, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        hidden_act="gelu", layer_norm_eps=1e-5,
    )
    return XLMRobertaModel(config, add_pooling_layer=False), tok, 0.3


def neox_tokenizer():
    vocab, merges = train_byte_level_bpe(450, ["<|endoftext|>", "<|padding|>"])
    return vocab, GPTNeoXTokenizer(vocab=vocab, merges=merges, model_max_length=32)


def build_tiny_gpt_neox():
    """Pythia-like: partial rotary (rotary_pct 0.25), parallel residual, attention bias,
    GPTNeoXForCausalLM (`gpt_neox.` prefix); config.json rewritten to Pythia's legacy keys."""
    vocab, tok = neox_tokenizer()
    config = GPTNeoXConfig(
        vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=32, rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
        attention_bias=True, hidden_act="gelu", layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=0,
        tie_word_embeddings=True,  # keeps the fixture small; attnmap never reads lm_head
    )
    return GPTNeoXForCausalLM(config), tok, 0.2


def build_tiny_gpt_neox_sequential():
    """The other GPT-NeoX layout: sequential residual, full rotary with a small base, no attention bias."""
    vocab, tok = neox_tokenizer()
    config = GPTNeoXConfig(
        vocab_size=len(vocab), hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=72,
        max_position_embeddings=32, rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 1.0},
        use_parallel_residual=False, attention_bias=False, hidden_act="gelu_new", layer_norm_eps=1e-5,
        bos_token_id=0, eos_token_id=0,
    )
    return GPTNeoXModel(config), tok, 0.25


def legacy_neox_config(out_dir):
    """Write rope settings the way Pythia's config.json on the Hub has them (rotary_pct, rotary_emb_base)."""
    path = os.path.join(out_dir, "config.json")
    config = json.load(open(path, encoding="utf-8"))
    rope = config.pop("rope_parameters")
    config["rotary_pct"] = rope["partial_rotary_factor"]
    config["rotary_emb_base"] = int(rope["rope_theta"])
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


# name, builder, cases, a fix-up of the saved files
MODELS = [
    ("tiny-gpt2", build_tiny_gpt2, DECODER_CASES, None),
    ("tiny-gpt2-scaled", build_tiny_gpt2_scaled, DECODER_CASES, None),
    ("tiny-distilbert", build_tiny_distilbert, ENCODER_CASES + [("symbols", SYMBOLS, None)], None),
    ("tiny-roberta", build_tiny_roberta, ROBERTA_CASES, None),
    ("tiny-xlm-roberta", build_tiny_xlm_roberta, ENCODER_CASES + [("symbols", SYMBOLS, None)], None),
    ("tiny-gpt-neox", build_tiny_gpt_neox, DECODER_CASES, legacy_neox_config),
    ("tiny-gpt-neox-sequential", build_tiny_gpt_neox_sequential, DECODER_CASES, None),
]


def max_tokens(config):
    """How many tokens the model reads: what attnmap truncates at, and what transformers can run."""
    if config.model_type == "gpt2":
        return config.n_positions
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        return config.max_position_embeddings - config.pad_token_id - 1
    return config.max_position_embeddings


# --------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------


def hf_encode(tok, text, pair, max_len):
    """transformers' tokenization; token_type_ids are zeros when the tokenizer does not feed them."""
    enc = tok(text, text_pair=pair, truncation=True, max_length=max_len, padding=False)
    full = tok(text, text_pair=pair, truncation=False, padding=False)
    return enc["input_ids"], enc.get("token_type_ids"), len(full["input_ids"])


def forward(model, ids, types):
    """One eager forward; `types` is None when the tokenizer does not feed token_type_ids."""
    kwargs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    if types is not None:
        kwargs["token_type_ids"] = torch.tensor([types])
    with torch.no_grad():
        out = model(**kwargs, output_attentions=True, return_dict=True)
    att = torch.stack([a[0] for a in out.attentions]).numpy()
    return att, out.last_hidden_state[0].numpy()


def case_tensors(ids, types, att, hid, row_divisor):
    tensors = {
        "input_ids": np.asarray(ids, dtype=np.int64),
        "token_type_ids": np.asarray(types, dtype=np.int64),
        "last_hidden_state": np.ascontiguousarray(hid, dtype=np.float32),
    }
    s = len(ids)
    if s <= shared.FULL_MAX:
        tensors["attentions"] = np.ascontiguousarray(att, dtype=np.float32)
    else:
        rows = shared.row_index_for(s, row_divisor)
        tensors["attention_rows"] = np.ascontiguousarray(att[:, :, rows, :], dtype=np.float32)
        tensors["row_index"] = rows
        tensors["attention_colsum"] = np.ascontiguousarray(att.astype(np.float64).sum(axis=2))
        tensors["attention_rowproj"] = shared.rowproj(att)
    return tensors


def sensitivity(model, inputs):
    """The smallest change, over all parameters, that resetting one parameter tensor (bias and
    norm shift to 0, norm scale to 1, matrices to 0) makes to attention or hidden states."""
    norms = {name for name, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    baseline = [forward(model, ids, types) for ids, types in inputs]
    weakest = (math.inf, None)
    for name, param in model.named_parameters():
        if name.endswith(KEY_BIASES) or name.startswith("pooler."):  # the pooler is not on the way to the maps
            continue
        saved = param.detach().clone()
        owner, _, kind = name.rpartition(".")
        with torch.no_grad():
            param.fill_(1.0 if owner in norms and kind == "weight" else 0.0)
        moved = 0.0
        for (ids, types), (att, hid) in zip(inputs, baseline):
            new_att, new_hid = forward(model, ids, types)
            moved = max(moved, float(np.abs(new_att - att).max()), float(np.abs(new_hid - hid).max()))
        with torch.no_grad():
            param.copy_(saved)
        weakest = min(weakest, (moved, name))
    return weakest


def build(name, builder, fix_config, out_dir):
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    torch.manual_seed(SEED)
    model, tok, weight_std = builder()
    randomise(model, weight_std)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    if fix_config:
        fix_config(out_dir)
    for extra in os.listdir(out_dir):
        if extra == "generation_config.json":
            os.remove(os.path.join(out_dir, extra))
    tj = json.load(open(os.path.join(out_dir, "tokenizer.json"), encoding="utf-8"))
    if tj.get("padding") is not None or tj.get("truncation") is not None:
        shared.fail(f"{name}: tokenizer.json has padding/truncation set")
    return weight_std


def run_model(name, cases, out_dir, row_divisor, report):
    model = AutoModel.from_pretrained(out_dir, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(out_dir)
    cfg = model.config
    causal = cfg.model_type in ("gpt2", "gpt_neox")
    max_len = max_tokens(cfg)
    tok_json = os.path.join(out_dir, "tokenizer.json")
    model64 = AutoModel.from_pretrained(out_dir, attn_implementation="eager", dtype=torch.float64).eval()
    entries, inputs = [], []
    for case, text, pair in cases:
        ids, types, n_full = hf_encode(tok, text, pair, max_len)
        if n_full > max_len and len(ids) != max_len:
            shared.fail(f"{name}/{case}: expected {max_len} ids after truncation, got {len(ids)}")
        if n_full <= max_len and len(ids) != n_full:
            shared.fail(f"{name}/{case}: unexpected truncation {n_full} -> {len(ids)}")
        if tok.pad_token_id is not None and (tok.pad_token_id in ids) != (text == PAD_IN_TEXT):
            shared.fail(f"{name}/{case}: the pad token is {'not ' if text == PAD_IN_TEXT else ''}in the ids")
        r_ids, r_types, r_tokens = shared.rust_style_encode(tok_json, text, pair, max_len)
        if list(r_ids) != list(ids):
            shared.fail(f"{name}/{case}: TOKENIZATION MISMATCH\n  hf:  {ids}\n  raw: {r_ids}")
        if types is not None and list(r_types) != list(types):
            shared.fail(f"{name}/{case}: token_type_ids differ\n  hf:  {types}\n  raw: {r_types}")
        att, hid = forward(model, ids, types)
        s = len(ids)
        L, H = cfg.num_hidden_layers, cfg.num_attention_heads
        if att.shape != (L, H, s, s):
            shared.fail(f"{name}/{case}: attention shape {att.shape}")
        rowsum_err = float(np.abs(att.astype(np.float64).sum(-1) - 1.0).max())
        if rowsum_err > 1e-6:
            shared.fail(f"{name}/{case}: rows do not sum to 1 ({rowsum_err:.3g})")
        if not np.isfinite(att).all() or not np.isfinite(hid).all():
            shared.fail(f"{name}/{case}: non-finite values")
        if causal and np.triu(att, k=1).any():
            shared.fail(f"{name}/{case}: masked (future) cells are not exactly 0")
        try:
            att64, hid64 = forward(model64, ids, types)
            f64 = f"f32-vs-f64(att={np.abs(att64 - att).max():.1e}, hidden={np.abs(hid64 - hid).max():.1e})"
        except RuntimeError:
            # GPT-2's reorder_and_upcast_attn path insists on float32 scores and refuses float64.
            f64 = "f32-vs-f64(n/a)"

        # What the model was given: zeros where the tokenizer feeds no token_type_ids.
        tensors = case_tensors(ids, types if types is not None else [0] * s, att, hid, row_divisor)
        save_file(tensors, os.path.join(out_dir, f"{case}.safetensors"), metadata={"case": f"{name}/{case}"})
        inputs.append((ids, types))
        a64 = att.astype(np.float64)
        entropy = -(a64 * np.log(np.clip(a64, 1e-30, None))).sum(-1)
        report.append(
            f"{name}/{case}: S={s} (before truncation {n_full}) rowsum_err={rowsum_err:.1e} "
            f"{f64} mean_max_prob={att.max(-1).mean():.3f} "
            f"mean_entropy={entropy.mean():.3f} tokens={' '.join(r_tokens[:16])}{' ...' if s > 16 else ''}"
        )
        entries.append(
            {
                "model": name,
                "case": case,
                "text": text,
                "pair": pair,
                "seq_len": s,
                "layers": L,
                "heads": H,
                "hidden_size": cfg.hidden_size,
                "full": s <= shared.FULL_MAX,
                "truncated_from": n_full if n_full > max_len else None,
                "rows": None if s <= shared.FULL_MAX else int(len(tensors["row_index"])),
                "file": f"{name}/{case}.safetensors",
            }
        )
    if not any(e["truncated_from"] for e in entries):
        shared.fail(f"{name}: no case is truncated")
    moved, weakest = sensitivity(model, inputs)
    report.append(f"{name}: resetting any one parameter moves the outputs by >= {moved:.2e} ({weakest})")
    if moved < SENSITIVITY:
        shared.fail(f"{name}: resetting {weakest} changes the outputs by only {moved:.2e}")
    return entries, max_len


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures", help="fixtures folder (default tests/fixtures)")
    ap.add_argument("--row-divisor", type=int, default=8, help="row sampling for S > 64 (as make_fixtures.py)")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    report, entries, generator_models = [], [], {}
    for name, builder, cases, fix_config in MODELS:
        out_dir = os.path.join(args.out, name)
        weight_std = build(name, builder, fix_config, out_dir)
        model_entries, max_len = run_model(name, cases, out_dir, args.row_divisor, report)
        entries += model_entries
        generator_models[name] = {
            "model_type": json.load(open(os.path.join(out_dir, "config.json")))["model_type"],
            "weight_std": weight_std,
            "max_tokens": max_len,
            "model_safetensors_sha256": shared.sha256(os.path.join(out_dir, "model.safetensors")),
            "tokenizer_json_sha256": shared.sha256(os.path.join(out_dir, "tokenizer.json")),
        }

    generator = {
        "script": "scripts/fixtures_gpt.py",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "reference": "AutoModel.from_pretrained(dir, attn_implementation='eager', dtype=float32).eval(), "
        "torch.no_grad(), output_attentions=True; tokens: tok(text, text_pair=pair, truncation=True, "
        "max_length=<max tokens>, padding=False); token_type_ids zeros where the tokenizer does not feed them",
        "seed": SEED,
        "bias_std": BIAS_STD,
        "norm_std": NORM_STD,
        "full_max_seq_len": shared.FULL_MAX,
        "row_divisor": args.row_divisor,
        "models": generator_models,
    }
    with open(os.path.join(args.out, "cases-gpt.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": generator, "cases": entries}, f, indent=2, ensure_ascii=False)
        f.write("\n")

    total = sum(
        os.path.getsize(os.path.join(d, f))
        for name, *_ in MODELS
        for d, _, fs in os.walk(os.path.join(args.out, name))
        for f in fs
    )
    report.append(f"total size of the tiny-* fixtures made here: {total} bytes")
    if total >= SIZE_BUDGET:
        shared.fail(f"these fixtures are {total} bytes, over the {SIZE_BUDGET} budget")
    print("\n".join(report))
    print(f"\nwrote {len(entries)} cases to {args.out}/cases-gpt.json; all checks passed")


if __name__ == "__main__":
    main()
