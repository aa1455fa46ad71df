#!/usr/bin/env python3
"""Makes the safetensors fixtures for SqueezeFormatsTests with the reference `safetensors` library.

Run from the repository root (needs torch and safetensors from PyPI):

    python3 scripts/make_safetensors_fixtures.py

Writes, under Tests/SqueezeFormatsTests/Fixtures/:
  dtypes.safetensors       tensors of several dtypes (F32, F16, BF16, F64, I64, I32, I16, I8, U8,
                           BOOL, a scalar and an empty tensor) and `__metadata__`, written by
                           safetensors.torch.save_file.
  dtypes_expected.json     for each tensor: dtype name, shape, the values (floats as repr strings,
                           ints as numbers; converted by torch, exact for every type here), the data_offsets the
                           library chose, plus the metadata and the tensor order in the file.
  sharded/                 a sharded checkpoint as transformers lays it out:
                           model-00001-of-00002.safetensors, model-00002-of-00002.safetensors and
                           model.safetensors.index.json (weight_map, metadata.total_size), plus
                           sharded_expected.json with every tensor's values.
"""
import json
import os
import struct
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "SqueezeFormatsTests", "Fixtures")

g = torch.Generator().manual_seed(1234)


def header_of(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def values(t):
    if t.dtype == torch.bool:
        return [bool(v) for v in t.flatten().tolist()]
    if t.dtype.is_floating_point:
        # repr strings: exact, and independent of the JSON parser's float rounding.
        return [repr(float(v)) for v in t.to(torch.float64).flatten().tolist()]
    return [int(v) for v in t.flatten().tolist()]


def main():
    os.makedirs(os.path.join(OUT, "sharded"), exist_ok=True)
    tensors = {
        "weight.f32": torch.randn(3, 5, generator=g),
        "weight.f16": torch.randn(4, 3, generator=g).to(torch.float16),
        "weight.bf16": torch.randn(2, 3, 4, generator=g).to(torch.bfloat16),
        "weight.f64": torch.randn(3, generator=g).to(torch.float64),
        "ids.i64": torch.tensor([[0, -1, 2**40 + 3], [7, 49151, -(2**33)]], dtype=torch.int64),
        "ids.i32": torch.tensor([1, -2, 2**30], dtype=torch.int32),
        "ids.i16": torch.tensor([-32768, 0, 32767, 5], dtype=torch.int16),
        "ids.i8": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "bytes.u8": torch.tensor([0, 1, 200, 255, 17], dtype=torch.uint8),
        "mask.bool": torch.tensor([True, False, True], dtype=torch.bool),
        "scalar.f32": torch.tensor(3.5, dtype=torch.float32),
        "empty.f32": torch.zeros(0, 4, dtype=torch.float32),
    }
    metadata = {"format": "pt", "source": "make_safetensors_fixtures.py", "quote\"and\\slash": "ünïcode ✓"}
    path = os.path.join(OUT, "dtypes.safetensors")
    save_file(tensors, path, metadata=metadata)
    header = header_of(path)
    order = sorted((k for k in header if k != "__metadata__"),
                   key=lambda k: (header[k]["data_offsets"][0], header[k]["data_offsets"][1] - header[k]["data_offsets"][0], k))
    expected = {
        "metadata": header.get("__metadata__", {}),
        "order": order,
        "tensors": {k: {"dtype": header[k]["dtype"], "shape": header[k]["shape"],
                        "data_offsets": header[k]["data_offsets"], "values": values(t)}
                    for k, t in tensors.items()},
    }
    with open(os.path.join(OUT, "dtypes_expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)

    # A sharded checkpoint, laid out as transformers' save_pretrained does.
    shards = [
        {"model.embed.weight": torch.randn(6, 4, generator=g).to(torch.bfloat16),
         "model.layers.0.w": torch.randn(4, 4, generator=g)},
        {"model.layers.1.w": torch.randn(4, 4, generator=g).to(torch.float16),
         "model.norm.weight": torch.ones(4)},
    ]
    sd = os.path.join(OUT, "sharded")
    weight_map = {}
    total = 0
    all_values = {}
    for i, s in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(s, os.path.join(sd, name), metadata={"format": "pt"})
        for k, t in s.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
            all_values[k] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": values(t)}
    with open(os.path.join(sd, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(OUT, "sharded_expected.json"), "w") as f:
        json.dump({"weight_map": weight_map, "tensors": all_values}, f, indent=1)
    for root, _, files in os.walk(OUT):
        for fn in files:
            if "safetensors" in fn or fn.endswith(".json"):
                p = os.path.join(root, fn)
                print(os.path.relpath(p, OUT), os.path.getsize(p))


if __name__ == "__main__":
    main()
