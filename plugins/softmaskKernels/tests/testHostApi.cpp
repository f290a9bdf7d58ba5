// Host-only tests of libsoftmask_kernels: argument validation, workspace sizing and the split
// heuristic, none of which may touch the GPU (CI has no driver).
#include "softmask_kernels.h"
#include "softmask_kernels_table.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace
{
int gFailures = 0;

void check(bool ok, char const* what)
{
    if (!ok)
    {
        std::printf("FAIL: %s\n", what);
        ++gFailures;
    }
}

alignas(16) unsigned char gBuffer[256];

SoftmaskSmaParams validParams()
{
    SoftmaskSmaParams p{};
    p.query = p.key = p.value = p.mask = p.alpha = gBuffer;
    p.output = gBuffer;
    p.batch = 1;
    p.num_queries = 5;
    p.num_keys = 100;
    p.num_heads = 8;
    p.head_dim = 32;
    p.dtype = SOFTMASK_DTYPE_FLOAT16;
    p.mask_dtype = SOFTMASK_DTYPE_FLOAT16;
    p.alpha_dtype = SOFTMASK_DTYPE_FLOAT32;
    return p;
}

void expectStatus(SoftmaskSmaParams const& p, int32_t want, char const* what, char const* messagePart)
{
    int32_t const got = softmask_sma_forward(&p, nullptr);
    check(got == want, what);
    std::string const text = softmask_status_string(got);
    check(text.find(messagePart) != std::string::npos, messagePart);
}

void testValidation()
{
    check(softmask_sma_forward(nullptr, nullptr) == SOFTMASK_STATUS_INVALID_ARGUMENT, "null params");

    SoftmaskSmaParams p = validParams();
    p.query = nullptr;
    expectStatus(p, SOFTMASK_STATUS_INVALID_ARGUMENT, "null query", "query pointer is NULL");

    p = validParams();
    p.key = gBuffer + 2;
    expectStatus(p, SOFTMASK_STATUS_INVALID_ARGUMENT, "misaligned key", "key pointer is not 16-byte aligned");

    p = validParams();
    p.num_keys = -1;
    expectStatus(p, SOFTMASK_STATUS_INVALID_ARGUMENT, "negative S", "S=-1");

    p = validParams();
    p.num_heads = 0;
    expectStatus(p, SOFTMASK_STATUS_INVALID_ARGUMENT, "zero heads", "H=0");

    p = validParams();
    p.dtype = static_cast<SoftmaskDtype>(7);
    expectStatus(p, SOFTMASK_STATUS_INVALID_ARGUMENT, "bad dtype enum", "dtype value 7");

    p = validParams();
    p.dtype = SOFTMASK_DTYPE_BOOL;
    expectStatus(p, SOFTMASK_STATUS_INVALID_ARGUMENT, "bool data", "BOOL is for the mask only");

    p = validParams();
    p.mask_dtype = static_cast<SoftmaskDtype>(9);
    expectStatus(p, SOFTMASK_STATUS_INVALID_ARGUMENT, "bad mask dtype enum", "mask dtype value 9");

    p = validParams();
    p.mask_dtype = SOFTMASK_DTYPE_BOOL;
    p.key = nullptr;
    expectStatus(p, SOFTMASK_STATUS_INVALID_ARGUMENT, "hard mode checks the other pointers", "key pointer is NULL");

    p = validParams();
    p.head_dim = 48;
    expectStatus(p, SOFTMASK_STATUS_UNSUPPORTED, "head dim 48", "head_dim 48");

    p = validParams();
    p.dtype = SOFTMASK_DTYPE_BFLOAT16;
    expectStatus(p, SOFTMASK_STATUS_UNSUPPORTED, "bf16", "bfloat16");

    p = validParams();
    p.num_keys = 1 << 24; // S * E = 2^32
    expectStatus(p, SOFTMASK_STATUS_UNSUPPORTED, "per-batch offsets beyond 32 bits", "below 2^31");

    p = validParams();
    p.batch = 0;
    check(softmask_sma_forward(&p, nullptr) == SOFTMASK_STATUS_SUCCESS, "empty batch is a no-op");
}

void testWorkspaceSize()
{
    // Upper bound = (splits bound = min(128, ceil(S / 32)), 32 = the smallest BLOCK_S at D = 32,
    // fp32) partials of I rows: acc B*H*splits*I*D floats + (max, sum) B*H*splits*I*2 floats +
    // merge counters B*H*ceil(I/16)*(groups + 1) int32 + alpha H floats, each 256-aligned.
    size_t const splits = 128; // S = 6420: ceil(6420 / 32) = 201, capped at 128
    size_t const rows = 1 * 8 * splits * 40;
    auto align = [](size_t n) { return (n + 255) / 256 * 256; };
    size_t const counters = align(8 * 3 * (SOFTMASK_MAX_MERGE_GROUPS + 1) * 4);
    size_t const expected = align(rows * 32 * 4) + align(rows * 2 * 4) + counters + align(8 * 4);
    check(softmask_sma_max_splits(6420, 32) == 128, "split bound: the smallest key tile, capped");
    check(softmask_sma_max_splits(1000, 32) == 32, "split bound: one split per smallest key tile");
    check(softmask_sma_workspace_size(1, 40, 6420, 8, 32) >= expected, "workspace holds the partials");
    check(softmask_sma_workspace_size(1, 40, 6420, 8, 32) < expected + 256 * 1024, "workspace is tight");
    check(softmask_sma_workspace_size(0, 40, 6420, 8, 32) == 0, "empty workspace");
    check(softmask_sma_workspace_size(4, 40, 6420, 8, 32) > softmask_sma_workspace_size(1, 40, 6420, 8, 32),
        "workspace grows with batch");
}

void testSplits()
{
    check(softmask_sma_block_i(5, 32) == 16 && softmask_sma_block_i(17, 32) == 32
            && softmask_sma_block_i(40, 32) == 64 && softmask_sma_block_i(5, 128) == 64,
        "query tile matched to I");
    check(softmask_sma_block_s(32, 25680, 2) == 128 && softmask_sma_block_s(32, 6420, 2) == 64
            && softmask_sma_block_s(128, 6480, 2) == 32 && softmask_sma_block_s(32, 25680, 4) == 64,
        "key tile rules");
    check(softmask_sma_num_splits(1, 8, 40, 100, 64, 128, 132) == 1, "tiny S is not split");
    int32_t const s = softmask_sma_num_splits(1, 8, 40, 25680, 64, 128, 132);
    check(8 * s >= 2 * 132, ">= 2 CTAs per SM at B=1 H=8 I=40 on 132 SMs");
    check(s <= 201, "at most one split per key tile");
}

// The generated table: every image is a cubin (ELF) or NUL-terminated PTX naming its entry; every
// arch has a general row (key padding, any S) per (dtype, mask dtype, head dim), and each cubin
// arch >= 80 fast fp16 rows for every query tile the launcher picks.
void testTable()
{
    check(softmask_kernel_table_size > 0, "table is not empty");
    int32_t const headDims[] = {16, 32, 64, 128};
    int32_t const dtypes[] = {SOFTMASK_DTYPE_FLOAT32, SOFTMASK_DTYPE_FLOAT16};
    int32_t const maskDtypes[] = {SOFTMASK_DTYPE_FLOAT32, SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_BOOL};
    for (size_t i = 0; i < softmask_kernel_table_size; ++i)
    {
        SoftmaskKernelEntry const& e = softmask_kernel_table[i];
        size_t const size = softmask_kernel_image_size(i);
        check(size > 16, "image is not empty");
        if (e.is_ptx)
        {
            std::string const ptx(reinterpret_cast<char const*>(e.image), size - 1);
            check(e.image[size - 1] == 0, "PTX is NUL-terminated");
            check(ptx.find(std::string(".entry ") + e.name) != std::string::npos, "PTX holds the entry");
            check(ptx.find(".version 8.0") != std::string::npos, "PTX declares ISA 8.0 (JIT on CUDA 12.0+ drivers)");
        }
        else
        {
            check(std::memcmp(e.image, "\x7f" "ELF", 4) == 0, "cubin is an ELF image");
        }
        check(e.num_warps == e.block_i / 16, "one warp per 16 query rows");
        check(e.padding == 1 ? e.key_align == 1 : e.key_align == 16, "general rows take any S");
        check(e.arch >= 80 || e.num_stages == 1, "no pipelining without cp.async (Turing)");
        check(e.arch != 75 || e.shared_bytes <= 64 * 1024, "sm_75 kernels fit 64 KiB of shared memory");
        check(e.arch != 80 || e.shared_bytes <= 99 * 1024, "sm_80 kernels fit 99 KiB (they serve 8.6/8.9 too)");
        for (int32_t d : headDims)
        {
            for (int32_t dtype : dtypes)
            {
                for (int32_t maskDtype : maskDtypes)
                {
                    int general = 0;
                    for (size_t j = 0; j < softmask_kernel_table_size; ++j)
                    {
                        SoftmaskKernelEntry const& o = softmask_kernel_table[j];
                        general += o.arch == e.arch && o.is_ptx == e.is_ptx && o.head_dim == d && o.dtype == dtype
                            && o.mask_dtype == maskDtype && o.padding == 1;
                    }
                    check(general == 1, "one general row per (arch, dtype, mask dtype, head dim)");
                }
            }
            if (e.arch >= 80 && !e.is_ptx)
            {
                for (int32_t queries : {5, 20, 40})
                {
                    int32_t const blockI = softmask_sma_block_i(queries, d);
                    int fast = 0;
                    for (size_t j = 0; j < softmask_kernel_table_size; ++j)
                    {
                        SoftmaskKernelEntry const& o = softmask_kernel_table[j];
                        fast += o.arch == e.arch && !o.is_ptx && o.head_dim == d && o.block_i == blockI
                            && o.dtype == SOFTMASK_DTYPE_FLOAT16 && o.mask_dtype == SOFTMASK_DTYPE_FLOAT16
                            && o.padding == 0;
                    }
                    check(fast == 1, "one fast fp16 row per query tile the launcher picks");
                }
                int hardFast = 0;
                for (size_t j = 0; j < softmask_kernel_table_size; ++j)
                {
                    SoftmaskKernelEntry const& o = softmask_kernel_table[j];
                    hardFast += o.arch == e.arch && !o.is_ptx && o.head_dim == d && o.dtype == SOFTMASK_DTYPE_FLOAT16
                        && o.mask_dtype == SOFTMASK_DTYPE_BOOL && o.padding == 0;
                }
                check(hardFast == 1, "one fast fp16 hard-mode (bool mask) row per head dim");
            }
        }
    }
    std::printf("table: %zu kernels\n", softmask_kernel_table_size);
}
} // namespace

int main()
{
    testValidation();
    testWorkspaceSize();
    testSplits();
    testTable();
    if (gFailures == 0)
    {
        std::printf("all host API checks passed\n");
    }
    return gFailures == 0 ? 0 : 1;
}
