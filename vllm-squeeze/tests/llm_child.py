"""Runs vLLM's LLM on one model directory and prints a JSON line with the greedy outputs.

Usage: python llm_child.py MODEL_DIR TP MAX_TOKENS IDS_JSON [quantization]
IDS_JSON: a JSON list of prompts, each a list of token ids (as `squeeze tokenize` gives them).
Run in its own process: vLLM's engine does not shut down cleanly enough to start a second in one.
"""

import json
import os
import sys


def main():
    model, tp, max_tokens, ids_json = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    quant = sys.argv[5] if len(sys.argv) > 5 else "squeeze"
    if tp == 2:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(
        model=model,
        quantization=None if quant == "none" else quant,
        dtype="float32",
        tensor_parallel_size=tp,
        gpu_memory_utilization=0.2,
        max_model_len=512,
        seed=0,
    )
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in json.loads(ids_json)]
    sp = SamplingParams(temperature=0.0, max_tokens=max_tokens, prompt_logprobs=0)
    outs = llm.generate(prompts, sp)
    res = []
    for o in outs:
        lp = [None if d is None else next(iter(d.values())).logprob for d in (o.prompt_logprobs or [])]
        res.append({"text": o.outputs[0].text, "token_ids": list(o.outputs[0].token_ids), "prompt_logprobs": lp})
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
