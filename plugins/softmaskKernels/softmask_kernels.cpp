/*
 * softmask_kernels: launcher of the AOT-compiled fused kernels (softmask/kernels/triton_kernels.py).
 *
 * Kernels come from the generated table (softmask_kernels_table.c, written by
 * `python -m softmask.kernels.aot` at build time). Images are loaded and launched with the CUDA
 * driver API, looked up through the statically linked runtime (softmask_cuda_driver.h): no libcuda link.
 */
#include "softmask_kernels.h"

#include "softmask_kernels_table.h"
#include "softmask_kernels_internal.h"

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

namespace
{

thread_local std::string tLastError;

int32_t fail(int32_t status, std::string const& message)
{
    tLastError = message;
    return status;
}

int64_t cdiv(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

constexpr size_t kAlign = 256;

bool supportedHeadDim(int32_t d)
{
    return d == 16 || d == 32 || d == 64 || d == 128;
}

size_t alignUp(size_t n)
{
    return (n + kAlign - 1) / kAlign * kAlign;
}

size_t maxGlobalScratchPerProgram()
{
    size_t most = 0;
    for (size_t i = 0; i < softmask_kernel_table_size; ++i)
    {
        most = std::max(most, static_cast<size_t>(softmask_kernel_table[i].global_scratch_size));
    }
    return most;
}

} // namespace

namespace softmask
{
namespace kernels
{

WorkspaceLayout workspaceLayout(int64_t batch, int64_t queries, int64_t heads, int64_t headDim, int64_t splits)
{
    // Query tiles are counted at the smallest BLOCK_I (16), an upper bound for every kernel.
    int64_t const rows = batch * heads * splits * queries;
    int64_t const queryTiles = batch * heads * cdiv(queries, 16);
    WorkspaceLayout layout{};
    layout.accBytes = alignUp(static_cast<size_t>(rows * headDim) * sizeof(float));
    layout.mlBytes = alignUp(static_cast<size_t>(rows * 2) * sizeof(float));
    layout.counterBytes = alignUp(static_cast<size_t>(queryTiles * (SOFTMASK_MAX_MERGE_GROUPS + 1)) * sizeof(int32_t));
    layout.alphaBytes = alignUp(static_cast<size_t>(heads) * sizeof(float));
    layout.scratchBytes = alignUp(maxGlobalScratchPerProgram() * static_cast<size_t>(queryTiles * splits));
    layout.total = layout.accBytes + layout.mlBytes + layout.counterBytes + layout.alphaBytes + layout.scratchBytes;
    return layout;
}

int32_t validateSpec(KernelSpec const& spec)
{
    auto const floating = [](SoftmaskDtype t) {
        return t == SOFTMASK_DTYPE_FLOAT32 || t == SOFTMASK_DTYPE_FLOAT16 || t == SOFTMASK_DTYPE_BFLOAT16;
    };
    if (!floating(spec.dtype))
    {
        return fail(SOFTMASK_STATUS_INVALID_ARGUMENT,
            "dtype value " + std::to_string(static_cast<int>(spec.dtype)) + " is not a SoftmaskDtype of query/key/value"
                + (spec.dtype == SOFTMASK_DTYPE_BOOL ? " (BOOL is for the mask only)" : ""));
    }
    // BOOL is a mask type only: the hard mode.
    if (!floating(spec.maskDtype) && spec.maskDtype != SOFTMASK_DTYPE_BOOL)
    {
        return fail(SOFTMASK_STATUS_INVALID_ARGUMENT,
            "mask dtype value " + std::to_string(static_cast<int>(spec.maskDtype)) + " is not a SoftmaskDtype");
    }
    if (!supportedHeadDim(spec.headDim))
    {
        return fail(SOFTMASK_STATUS_UNSUPPORTED,
            "head_dim " + std::to_string(spec.headDim) + " has no kernel; supported: 16, 32, 64, 128");
    }
    if (spec.dtype == SOFTMASK_DTYPE_BFLOAT16 || spec.maskDtype == SOFTMASK_DTYPE_BFLOAT16)
    {
        return fail(SOFTMASK_STATUS_UNSUPPORTED, "bfloat16 has no AOT kernel (float32 and float16 only)");
    }
    return SOFTMASK_STATUS_SUCCESS;
}

int32_t validate(SoftmaskSmaParams const* p)
{
    if (p == nullptr)
    {
        return fail(SOFTMASK_STATUS_INVALID_ARGUMENT, "params is NULL");
    }
    if (p->batch < 0 || p->num_queries < 0 || p->num_keys < 0 || p->num_heads < 1 || p->num_splits < 0)
    {
        std::ostringstream os;
        os << "sizes must be batch, num_queries, num_keys >= 0, num_heads >= 1, num_splits >= 0; got B=" << p->batch
           << " I=" << p->num_queries << " S=" << p->num_keys << " H=" << p->num_heads
           << " num_splits=" << p->num_splits;
        return fail(SOFTMASK_STATUS_INVALID_ARGUMENT, os.str());
    }
    if (p->batch > 65535)
    {
        return fail(SOFTMASK_STATUS_INVALID_ARGUMENT,
            "batch " + std::to_string(p->batch) + " exceeds the grid's z limit of 65535");
    }
    int32_t const status = validateSpec(KernelSpec{p->dtype, p->mask_dtype, p->head_dim});
    if (status != SOFTMASK_STATUS_SUCCESS)
    {
        return status;
    }
    bool const hard = p->mask_dtype == SOFTMASK_DTYPE_BOOL;
    if (!hard && p->alpha_dtype != SOFTMASK_DTYPE_FLOAT32 && p->alpha_dtype != SOFTMASK_DTYPE_FLOAT16)
    {
        return fail(p->alpha_dtype == SOFTMASK_DTYPE_BFLOAT16 ? SOFTMASK_STATUS_UNSUPPORTED : SOFTMASK_STATUS_INVALID_ARGUMENT,
            "alpha dtype value " + std::to_string(static_cast<int>(p->alpha_dtype))
                + " has no kernel (float32 and float16 only)");
    }
    int64_t const embed = static_cast<int64_t>(p->num_heads) * p->head_dim;
    if (static_cast<int64_t>(p->num_keys) * embed >= (int64_t{1} << 31)
        || static_cast<int64_t>(p->num_queries) * p->num_keys >= (int64_t{1} << 31))
    {
        std::ostringstream os;
        os << "S * E = " << static_cast<int64_t>(p->num_keys) * embed << " and I * S = "
           << static_cast<int64_t>(p->num_queries) * p->num_keys
           << " must stay below 2^31 (the kernel's per-batch offsets are 32-bit)";
        return fail(SOFTMASK_STATUS_UNSUPPORTED, os.str());
    }
    if (p->batch == 0 || p->num_queries == 0)
    {
        return SOFTMASK_STATUS_SUCCESS;
    }
    std::pair<void const*, char const*> const required[] = {{p->query, "query"}, {p->output, "output"},
        {p->key, "key"}, {p->value, "value"}, {p->mask, "mask"}, {p->alpha, "alpha"}};
    for (auto const& [ptr, name] : required)
    {
        // Hard mode never reads alpha.
        bool const unused = (p->num_keys == 0 && name != std::string("output")) || (hard && name == std::string("alpha"));
        if (unused)
        {
            continue;
        }
        if (ptr == nullptr)
        {
            return fail(SOFTMASK_STATUS_INVALID_ARGUMENT, std::string(name) + " pointer is NULL");
        }
        bool const mustAlign = name != std::string("alpha");
        if (mustAlign && reinterpret_cast<uintptr_t>(ptr) % 16 != 0)
        {
            return fail(SOFTMASK_STATUS_INVALID_ARGUMENT,
                std::string(name) + " pointer is not 16-byte aligned (the kernels use vector loads)");
        }
    }
    return SOFTMASK_STATUS_SUCCESS;
}

int32_t resolveSplits(SoftmaskSmaParams const& p, int32_t numSms, int32_t blockI, int32_t blockS)
{
    int32_t const bound = softmask_sma_max_splits(p.num_keys, p.head_dim);
    if (p.num_splits > 0)
    {
        return std::min(p.num_splits, bound);
    }
    return std::min(bound, softmask_sma_num_splits(p.batch, p.num_heads, p.num_queries, p.num_keys, blockI, blockS, numSms));
}

} // namespace kernels
} // namespace softmask

extern "C" size_t softmask_sma_workspace_size(
    int32_t batch, int32_t num_queries, int32_t num_keys, int32_t num_heads, int32_t head_dim)
{
    if (batch <= 0 || num_queries <= 0 || num_keys <= 0 || num_heads <= 0 || head_dim <= 0)
    {
        return 0;
    }
    return softmask::kernels::workspaceLayout(batch, num_queries, num_heads, head_dim, softmask_sma_max_splits(num_keys, head_dim))
        .total;
}

extern "C" char const* softmask_status_string(int32_t status)
{
    static thread_local std::string text;
    char const* name = "unknown status";
    switch (status)
    {
    case SOFTMASK_STATUS_SUCCESS: name = "success"; break;
    case SOFTMASK_STATUS_INVALID_ARGUMENT: name = "invalid argument"; break;
    case SOFTMASK_STATUS_UNSUPPORTED: name = "unsupported"; break;
    case SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH: name = "no kernel for this GPU architecture"; break;
    case SOFTMASK_STATUS_WORKSPACE_TOO_SMALL: name = "workspace too small"; break;
    case SOFTMASK_STATUS_CUDA_ERROR: name = "CUDA error"; break;
    default: break;
    }
    text = name;
    if (status != SOFTMASK_STATUS_SUCCESS && !tLastError.empty())
    {
        text += ": " + tLastError;
    }
    return text.c_str();
}

extern "C" int32_t softmask_sma_forward(SoftmaskSmaParams const* params, cudaStream_t stream)
{
    try
    {
        int32_t const status = softmask::kernels::validate(params);
        if (status != SOFTMASK_STATUS_SUCCESS)
        {
            return status;
        }
        return softmask::kernels::launch(*params, stream);
    }
    catch (std::exception const& e)
    {
        return fail(SOFTMASK_STATUS_CUDA_ERROR, std::string("unexpected exception: ") + e.what());
    }
    catch (...)
    {
        return fail(SOFTMASK_STATUS_CUDA_ERROR, "unexpected exception");
    }
}

extern "C" int32_t softmask_sma_prepare(SoftmaskDtype dtype, SoftmaskDtype mask_dtype, int32_t head_dim)
{
    try
    {
        softmask::kernels::KernelSpec const spec{dtype, mask_dtype, head_dim};
        int32_t const status = softmask::kernels::validateSpec(spec);
        return status != SOFTMASK_STATUS_SUCCESS ? status : softmask::kernels::prepare(spec);
    }
    catch (std::exception const& e)
    {
        return fail(SOFTMASK_STATUS_CUDA_ERROR, std::string("unexpected exception: ") + e.what());
    }
    catch (...)
    {
        return fail(SOFTMASK_STATUS_CUDA_ERROR, "unexpected exception");
    }
}

namespace softmask
{
namespace kernels
{
int32_t setError(int32_t status, std::string const& message)
{
    return fail(status, message);
}
} // namespace kernels
} // namespace softmask
