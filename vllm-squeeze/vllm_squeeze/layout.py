"""SqueezeLLM's tensor layout in PyTorch: unpacking `qweight`, dequantizing, and the reference product.

`qweight` is int32 [in * bits / 32, out]; column o holds output row o's indices.
- 4 bits: nibble t of `qweight[r, o]` is the index of input 8r + t.
- 3 bits: inputs in groups of 32 packed into three words read as one little-endian 96-bit stream,
  input 32g + i at stream bit 3i (Sources/SqueezeKernels/SqueezeLLMLayout.swift).
- 2 and 8 bits: 32 / bits inputs per word, input t at bits bits * t.
`lookup_table` is [out, 2^bits] (F16 on disk). The sparse part is CSR: `rows` [out + 1] int32 row
pointers, `cols` [nnz] int32 columns, `vals` [nnz] F16 or F32 values added to the dense weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Inputs per packing group and int32 words per group, by bit width.
GROUPS = {2: (16, 1), 3: (32, 3), 4: (8, 1), 8: (4, 1)}


class SqueezeLayoutError(ValueError):
    """A tensor whose shape or values do not fit SqueezeLLM's layout (the message names it)."""


def group(bits: int, name: str = "") -> tuple[int, int]:
    """(inputs, words) of one packing group; raises for an unsupported width."""
    if bits not in GROUPS:
        raise SqueezeLayoutError(f"{name}: unsupported bit width {bits} (supported: 2, 3, 4, 8)")
    return GROUPS[bits]


def bits_of_table(lut: torch.Tensor, name: str = "") -> int:
    """The bit width a lookup table [out, 2^bits] implies."""
    if lut.dim() != 2:
        raise SqueezeLayoutError(f"{name}: lookup_table must be 2-D, got shape {tuple(lut.shape)}")
    k = lut.shape[1]
    bits = k.bit_length() - 1
    if 1 << bits != k or bits not in GROUPS:
        raise SqueezeLayoutError(f"{name}: lookup_table has {k} entries per row, not 2^bits for 2, 3, 4 or 8 bits")
    return bits


def input_count(qweight: torch.Tensor, bits: int, name: str = "") -> int:
    """Inputs (columns) a packed `qweight` holds."""
    g_in, g_words = group(bits, name)
    if qweight.shape[0] % g_words:
        raise SqueezeLayoutError(f"{name}: qweight has {qweight.shape[0]} words per row, not a multiple of {g_words}")
    return qweight.shape[0] // g_words * g_in


def unpack(qweight: torch.Tensor, bits: int, name: str = "") -> torch.Tensor:
    """Indices [out, in] (uint8) of a packed `qweight` [in * bits / 32, out]."""
    g_in, g_words = group(bits, name)
    words = qweight.to(torch.int64) & 0xFFFFFFFF
    out = words.shape[1]
    if bits == 3:
        groups = words.shape[0] // 3
        w = words.view(groups, 3, out)
        w = torch.cat([w, torch.zeros(groups, 1, out, dtype=torch.int64, device=w.device)], dim=1)
        i = torch.arange(32, device=w.device)
        bit = 3 * i
        wi, off = bit // 32, (bit % 32).view(1, 32, 1)
        # A value that crosses a word boundary takes its high bits from the next word.
        v = ((w[:, wi, :] >> off) | (w[:, wi + 1, :] << (32 - off))) & 7  # [groups, 32, out]
        return v.permute(2, 0, 1).reshape(out, groups * 32).to(torch.uint8)
    per = 32 // bits
    shifts = (bits * torch.arange(per, device=words.device)).view(1, per, 1)
    v = (words.unsqueeze(1) >> shifts) & ((1 << bits) - 1)  # [wr, per, out]
    return v.permute(2, 0, 1).reshape(out, words.shape[0] * per).to(torch.uint8)


def pack(indices: torch.Tensor, bits: int, name: str = "") -> torch.Tensor:
    """Packs indices [out, in] into `qweight` [in * bits / 32, out] (the inverse of `unpack`)."""
    g_in, g_words = group(bits, name)
    out, cols = indices.shape
    if cols % g_in:
        raise SqueezeLayoutError(f"{name}: {cols} inputs is not a multiple of {g_in} for {bits}-bit packing")
    idx = indices.to(torch.int64) & ((1 << bits) - 1)
    if bits == 3:
        groups = cols // 32
        v = idx.view(out, groups, 32)
        words = torch.zeros(out, groups, 4, dtype=torch.int64)
        for i in range(32):
            b = 3 * i
            wi, off = b // 32, b % 32
            words[:, :, wi] |= (v[:, :, i] << off) & 0xFFFFFFFF
            if off > 29:
                words[:, :, wi + 1] |= v[:, :, i] >> (32 - off)
        q = words[:, :, :3].reshape(out, groups * 3)
    else:
        per = 32 // bits
        v = idx.view(out, cols // per, per)
        shifts = bits * torch.arange(per)
        q = (v << shifts).sum(dim=2)
    q = q.T.contiguous()
    return torch.where(q >= 2**31, q - 2**32, q).to(torch.int32)


@dataclass
class Sparse:
    """A CSR sparse part: `rowptr` [rows + 1] int32, `cols` [nnz] int32, `vals` [nnz] float."""

    rowptr: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor

    @property
    def rows(self) -> int:
        return self.rowptr.numel() - 1

    def check(self, rows: int, columns: int, name: str = "") -> None:
        """Raises unless this is a valid CSR matrix of `rows` x `columns`."""
        if self.rowptr.numel() != rows + 1:
            raise SqueezeLayoutError(f"{name}.rows: {self.rowptr.numel()} row pointers for {rows} rows")
        nnz = self.cols.numel()
        if self.vals.numel() != nnz:
            raise SqueezeLayoutError(f"{name}: {nnz} columns but {self.vals.numel()} values")
        rp = self.rowptr.to(torch.int64)
        if rp[0] != 0 or rp[-1] != nnz or bool((rp[1:] < rp[:-1]).any()):
            raise SqueezeLayoutError(f"{name}.rows: row pointers are not ascending from 0 to {nnz}")
        if nnz and (int(self.cols.min()) < 0 or int(self.cols.max()) >= columns):
            raise SqueezeLayoutError(f"{name}.cols: a column lies outside 0..<{columns}")

    def row_slice(self, r0: int, r1: int) -> "Sparse":
        """Rows [r0, r1)."""
        a, b = int(self.rowptr[r0]), int(self.rowptr[r1])
        return Sparse(self.rowptr[r0 : r1 + 1] - a, self.cols[a:b], self.vals[a:b])

    def column_slice(self, c0: int, c1: int) -> "Sparse":
        """Columns [c0, c1), renumbered from 0."""
        keep = (self.cols >= c0) & (self.cols < c1)
        row_of = torch.repeat_interleave(
            torch.arange(self.rows), (self.rowptr[1:] - self.rowptr[:-1]).to(torch.int64)
        )
        counts = torch.bincount(row_of[keep], minlength=self.rows)
        rowptr = torch.zeros(self.rows + 1, dtype=torch.int32)
        rowptr[1:] = torch.cumsum(counts, 0).to(torch.int32)
        return Sparse(rowptr, (self.cols[keep] - c0).to(torch.int32), self.vals[keep])

    @staticmethod
    def concat_rows(parts: list["Sparse"]) -> "Sparse":
        """Stacks the parts' rows, one after another."""
        ptrs, base = [torch.zeros(1, dtype=torch.int32)], 0
        for p in parts:
            ptrs.append(p.rowptr[1:].to(torch.int32) + base)
            base += p.cols.numel()
        return Sparse(
            torch.cat(ptrs),
            torch.cat([p.cols.to(torch.int32) for p in parts]),
            torch.cat([p.vals.float() for p in parts]),
        )

    def add_to(self, dense: torch.Tensor) -> torch.Tensor:
        """dense + S (dense is [rows, columns])."""
        row_of = torch.repeat_interleave(
            torch.arange(self.rows, device=dense.device), (self.rowptr[1:] - self.rowptr[:-1]).to(torch.int64)
        )
        out = dense.clone()
        out.index_put_((row_of, self.cols.to(torch.int64)), self.vals.to(dense.dtype), accumulate=True)
        return out


def dequantize(qweight: torch.Tensor, lut: torch.Tensor, bits: int, sparse: Sparse | None = None) -> torch.Tensor:
    """The dense weight [out, in] in float32: lut[o][idx[o, i]] plus the sparse part."""
    idx = unpack(qweight, bits).to(torch.int64)
    w = torch.gather(lut.float(), 1, idx)
    return sparse.add_to(w) if sparse is not None else w
