"""SqueezeLLM packing in PyTorch against hand-built words and the layout's definition."""

import pytest
import torch

from vllm_squeeze.layout import Sparse, SqueezeLayoutError, dequantize, pack, unpack


def test_unpack_4bit_nibbles():
    # Output 0: inputs 0..7 are 0..7; output 1: inputs are 15, 14, ..., 8.
    w0 = sum(i << (4 * i) for i in range(8))
    w1 = sum((15 - i) << (4 * i) for i in range(8))
    q = torch.tensor([[w0 - (1 << 32) if w0 >= 1 << 31 else w0, w1 - (1 << 32) if w1 >= 1 << 31 else w1]],
                     dtype=torch.int64).to(torch.int32)
    idx = unpack(q, 4)
    assert idx.tolist() == [list(range(8)), [15 - i for i in range(8)]]


def test_unpack_3bit_stream_crosses_words():
    # One output, 32 inputs: value i at stream bit 3i of the 96-bit little-endian stream w0 | w1 << 32 | w2 << 64.
    vals = [(5 * i + 3) % 8 for i in range(32)]
    stream = sum(v << (3 * i) for i, v in enumerate(vals))
    words = [(stream >> (32 * j)) & 0xFFFFFFFF for j in range(3)]
    q = torch.tensor([[w - (1 << 32) if w >= 1 << 31 else w] for w in words], dtype=torch.int64).to(torch.int32)
    assert unpack(q, 3)[0].tolist() == vals
    assert torch.equal(pack(torch.tensor([vals], dtype=torch.uint8), 3), q)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_pack_roundtrip(bits):
    g = torch.Generator().manual_seed(bits)
    idx = torch.randint(0, 1 << bits, (7, 64), generator=g).to(torch.uint8)
    q = pack(idx, bits)
    assert q.shape == (64 * bits // 32, 7) and q.dtype == torch.int32
    assert torch.equal(unpack(q, bits), idx)


def test_dequantize_adds_sparse():
    idx = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]], dtype=torch.uint8)
    lut = torch.tensor([[-1.0, 0.0, 0.5, 2.0] + [0.0] * 12]).half()
    sp = Sparse(torch.tensor([0, 2], dtype=torch.int32), torch.tensor([1, 6], dtype=torch.int32), torch.tensor([3.0, -4.0]))
    w = dequantize(pack(idx, 4), lut, 4, sp)
    assert w.tolist() == [[-1.0, 3.0, 0.5, 2.0, -1.0, 0.0, -3.5, 2.0]]


def test_bad_width_names_tensor():
    with pytest.raises(SqueezeLayoutError, match="layer.q_proj"):
        pack(torch.zeros(1, 30, dtype=torch.uint8), 3, "layer.q_proj")
