#!/usr/bin/env python3
"""The PyTorch side of the GPT-2 forward benchmark (issue 13): the same forward as
`circuitscope bench forward --model DIR --tokens N`, in transformers, on the same machine and threads.

    circuitscope synth --shape gpt2-small /tmp/gpt2-small
    python3 benches/gpt2_forward_torch.py /tmp/gpt2-small --tokens 128 1024 [--iters 5] [--threads 2]

Prints one JSON line per token count: {"tokens", "tokens_per_s", "ms_per_forward", "load_ms", "threads",
"torch", "transformers"}. Without torch or transformers it prints a note and exits 0, so that a benchmark run
on a machine without them reports the circuitscope side alone.
"""

import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"note: skipped, PyTorch side not measured ({e.name} is not installed)", file=sys.stderr)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = transformers.GPT2LMHeadModel.from_pretrained(args.model, torch_dtype=torch.float32)
    model.eval()
    load_ms = (time.perf_counter() - t0) * 1e3
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    for n in args.tokens:
        ids = torch.randint(0, vocab, (1, n), generator=gen)
        with torch.inference_mode():
            model(ids)  # warm-up
            times = []
            for _ in range(args.iters):
                t = time.perf_counter()
                model(ids)
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(json.dumps({
            "tokens": n,
            "tokens_per_s": n / med,
            "ms_per_forward": med * 1e3,
            "load_ms": load_ms,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
