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
    p.head_dim = 48;
    expectStatus(p, SOFTMASK_STATUS_UNSUPPORTED, "head dim 48", "head_dim 48");

    p = validParams();
    p.dtype = SOFTMASK_DTYPE_BFLOAT16;
    expectStatus(p, SOFTMASK_STATUS_UNSUPPORTED, "bf16", "bfloat16");

    p = validParams();
    p.batch = 0;
    check(softmask_sma_forward(&p, nullptr) == SOFTMASK_STATUS_SUCCESS, "empty batch is a no-op");
}

void testWorkspaceSize()
{
    // Upper bound = (splits bound = min(128, ceil(S / BLOCK_S))) partials of I rows:
    // acc B*H*splits*I*D floats + (max, sum) B*H*splits*I*2 floats + alpha H floats, 256-aligned.
    size_t const splits = 51; // S = 6420, BLOCK_S = 128 for D = 32
    size_t const rows = 1 * 8 * splits * 40;
    auto align = [](size_t n) { return (n + 255) / 256 * 256; };
    size_t const expected = align(rows * 32 * 4) + align(rows * 2 * 4) + align(8 * 4);
    check(softmask_sma_workspace_size(1, 40, 6420, 8, 32) >= expected, "workspace holds the partials");
    check(softmask_sma_workspace_size(1, 40, 6420, 8, 32) < expected + 256 * 1024, "workspace is tight");
    check(softmask_sma_workspace_size(0, 40, 6420, 8, 32) == 0, "empty workspace");
    check(softmask_sma_workspace_size(4, 40, 6420, 8, 32) > softmask_sma_workspace_size(1, 40, 6420, 8, 32),
        "workspace grows with batch");
}

void testSplits()
{
    check(softmask_sma_num_splits(1, 8, 40, 100, 32, 132) == 1, "tiny S is not split");
    int32_t const s = softmask_sma_num_splits(1, 8, 40, 25680, 32, 132);
    int32_t const programs = 8 * s;
    int32_t const waves = (programs + 131) / 132;
    check(static_cast<double>(programs) / (waves * 132) >= 0.85, "85% wave efficiency at B=1 H=8");
}
// The generated table: every image is a cubin (ELF) or NUL-terminated PTX naming its entry, and
// each arch has a split kernel per (dtype, mask dtype, head dim) and a merge kernel per (dtype, head dim).
void testTable()
{
    check(softmask_kernel_table_size > 0, "table is not empty");
    int32_t const headDims[] = {16, 32, 64, 128};
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
        }
        else
        {
            check(std::memcmp(e.image, "\x7f" "ELF", 4) == 0, "cubin is an ELF image");
        }
        check(e.num_warps >= 1 && e.block_i >= 16, "launch parameters recorded");
        int found = 0;
        for (int32_t d : headDims)
        {
            found += e.head_dim == d;
        }
        check(found == 1, "head dim is one of 16, 32, 64, 128");
        int splitCount = 0;
        int mergeCount = 0;
        for (size_t j = 0; j < softmask_kernel_table_size; ++j)
        {
            SoftmaskKernelEntry const& o = softmask_kernel_table[j];
            if (o.arch == e.arch && o.is_ptx == e.is_ptx)
            {
                splitCount += o.kind == SOFTMASK_KERNEL_SPLIT;
                mergeCount += o.kind == SOFTMASK_KERNEL_MERGE;
            }
        }
        check(splitCount == 2 * 2 * 4 && mergeCount == 2 * 4, "complete specialisation set per arch");
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
