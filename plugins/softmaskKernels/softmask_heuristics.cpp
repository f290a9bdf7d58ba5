/*
 * Split heuristic of the fused kernel: the C twin of softmask.kernels.heuristics.choose_num_splits
 * (tests/test_kernel_heuristics.py compiles this file alone and compares both). Pure host code.
 */
#include "softmask_kernels.h"

#include <algorithm>
#include <cstdint>

namespace
{

constexpr int32_t kMaxSplits = 128;
constexpr int32_t kMinTilesToSplit = 4;
constexpr double kTargetWaveEfficiency = 0.85;

int64_t cdiv(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

int32_t blockIFor(int32_t numQueries)
{
    return numQueries <= 16 ? 16 : 64;
}

int32_t blockSFor(int32_t headDim)
{
    return headDim <= 64 ? 128 : 64;
}

int32_t maxSplits(int32_t numKeys, int32_t headDim)
{
    return static_cast<int32_t>(std::max<int64_t>(1, std::min<int64_t>(kMaxSplits, cdiv(numKeys, blockSFor(headDim)))));
}

double waveEfficiency(int64_t programs, int64_t numSms)
{
    int64_t const waves = cdiv(programs, numSms);
    return static_cast<double>(programs) / static_cast<double>(waves * numSms);
}

} // namespace

extern "C" int32_t softmask_sma_max_splits(int32_t num_keys, int32_t head_dim)
{
    return maxSplits(num_keys, head_dim);
}

extern "C" int32_t softmask_sma_num_splits(int32_t batch, int32_t num_heads, int32_t num_queries, int32_t num_keys,
    int32_t head_dim, int32_t num_sms)
{
    if (batch <= 0 || num_heads <= 0 || num_queries <= 0 || num_keys <= 0 || head_dim <= 0 || num_sms <= 0)
    {
        return 1;
    }
    if (cdiv(num_keys, blockSFor(head_dim)) < kMinTilesToSplit)
    {
        return 1;
    }
    int64_t const base = static_cast<int64_t>(batch) * num_heads * cdiv(num_queries, blockIFor(num_queries));
    int32_t const limit = maxSplits(num_keys, head_dim);
    int32_t best = 1;
    double bestEff = waveEfficiency(base, num_sms);
    for (int32_t splits = 1; splits <= limit; ++splits)
    {
        double const eff = waveEfficiency(base * splits, num_sms);
        if (eff >= kTargetWaveEfficiency)
        {
            return splits;
        }
        if (eff > bestEff + 1e-9)
        {
            best = splits;
            bestEff = eff;
        }
    }
    return best;
}

