// PyTorch bindings of Squeeze's C kernels (Sources/CSqueezeKernels, compiled into this extension by
// setup.py): LUT GEMV/GEMM on packed 3/4-bit weights plus the SELL sparse part, parallel over output
// rows on PyTorch's own intra-op threads (so vLLM's thread binding applies).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include "sq_lut.h"
#include "sq_lut_prefill.h"
#include "sq_sparse.h"

namespace {

// Tokens from which each decoded row block serves all tokens (prefill) instead of the LUT GEMM.
constexpr int64_t kDequantTokens = 16;

void check_cpu(const at::Tensor &t, at::ScalarType dtype, const char *what) {
    TORCH_CHECK(t.device().is_cpu(), what, " must be on the CPU");
    TORCH_CHECK(t.scalar_type() == dtype, what, " has dtype ", t.scalar_type(), ", expected ", dtype);
    TORCH_CHECK(t.is_contiguous(), what, " must be contiguous");
}

// Packs indices [rows, cols] (uint8) into the kernels' layout [rows, row_bytes].
at::Tensor pack_indices(const at::Tensor &idx, int64_t bits) {
    check_cpu(idx, at::kByte, "indices");
    TORCH_CHECK(idx.dim() == 2, "indices must be 2-D");
    TORCH_CHECK(bits == 3 || bits == 4, "the C kernels take 3 or 4 bits, got ", bits);
    int64_t rows = idx.size(0), cols = idx.size(1);
    int64_t kpad = sq_lut_padded_cols((int)bits, cols);
    auto out = at::zeros({rows, sq_lut_row_bytes((int)bits, kpad)}, at::kByte);
    sq_lut_pack((int)bits, idx.data_ptr<uint8_t>(), cols, cols, kpad, out.data_ptr<uint8_t>(), 0, rows);
    return out;
}

// Builds the sliced ELL layout of a CSR matrix: [window_slices, slice_levels, lane_rows (int16 holding
// uint16), lane_counts, slot_cols (int32), slot_vals (float32), window (int64 [1])].
std::vector<at::Tensor> sell_build(const at::Tensor &rowptr, const at::Tensor &cols, const at::Tensor &vals) {
    check_cpu(rowptr, at::kInt, "rows");
    check_cpu(cols, at::kInt, "cols");
    check_cpu(vals, at::kFloat, "vals");
    int64_t rows = rowptr.numel() - 1;
    TORCH_CHECK(rows >= 0, "rows needs at least one entry");
    int64_t window = sq_sell_window(rows);
    int64_t slices = 0, levels = 0;
    TORCH_CHECK(sq_sell_plan(rowptr.data_ptr<int32_t>(), rows, window, &slices, &levels), "out of memory");
    int64_t windows = (rows + window - 1) / window;
    auto window_slices = at::zeros({windows + 1}, at::kInt);
    auto slice_levels = at::zeros({slices + 1}, at::kInt);
    auto lane_rows = at::zeros({slices * SQ_SELL_LANES}, at::kShort);
    auto lane_counts = at::zeros({slices * SQ_SELL_LANES}, at::kByte);
    auto source = at::zeros({levels * SQ_SELL_LANES}, at::kInt);
    TORCH_CHECK(sq_sell_build(rowptr.data_ptr<int32_t>(), rows, window, window_slices.data_ptr<int32_t>(),
                              slice_levels.data_ptr<int32_t>(), (uint16_t *)lane_rows.data_ptr<int16_t>(),
                              lane_counts.data_ptr<uint8_t>(), source.data_ptr<int32_t>()),
                "out of memory");
    auto pad = source.lt(0);
    auto src = source.clamp_min(0).to(at::kLong);
    auto slot_cols = cols.numel() ? cols.index_select(0, src).masked_fill(pad, 0) : at::zeros_like(source);
    auto slot_vals = vals.numel() ? vals.index_select(0, src).masked_fill(pad, 0.0f)
                                  : at::zeros({source.numel()}, at::kFloat);
    return {window_slices, slice_levels, lane_rows, lane_counts, slot_cols.contiguous(), slot_vals.contiguous(),
            at::full({1}, window, at::kLong)};
}

// y [m, rows] = x [m, cols] W^T (+ S x) with W packed (`bits`, pack_indices) and float tables [rows, 16].
at::Tensor lut_linear(const at::Tensor &x_in, const at::Tensor &packed, const at::Tensor &lut, int64_t bits,
                      int64_t cols, const std::vector<at::Tensor> &sparse) {
    check_cpu(packed, at::kByte, "packed weights");
    check_cpu(lut, at::kFloat, "lookup tables");
    TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == cols, "x must be [tokens, ", cols, "]");
    int64_t rows = packed.size(0), m = x_in.size(0);
    int64_t kpad = sq_lut_padded_cols((int)bits, cols);
    TORCH_CHECK(packed.size(1) == sq_lut_row_bytes((int)bits, kpad), "packed rows have the wrong size");
    TORCH_CHECK(lut.size(0) == rows && lut.size(1) == 16, "tables must be [rows, 16]");
    auto x = x_in.to(at::kFloat).contiguous();
    auto y = at::empty({m, rows}, at::kFloat);
    if (m == 0) return y;
    sq_csr csr{};
    const sq_csr *sp = nullptr;
    if (!sparse.empty()) {
        TORCH_CHECK(sparse.size() == 8, "sparse needs 8 tensors (rowptr and the sell_build output)");
        csr.rowptr = sparse[0].data_ptr<int32_t>();
        csr.window_slices = sparse[1].data_ptr<int32_t>();
        csr.slice_levels = sparse[2].data_ptr<int32_t>();
        csr.lane_rows = (const uint16_t *)sparse[3].data_ptr<int16_t>();
        csr.lane_counts = sparse[4].data_ptr<uint8_t>();
        csr.cols = sparse[5].data_ptr<int32_t>();
        csr.vals = sparse[6].data_ptr<float>();
        csr.rows = rows;
        csr.columns = cols;
        csr.window = sparse[7].item<int64_t>();
        csr.compact = 0;
        sp = &csr;
    }
    const uint8_t *w = packed.data_ptr<uint8_t>();
    const float *t = lut.data_ptr<float>();
    float *yp = y.data_ptr<float>();
    int threads = at::get_num_threads();
    int64_t grain = std::max<int64_t>(64, (rows + threads - 1) / threads);
    if (m >= kDequantTokens) {
        const float *xp = x.data_ptr<float>();
        at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
            sq_lut_gemm_dequant((int)bits, w, t, sp, kpad, cols, xp, cols, m, yp, rows, r0, r1);
        });
        return y;
    }
    at::Tensor xpad = x;
    if (kpad != cols) {
        xpad = at::zeros({m, kpad}, at::kFloat);
        xpad.narrow(1, 0, cols).copy_(x);
    }
    const float *xp = xpad.data_ptr<float>();
    const float *xs = x.data_ptr<float>();
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
        sq_lut_gemm_f32((int)bits, w, t, xp, kpad, m, yp, rows, kpad, r0, r1);
        if (sp) sq_csr_spmm_range(sp, xs, cols, m, yp, rows, r0, r1);
    });
    return y;
}

}  // namespace

TORCH_LIBRARY(vllm_squeeze, m) {
    m.def("pack_indices(Tensor idx, int bits) -> Tensor");
    m.def("sell_build(Tensor rowptr, Tensor cols, Tensor vals) -> Tensor[]");
    m.def("lut_linear(Tensor x, Tensor packed, Tensor lut, int bits, int cols, Tensor[] sparse) -> Tensor");
}

TORCH_LIBRARY_IMPL(vllm_squeeze, CPU, m) {
    m.impl("pack_indices", &pack_indices);
    m.impl("sell_build", &sell_build);
    m.impl("lut_linear", &lut_linear);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.doc() = "Squeeze C kernels for vLLM (see vllm_squeeze.kernels)"; }
