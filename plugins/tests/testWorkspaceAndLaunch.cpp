// Workspace sizing over an optimisation profile and the kernel launch parameters enqueue builds.
// Nothing here touches a GPU: the workspace query is host arithmetic and enqueue is never called.
#include "fakeTensorRT.h"
#include "softMaskedAttentionPlugin.h"
#include "softmask_kernels.h"
#include "tensorDescs.h"
#include "testHarness.h"

#include <array>
#include <cstdint>
#include <vector>

namespace
{

using nvinfer1::DataType;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginTensorDesc;
using softmask::plugin::SoftMaskedAttentionFields;
using softmask::plugin::SoftMaskedAttentionPlugin;
using softmask_test::AttentionShape;

SoftMaskedAttentionPlugin makePlugin(int32_t numHeads, int32_t numSplits = 0)
{
    SoftMaskedAttentionFields fields;
    fields.numHeads = numHeads;
    fields.numSplits = numSplits;
    return SoftMaskedAttentionPlugin(fields);
}

//! getWorkspaceSize for a profile from `minimum` to `maximum` (E and H fixed).
size_t profileWorkspace(SoftMaskedAttentionPlugin const& plugin, AttentionShape const& minimum, AttentionShape const& maximum)
{
    AttentionShape const dynamic{-1, -1, -1, maximum.embed, maximum.heads};
    std::vector<DynamicPluginTensorDesc> const descs = softmask_test::dynamicDescs(
        softmask_test::inOutDescs(dynamic, true, DataType::kHALF, DataType::kHALF, DataType::kFLOAT),
        softmask_test::inOutDescs(minimum, true, DataType::kHALF, DataType::kHALF, DataType::kFLOAT),
        softmask_test::inOutDescs(maximum, true, DataType::kHALF, DataType::kHALF, DataType::kFLOAT));
    return plugin.getWorkspaceSize(descs.data(), 6, descs.data() + 6, 1);
}

} // namespace

SOFTMASK_TEST(workspaceCoversEveryShapeOfTheProfile)
{
    SoftMaskedAttentionPlugin const plugin = makePlugin(8);
    AttentionShape const minimum{1, 1, 1, 256, 8};
    AttentionShape const maximum{4, 40, 25680, 256, 8};
    size_t const allocated = profileWorkspace(plugin, minimum, maximum);
    for (int32_t const batch : {1, 2, 4})
    {
        for (int32_t const queries : {1, 5, 17, 40})
        {
            for (int32_t const keys : {1, 63, 6420, 14400, 25680})
            {
                size_t const needed = softmask_sma_workspace_size(batch, queries, keys, 8, 32);
                CHECK(needed <= allocated);
            }
        }
    }
}

SOFTMASK_TEST(workspaceNeverShrinksAsShapesGrow)
{
    SoftMaskedAttentionPlugin const plugin = makePlugin(8);
    AttentionShape const minimum{1, 1, 1, 256, 8};
    AttentionShape previous{1, 1, 16, 256, 8};
    size_t previousBytes = profileWorkspace(plugin, minimum, previous);
    // Grow one axis of the profile's maximum at a time, cycling over B, I and S.
    for (int32_t step = 0; step < 24; ++step)
    {
        AttentionShape grown = previous;
        switch (step % 3)
        {
        case 0: grown.batch += 1; break;
        case 1: grown.queries += 7; break;
        default: grown.keys = grown.keys * 2 + 1; break;
        }
        size_t const grownBytes = profileWorkspace(plugin, minimum, grown);
        CHECK(grownBytes >= previousBytes);
        previous = grown;
        previousBytes = grownBytes;
    }
}

SOFTMASK_TEST(workspaceDependsOnlyOnTheProfileMaximum)
{
    SoftMaskedAttentionPlugin const plugin = makePlugin(4);
    AttentionShape const maximum{2, 9, 1000, 256, 4};
    size_t const fromOne = profileWorkspace(plugin, {1, 1, 1, 256, 4}, maximum);
    size_t const fromMax = profileWorkspace(plugin, maximum, maximum);
    CHECK_EQ(fromOne, fromMax);
    CHECK_EQ(fromOne, softmask_sma_workspace_size(2, 9, 1000, 4, 64));
}

SOFTMASK_TEST(workspaceQueryWithAnUnsupportedHeadDimLogsAnError)
{
    SoftMaskedAttentionPlugin const plugin = makePlugin(8);
    softmask_test::CapturedLog log;
    CHECK_EQ(profileWorkspace(plugin, {1, 1, 1, 8 * 20, 8}, {2, 4, 64, 8 * 20, 8}), size_t{0});
    CHECK_CONTAINS(log.logger().errorText(), "head dim D");
}

SOFTMASK_TEST(launchParametersComeFromTheRealShapes)
{
    AttentionShape const shape{2, 5, 7, 64, 2};
    std::vector<PluginTensorDesc> const descs
        = softmask_test::inOutDescs(shape, true, DataType::kHALF, DataType::kFLOAT, DataType::kHALF);
    // Distinct addresses that are never dereferenced: only their routing into the parameters is checked.
    std::array<char, 8> storage{};
    std::array<void const*, 6> const inputs{
        &storage[0], &storage[1], &storage[2], &storage[3], &storage[4], &storage[5]};
    std::array<void*, 1> const outputs{&storage[6]};
    void* const workspace = &storage[7];
    SoftMaskedAttentionFields fields;
    fields.numHeads = 2;
    fields.numSplits = 3;

    SoftmaskSmaParams const params
        = softmask::plugin::makeSmaParams(descs.data(), 6, inputs.data(), outputs.data(), workspace, fields);
    CHECK(params.query == inputs[0] && params.key == inputs[1] && params.value == inputs[2]);
    CHECK(params.mask == inputs[3] && params.alpha == inputs[4]);
    CHECK(static_cast<void const*>(params.key_padding_mask) == inputs[5]);
    CHECK(params.output == outputs[0] && params.workspace == workspace);
    CHECK_EQ(params.batch, 2);
    CHECK_EQ(params.num_queries, 5);
    CHECK_EQ(params.num_keys, 7);
    CHECK_EQ(params.num_heads, 2);
    CHECK_EQ(params.head_dim, 32);
    CHECK_EQ(params.num_splits, 3);
    CHECK(params.dtype == SOFTMASK_DTYPE_FLOAT16);
    CHECK(params.mask_dtype == SOFTMASK_DTYPE_FLOAT32);
    CHECK(params.alpha_dtype == SOFTMASK_DTYPE_FLOAT16);
    CHECK_EQ(params.workspace_size, softmask_sma_workspace_size(2, 5, 7, 2, 32));

    std::vector<PluginTensorDesc> const withoutPadding
        = softmask_test::inOutDescs(shape, false, DataType::kFLOAT, DataType::kHALF, DataType::kFLOAT);
    SoftmaskSmaParams const unpadded
        = softmask::plugin::makeSmaParams(withoutPadding.data(), 5, inputs.data(), outputs.data(), workspace, fields);
    CHECK(unpadded.key_padding_mask == nullptr);
    CHECK(unpadded.dtype == SOFTMASK_DTYPE_FLOAT32);
    CHECK(unpadded.mask_dtype == SOFTMASK_DTYPE_FLOAT16);

    // hard_mask = 1: the kBOOL mask goes to the launcher as SOFTMASK_DTYPE_BOOL (the hard kernels).
    fields.hardMask = 1;
    std::vector<PluginTensorDesc> const hard
        = softmask_test::inOutDescs(shape, true, DataType::kHALF, DataType::kBOOL, DataType::kFLOAT);
    SoftmaskSmaParams const hardParams
        = softmask::plugin::makeSmaParams(hard.data(), 6, inputs.data(), outputs.data(), workspace, fields);
    CHECK(hardParams.mask_dtype == SOFTMASK_DTYPE_BOOL);
    CHECK(hardParams.mask == inputs[3]);
    CHECK(hardParams.dtype == SOFTMASK_DTYPE_FLOAT16);
}

SOFTMASK_TEST_MAIN()
