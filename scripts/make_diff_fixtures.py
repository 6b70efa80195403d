#!/usr/bin/env python3
"""Reference figures for `attnmap diff`, computed independently with numpy.

Dumps the same probe text with two model versions (all-MiniLM-L6-v2 and its
fine-tuned descendant from sre-embedding-model) using attnmap itself, keeps the
two dump folders (attention.npy + manifest.json) under tests/fixtures/diff/,
and writes expected.json: per head mean_abs, max_abs and jsd computed here in
float64 numpy from the two attention.npy files alone.

    cargo build --release && scripts/fetch-models.sh
    python scripts/make_diff_fixtures.py

Needs only numpy (the fixture venv has it).
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

TEXT = "The WhirlyGigs arrived broken, and support never answered."


def jsd_rows(p, q):
    """Jensen-Shannon divergence (natural log) of matching rows; 0 log 0 = 0."""
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0)
    return np.maximum(0.5 * kl_p.sum(-1) + 0.5 * kl_q.sum(-1), 0.0)


def head_figures(old, new):
    old = old.astype(np.float64)
    new = new.astype(np.float64)
    diff = np.abs(old - new)
    layers, heads = old.shape[:2]
    out = []
    for layer in range(layers):
        for head in range(heads):
            out.append({
                "layer": layer,
                "head": head,
                "mean_abs": float(diff[layer, head].mean()),
                "max_abs": float(diff[layer, head].max()),
                "jsd": float(jsd_rows(old[layer, head], new[layer, head]).mean()),
            })
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attnmap", default="target/release/attnmap")
    parser.add_argument("--old", default=".models/minilm")
    parser.add_argument("--new", default=".models/sre")
    parser.add_argument("--out", default="tests/fixtures/diff")
    args = parser.parse_args()
    work = tempfile.mkdtemp()
    try:
        for side, model in (("old", args.old), ("new", args.new)):
            dump = os.path.join(work, side)
            subprocess.run([args.attnmap, "-q", "dump", TEXT, "--model", model, "--out", dump], check=True)
            target = os.path.join(args.out, side)
            os.makedirs(target, exist_ok=True)
            for name in ("attention.npy", "manifest.json"):
                shutil.copyfile(os.path.join(dump, name), os.path.join(target, name))
    finally:
        shutil.rmtree(work)
    old = np.load(os.path.join(args.out, "old", "attention.npy"))
    new = np.load(os.path.join(args.out, "new", "attention.npy"))
    assert old.shape == new.shape and old.dtype == np.float32, (old.shape, new.shape, old.dtype)
    expected = {"text": TEXT, "shape": list(old.shape), "heads": head_figures(old, new)}
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    changed = sum(1 for h in expected["heads"] if h["jsd"] > 0)
    print(f"wrote {args.out}: shape {old.shape}, {changed} heads changed")


if __name__ == "__main__":
    main()
