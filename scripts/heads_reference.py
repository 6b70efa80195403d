#!/usr/bin/env python3
"""Reference numbers for `attnmap heads` and `attnmap find previous-token`, computed with
numpy from the committed reference attentions (transformers' own, made by make_fixtures.py
and friends), independently of the Rust code.

    /work/venv/bin/python scripts/heads_reference.py          # writes tests/fixtures/heads/expected.json

Per case: the tokens' special and punctuation flags (the tokenizer's special_tokens_mask, and
Unicode category P* of the token text without its word marker), the per-head statistics of
`heads` at token and word level (Clark et al. 2019: rows i = queries, K_i = the keys row i may
attend), and for the MiniLM cases the previous-token scores with a numpy keys null
(20000 trials, numpy's PCG64 seeded 0) and the heads that pass Benjamini-Hochberg at 0.05.
Needs numpy, safetensors and tokenizers only.
"""
import json
import math
import os
import unicodedata

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CASES = [
    ("tiny-bert", "short"), ("tiny-bert", "pair"), ("tiny-bert", "unk"),
    ("minilm", "short"), ("minilm", "pair"), ("minilm", "accents_emoji"),
    ("tiny-llama", "short"), ("tiny-llama", "digits"),
    ("tiny-gpt2", "digits"), ("tiny-gpt2", "symbols"),
]
CAUSAL = {"tiny-llama", "tiny-gpt2"}
COLUMNS = ["entropy", "entropy_norm", "first", "special", "punct", "self", "prev", "next", "distance", "max"]
NULL_TRIALS = 20000


def all_cases():
    cases = {}
    for name in sorted(os.listdir(FIXTURES)):
        if name.startswith("cases") and name.endswith(".json"):
            for case in json.load(open(os.path.join(FIXTURES, name)))["cases"]:
                cases[(case["model"], case["case"])] = case
    return cases


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


BYTE_OF = bytes_to_unicode()


def label(token, byte_level):
    text = token
    if byte_level and all(c in BYTE_OF for c in token):
        text = bytes([BYTE_OF[c] for c in token]).decode("utf-8", errors="replace")
    return text.replace("\u2581", "\u00b7").replace(" ", "\u00b7")


def is_punct_text(text):
    return len(text) > 0 and all(unicodedata.category(c).startswith("P") for c in text)


def is_punct_token(token, lab):
    text = lab[1:] if lab.startswith("\u00b7") and token != "\u00b7" else lab
    if text.startswith("##") and len(text) > 2:
        text = text[2:]
    return is_punct_text(text)


def columns(a, special, punct, causal):
    """One head's statistics of one [n, n] map (float64 sums)."""
    a = a.astype(np.float64)
    n = a.shape[0]
    sums = {c: [] for c in COLUMNS}
    idx = np.arange(n)
    for i in range(n):
        allowed = i + 1 if causal else n
        row = a[i, :allowed]
        positive = row[row > 0]
        h = float(-(positive * np.log(positive)).sum())
        sums["entropy"].append(h)
        if allowed > 1:
            sums["entropy_norm"].append(h / math.log(allowed))
        sums["first"].append(a[i, 0])
        sums["special"].append(row[special[:allowed]].sum())
        sums["punct"].append(row[punct[:allowed]].sum())
        sums["self"].append(a[i, i])
        if i >= 1:
            sums["prev"].append(a[i, i - 1])
        if not causal and i + 1 < n:
            sums["next"].append(a[i, i + 1])
        sums["distance"].append(float((row * np.abs(i - idx[:allowed])).sum()))
        sums["max"].append(row.max())
    return {c: (float(np.mean(v)) if v else None) for c, v in sums.items()}


def words_of(enc, special, labels, text, pair):
    """attnmap's words(): runs of tokens with the same (sequence, word id); specials alone."""
    n = len(enc.ids)
    seq_ids = enc.sequence_ids
    key = lambda t: None if special[t] or enc.word_ids[t] is None else (seq_ids[t], enc.word_ids[t])
    words = []
    t = 0
    while t < n:
        start = t
        k = key(t)
        t += 1
        if k is not None:
            while t < n and key(t) == k:
                t += 1
        is_special = k is None
        seq = seq_ids[start]
        first = enc.offsets[start] if seq is not None else (0, 0)
        last = enc.offsets[t - 1] if seq is not None else (0, 0)
        span = (first[0], max(last[1], first[0]))
        if is_special or span[0] == span[1]:
            lab = labels[start]
        else:
            source = pair if seq == 1 else text
            lab = source[span[0]:span[1]]
        words.append({"tokens": (start, t), "label": lab, "special": is_special})
    return words


def merge(a, words):
    m = np.zeros((len(words), len(words)))
    a = a.astype(np.float64)
    for r, w in enumerate(words):
        rows = a[w["tokens"][0]:w["tokens"][1]].mean(axis=0)
        for c, v in enumerate(words):
            m[r, c] = rows[v["tokens"][0]:v["tokens"][1]].sum()
    return m


def benjamini_hochberg(p):
    p = np.asarray(p)
    m = len(p)
    order = np.argsort(p, kind="stable")
    q = np.empty(m)
    running = 1.0
    for rank in range(m - 1, -1, -1):
        running = min(running, p[order[rank]] * m / (rank + 1))
        q[order[rank]] = running
    return q


def previous_token(att_list):
    """Score and keys null of previous-token over texts: rows i >= 1, target i - 1, pool = all keys."""
    rng = np.random.default_rng(0)
    layers, heads = att_list[0].shape[:2]
    rows = []  # (attention [L, H, n], target)
    for att in att_list:
        n = att.shape[-1]
        for i in range(1, n):
            rows.append((att[:, :, i, :].reshape(layers * heads, n).astype(np.float32), i - 1))
    observed = np.mean([w[:, t].astype(np.float64) for w, t in rows], axis=0)
    null = np.zeros((NULL_TRIALS, layers * heads))
    for w, _ in rows:
        draws = rng.integers(0, w.shape[1], size=NULL_TRIALS)
        null += w[:, draws].T
    null /= len(rows)
    p = (1 + (null >= observed).sum(axis=0)) / (NULL_TRIALS + 1)
    q = benjamini_hochberg(p)
    return observed, p, q


def main():
    cases = all_cases()
    out = {"generator": {"script": "scripts/heads_reference.py", "numpy": np.__version__, "columns": COLUMNS, "null_trials": NULL_TRIALS}, "cases": []}
    minilm_attentions = []
    for model, name in CASES:
        case = cases[(model, name)]
        assert case["full"] and case["truncated_from"] is None
        tensors = load_file(os.path.join(FIXTURES, case["file"]))
        att = tensors["attentions"]
        # MiniLM's tokenizer lives with the real model (scripts/fetch-models.sh), the tiny ones in fixtures.
        model_dir = os.path.join(ROOT, ".models", "minilm") if model == "minilm" else os.path.join(FIXTURES, model)
        path = os.path.join(model_dir, "tokenizer.json")
        tokenizer = Tokenizer.from_file(path)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        byte_level = json.load(open(path)).get("decoder", {}) and json.load(open(path))["decoder"].get("type") == "ByteLevel"
        enc = tokenizer.encode(case["text"], case["pair"]) if case["pair"] else tokenizer.encode(case["text"])
        assert list(enc.ids) == [int(i) for i in tensors["input_ids"]], (model, name)
        added = tokenizer.get_added_tokens_decoder()
        special = np.array([m == 1 or (i in added and added[i].special) for m, i in zip(enc.special_tokens_mask, enc.ids)])
        labels = [label(t, byte_level) for t in enc.tokens]
        punct = np.array([is_punct_token(t, l) for t, l in zip(enc.tokens, labels)])
        causal = model in CAUSAL
        layers, heads = att.shape[:2]
        token_stats = [columns(att[l, h], special, punct, causal) for l in range(layers) for h in range(heads)]
        words = words_of(enc, special, labels, case["text"], case["pair"] or "")
        word_special = np.array([w["special"] for w in words])
        word_punct = np.array([(not w["special"]) and is_punct_text(w["label"]) for w in words])
        word_stats = [columns(merge(att[l, h], words), word_special, word_punct, causal) for l in range(layers) for h in range(heads)]
        out["cases"].append({
            "model": model, "case": name, "file": case["file"], "text": case["text"], "pair": case["pair"], "causal": causal,
            "layers": int(layers), "heads": int(heads),
            "special": special.tolist(), "punct": punct.tolist(),
            "words": [w["label"] for w in words],
            "tokens": token_stats, "word_level": word_stats,
        })
        if model == "minilm":
            minilm_attentions.append(att)
    observed, p, q = previous_token(minilm_attentions)
    out["previous_token"] = {
        "cases": [f"minilm/{n}" for m, n in CASES if m == "minilm"],
        "score": observed.tolist(), "p": p.tolist(), "q": q.tolist(),
        "pass": [int(i) for i in np.nonzero(q <= 0.05)[0]],
    }
    target = os.path.join(FIXTURES, "heads", "expected.json")
    with open(target, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {target}: {len(out['cases'])} cases; previous-token heads passing: {out['previous_token']['pass']}")


if __name__ == "__main__":
    main()
