"""The PyTorch side of benches/forward.rs: transformers' eager BERT with
output_attentions=True, timed one forward pass at a time on request, so the
Rust bench can interleave the two (the machine's load then hits both alike).

Protocol (lines on stdin/stdout): it prints "ready" once the model is loaded,
or "unavailable: WHY" and exits if torch/transformers cannot be imported.
Each request is a JSON object {"input_ids": [...], "token_type_ids": [...]};
the answer is the forward time in milliseconds, wall clock then process CPU
time (the CPU time is what a loaded machine disturbs least).

Run by the bench: python3 benches/forward_torch.py MODEL_DIR THREADS
"""

import json
import sys
import time


def main():
    model_dir, threads = sys.argv[1], int(sys.argv[2])
    try:
        import torch
        from transformers import AutoModel
    except Exception as error:  # noqa: BLE001 - any import failure means "no Python side"
        print(f"unavailable: {error}", flush=True)
        return
    torch.set_num_threads(threads)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        ids = torch.tensor([request["input_ids"]])
        types = torch.tensor([request["token_type_ids"]])
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            start, cpu = time.perf_counter(), time.process_time()
            out = model(input_ids=ids, token_type_ids=types, attention_mask=mask, output_attentions=True)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert len(out.attentions) == model.config.num_hidden_layers
        print(f"{elapsed * 1e3:.4f} {cpu * 1e3:.4f}", flush=True)


if __name__ == "__main__":
    main()
