/*
 * Tile and split rules of the fused kernel: the C twin of softmask/kernels/heuristics.py
 * (tests/test_kernel_heuristics.py compiles this file alone and compares both). Pure host code.
 */
#include "softmask_kernels.h"

#include <algorithm>
#include <cstdint>

namespace
{

constexpr int32_t kMaxSplits = 128;
constexpr int32_t kMinTilesToSplit = 4;
constexpr int64_t kMinCtasPerSm = 2;
constexpr int64_t kMinWarpsPerSm = 8;
constexpr int32_t kKeyAlign = 16;
constexpr int64_t kSplitOverheadTiles = 1; // a program's fixed work, in key tiles

int64_t cdiv(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

int32_t blockSFor(int32_t headDim, bool aligned, int32_t elemBytes)
{
    int32_t blockS = 128;
    if (headDim >= 128)
    {
        blockS = 32;
    }
    else if (headDim >= 64)
    {
        blockS = 64;
    }
    else if (!aligned)
    {
        blockS = 64;
    }
    return elemBytes >= 4 ? blockS / 2 : blockS;
}

int64_t ctasPerSm(int32_t numWarps)
{
    return std::max(kMinCtasPerSm, cdiv(kMinWarpsPerSm, numWarps));
}

} // namespace

extern "C" int32_t softmask_sma_block_i(int32_t num_queries, int32_t head_dim)
{
    if (head_dim >= 128 || num_queries > 32)
    {
        return 64;
    }
    return num_queries > 16 ? 32 : 16;
}

extern "C" int32_t softmask_sma_block_s(int32_t head_dim, int32_t num_keys, int32_t elem_bytes)
{
    return blockSFor(head_dim, num_keys % kKeyAlign == 0, elem_bytes);
}

extern "C" int32_t softmask_sma_max_splits(int32_t num_keys, int32_t head_dim)
{
    int32_t const smallestBlockS = blockSFor(head_dim, false, 4);
    return static_cast<int32_t>(std::max<int64_t>(1, std::min<int64_t>(kMaxSplits, cdiv(num_keys, smallestBlockS))));
}

extern "C" int32_t softmask_sma_splits_for(
    int64_t programs_per_split, int64_t key_tiles, int32_t num_sms, int32_t num_warps)
{
    if (key_tiles < kMinTilesToSplit || programs_per_split < 1 || num_sms < 1 || num_warps < 1)
    {
        return 1;
    }
    int64_t const limit = std::min<int64_t>(kMaxSplits, key_tiles);
    int64_t const slots = ctasPerSm(num_warps) * num_sms;
    int64_t const first = std::min(limit, cdiv(slots, programs_per_split));
    auto busiestSmTiles = [&](int64_t splits)
    { return cdiv(programs_per_split * splits, num_sms) * (cdiv(key_tiles, splits) + kSplitOverheadTiles); };
    int64_t best = first;
    int64_t bestCost = busiestSmTiles(first);
    for (int64_t splits = first + 1; splits <= limit; ++splits)
    {
        int64_t const cost = busiestSmTiles(splits);
        if (cost < bestCost)
        {
            best = splits;
            bestCost = cost;
        }
    }
    return static_cast<int32_t>(best);
}

extern "C" int32_t softmask_sma_num_splits(int32_t batch, int32_t num_heads, int32_t num_queries, int32_t num_keys,
    int32_t block_i, int32_t block_s, int32_t num_sms)
{
    if (batch <= 0 || num_heads <= 0 || num_queries <= 0 || num_keys <= 0 || block_i < 16 || block_s <= 0
        || num_sms <= 0)
    {
        return 1;
    }
    int64_t const programs = static_cast<int64_t>(batch) * num_heads * cdiv(num_queries, block_i);
    return softmask_sma_splits_for(programs, cdiv(num_keys, block_s), num_sms, block_i / 16);
}
