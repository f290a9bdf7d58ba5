// Build-phase methods of the SoftMaskedAttention plugin: format combinations, output types and
// shapes, configurePlugin and onShapeChange validation.
#include "fakeTensorRT.h"
#include "softMaskedAttentionPlugin.h"
#include "tensorDescs.h"
#include "testHarness.h"

#include <array>
#include <string>
#include <vector>

namespace
{

using nvinfer1::DataType;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;
using softmask::plugin::SoftMaskedAttentionFields;
using softmask::plugin::SoftMaskedAttentionPlugin;
using softmask_test::AttentionShape;

constexpr std::array<DataType, 6> kCANDIDATE_TYPES{
    DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT8, DataType::kINT32, DataType::kBOOL};

SoftMaskedAttentionPlugin makePlugin(int32_t numHeads, bool hardMask = false)
{
    SoftMaskedAttentionFields fields;
    fields.numHeads = numHeads;
    fields.hardMask = hardMask ? 1 : 0;
    return SoftMaskedAttentionPlugin(fields);
}

//! The supported combinations, written out from the op contract: data = query = key = value =
//! output in {fp32, fp16}; mask in {fp32, fp16}, or bool exactly in hard mode (hard_mask = 1);
//! alpha fp32 or the data type; key_padding_mask bool. The output never is bool: TensorRT 10.14
//! refuses kBOOL plugin outputs (NvInferRuntime.h:935, getOutputDataTypes' warning).
bool contractAllows(std::vector<DataType> const& types, int32_t nbInputs, bool hardMask)
{
    DataType const data = types[0];
    bool const dataOk = data == DataType::kFLOAT || data == DataType::kHALF;
    bool const sameData = types[1] == data && types[2] == data && types[static_cast<size_t>(nbInputs)] == data;
    bool const maskOk
        = hardMask ? types[3] == DataType::kBOOL : (types[3] == DataType::kFLOAT || types[3] == DataType::kHALF);
    bool const alphaOk = types[4] == DataType::kFLOAT || types[4] == data;
    bool const paddingOk = nbInputs == 5 || types[5] == DataType::kBOOL;
    return dataOk && sameData && maskOk && alphaOk && paddingOk;
}

std::vector<DynamicPluginTensorDesc> withTypes(std::vector<DataType> const& types)
{
    std::vector<DynamicPluginTensorDesc> inOut(types.size());
    for (size_t i = 0; i < types.size(); ++i)
    {
        inOut[i].desc = softmask_test::makeDesc(softmask_test::makeDims({-1, -1, 64}), types[i]);
    }
    return inOut;
}

//! Asks position by position, as TensorRT does; a combination is chosen only if every position agrees.
bool pluginAcceptsAll(SoftMaskedAttentionPlugin& plugin, std::vector<DynamicPluginTensorDesc> const& inOut, int32_t nbInputs)
{
    for (int32_t pos = 0; pos < static_cast<int32_t>(inOut.size()); ++pos)
    {
        if (!plugin.supportsFormatCombination(pos, inOut.data(), nbInputs, 1))
        {
            return false;
        }
    }
    return true;
}

int32_t configure(SoftMaskedAttentionPlugin& plugin, std::vector<PluginTensorDesc> const& descs, int32_t nbInputs)
{
    std::vector<DynamicPluginTensorDesc> dynamic = softmask_test::dynamicDescs(descs, descs, descs);
    return plugin.configurePlugin(dynamic.data(), nbInputs, dynamic.data() + nbInputs, 1);
}

} // namespace

// Position by position from inOut[0..pos] only, as NvInferRuntime.h:998 (IPluginV3OneBuild::
// supportsFormatCombination, TensorRT 10.14) requires; in both modes.
SOFTMASK_TEST(supportsFormatCombinationAcceptsExactlyTheContractsTypes)
{
  for (bool const hardMask : {false, true})
  {
    SoftMaskedAttentionPlugin plugin = makePlugin(2, hardMask);
    for (int32_t const nbInputs : {5, 6})
    {
        size_t const nbTensors = static_cast<size_t>(nbInputs) + 1;
        std::vector<size_t> choice(nbTensors, 0);
        int32_t accepted = 0;
        // Every assignment of candidate types to every tensor (odometer over `choice`).
        while (true)
        {
            std::vector<DataType> types(nbTensors);
            for (size_t i = 0; i < nbTensors; ++i)
            {
                types[i] = kCANDIDATE_TYPES[choice[i]];
            }
            bool const expected = contractAllows(types, nbInputs, hardMask);
            bool const actual = pluginAcceptsAll(plugin, withTypes(types), nbInputs);
            if (expected != actual)
            {
                std::string text = "types";
                for (DataType type : types)
                {
                    text += std::string(" ") + softmask::plugin::dataTypeName(type);
                }
                ::softmask_test::fail(__FILE__, __LINE__,
                    text + (hardMask ? " (hard_mask = 1)" : "") + (expected ? ": rejected" : ": accepted"));
            }
            accepted += actual ? 1 : 0;
            size_t digit = 0;
            while (digit < nbTensors && ++choice[digit] == kCANDIDATE_TYPES.size())
            {
                choice[digit++] = 0;
            }
            if (digit == nbTensors)
            {
                break;
            }
        }
        // Soft: fp32 data: mask fp32|fp16, alpha fp32 (2); fp16 data: mask 2 x alpha fp32|fp16 (4).
        // Hard: the mask bool only: fp32 data (1), fp16 data: alpha fp32|fp16 (2).
        CHECK_EQ(accepted, hardMask ? 3 : 6);
    }
  }
}

SOFTMASK_TEST(supportsFormatCombinationRejectsNonLinearFormats)
{
    SoftMaskedAttentionPlugin plugin = makePlugin(2);
    std::vector<DataType> const types{
        DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kBOOL, DataType::kHALF};
    for (size_t pos = 0; pos < types.size(); ++pos)
    {
        std::vector<DynamicPluginTensorDesc> inOut = withTypes(types);
        CHECK(pluginAcceptsAll(plugin, inOut, 6));
        inOut[pos].desc.format = TensorFormat::kHWC8;
        CHECK(!plugin.supportsFormatCombination(static_cast<int32_t>(pos), inOut.data(), 6, 1));
    }
}

SOFTMASK_TEST(supportsFormatCombinationReadsOnlyUpToPos)
{
    SoftMaskedAttentionPlugin plugin = makePlugin(2);
    std::vector<DataType> const types{
        DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT, DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT};
    for (int32_t pos = 0; pos < 6; ++pos)
    {
        std::vector<DynamicPluginTensorDesc> inOut = withTypes(types);
        bool const before = plugin.supportsFormatCombination(pos, inOut.data(), 5, 1);
        // Entries after pos are not chosen yet when TensorRT asks; garbage there must not matter.
        for (size_t later = static_cast<size_t>(pos) + 1; later < inOut.size(); ++later)
        {
            inOut[later].desc.type = DataType::kINT64;
            inOut[later].desc.format = TensorFormat::kCHW32;
        }
        CHECK(before);
        CHECK_EQ(plugin.supportsFormatCombination(pos, inOut.data(), 5, 1), before);
    }
    std::vector<DynamicPluginTensorDesc> inOut = withTypes(types);
    CHECK(!plugin.supportsFormatCombination(6, inOut.data(), 5, 1));
    CHECK(!plugin.supportsFormatCombination(-1, inOut.data(), 5, 1));
    CHECK(!plugin.supportsFormatCombination(0, inOut.data(), 4, 1));
}

SOFTMASK_TEST(getOutputDataTypesFollowsTheQuery)
{
    SoftMaskedAttentionPlugin plugin = makePlugin(8);
    for (DataType const data : {DataType::kFLOAT, DataType::kHALF})
    {
        std::array<DataType, 6> const inputs{data, data, data, DataType::kFLOAT, DataType::kFLOAT, DataType::kBOOL};
        DataType output = DataType::kINT8;
        CHECK_EQ(plugin.getOutputDataTypes(&output, 1, inputs.data(), 6), 0);
        CHECK(output == data);
        output = DataType::kINT8;
        CHECK_EQ(plugin.getOutputDataTypes(&output, 1, inputs.data(), 5), 0);
        CHECK(output == data);
    }
    softmask_test::CapturedLog log;
    std::array<DataType, 5> const intQuery{
        DataType::kINT32, DataType::kINT32, DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT};
    DataType output = DataType::kFLOAT;
    CHECK(plugin.getOutputDataTypes(&output, 1, intQuery.data(), 5) != 0);
    CHECK_CONTAINS(log.logger().errorText(), "query (input 0) has type kINT32");
    CHECK(plugin.getOutputDataTypes(&output, 1, intQuery.data(), 4) != 0);
    CHECK_CONTAINS(log.logger().errorText(), "got 4");
}

SOFTMASK_TEST(getOutputShapesReturnsTheQueryShape)
{
    SoftMaskedAttentionPlugin plugin = makePlugin(8);
    softmask_test::FakeShapes shapes;
    softmask_test::UnusedExprBuilder builder;
    std::vector<nvinfer1::DimsExprs> inputs{shapes.exprs({-1, -1, 256}), shapes.exprs({-1, -1, 256}),
        shapes.exprs({-1, -1, 256}), shapes.exprs({-1, -1, -1}), shapes.exprs({8}), shapes.exprs({-1, -1})};
    for (int32_t const nbInputs : {5, 6})
    {
        nvinfer1::DimsExprs output{};
        CHECK_EQ(plugin.getOutputShapes(inputs.data(), nbInputs, nullptr, 0, &output, 1, builder), 0);
        CHECK_EQ(output.nbDims, 3);
        for (int32_t axis = 0; axis < 3; ++axis)
        {
            CHECK(output.d[axis] == inputs[0].d[axis]);
        }
    }
}

SOFTMASK_TEST(getOutputShapesRejectsShapesWithoutAKernel)
{
    struct Case
    {
        int32_t numHeads;
        std::vector<std::vector<int64_t>> dims;
        std::vector<std::string> fragments;
    };
    std::vector<Case> const cases{
        {8, {{-1, -1, 250}, {-1, -1, 250}, {-1, -1, 250}, {-1, -1, -1}, {8}}, {"E = 250", "not divisible", "num_heads = 8"}},
        {8, {{-1, -1, 384}, {-1, -1, 384}, {-1, -1, 384}, {-1, -1, -1}, {8}}, {"head dim D", "= 48", "16, 32, 64, 128"}},
        {8, {{-1, -1, 256}, {-1, -1, 128}, {-1, -1, 256}, {-1, -1, -1}, {8}}, {"E (embedding dim) differs", "key (input 1)"}},
        {8, {{-1, -1, 256}, {-1, -1, 256}, {-1, -1, 256}, {-1, -1, -1}, {4}}, {"alpha (input 4)", "4 elements", "num_heads = 8"}},
        {8, {{-1, 256}, {-1, -1, 256}, {-1, -1, 256}, {-1, -1, -1}, {8}}, {"query (input 0) must have rank 3", "[-1, 256]"}},
        {8, {{2, 5, 256}, {3, -1, 256}, {-1, -1, 256}, {-1, -1, -1}, {8}}, {"B (batch) differs", "query (input 0)", "key (input 1)"}},
        {8, {{-1, 5, 256}, {-1, -1, 256}, {-1, -1, 256}, {-1, 6, -1}, {8}}, {"I (queries) differs", "mask (input 3)"}},
        {8, {{-1, -1, 256}, {-1, 7, 256}, {-1, 9, 256}, {-1, -1, -1}, {8}}, {"S (keys) differs", "value (input 2)"}},
        {8, {{-1, -1, 256}, {-1, 7, 256}, {-1, -1, 256}, {-1, -1, -1}, {8}, {-1, 9}}, {"S (keys) differs", "key_padding_mask (input 5)"}},
    };
    for (Case const& testCase : cases)
    {
        SoftMaskedAttentionPlugin plugin = makePlugin(testCase.numHeads);
        softmask_test::FakeShapes shapes;
        softmask_test::UnusedExprBuilder builder;
        std::vector<nvinfer1::DimsExprs> inputs;
        for (std::vector<int64_t> const& extents : testCase.dims)
        {
            inputs.push_back(shapes.exprs(extents));
        }
        softmask_test::CapturedLog log;
        nvinfer1::DimsExprs output{};
        int32_t const status = plugin.getOutputShapes(
            inputs.data(), static_cast<int32_t>(inputs.size()), nullptr, 0, &output, 1, builder);
        CHECK(status != 0);
        CHECK_EQ(log.logger().errors().size(), size_t{1});
        for (std::string const& fragment : testCase.fragments)
        {
            CHECK_CONTAINS(log.logger().errorText(), fragment);
        }
    }
}

SOFTMASK_TEST(configurePluginAcceptsDynamicShapesAndRejectsMismatches)
{
    SoftMaskedAttentionPlugin plugin = makePlugin(8);
    AttentionShape const dynamic{-1, -1, -1, 256, 8};
    std::vector<PluginTensorDesc> descs
        = softmask_test::inOutDescs(dynamic, true, DataType::kHALF, DataType::kHALF, DataType::kFLOAT);
    CHECK_EQ(configure(plugin, descs, 6), 0);

    softmask_test::CapturedLog log;
    std::vector<PluginTensorDesc> wrongKeyType = descs;
    wrongKeyType[1].type = DataType::kFLOAT;
    CHECK(configure(plugin, wrongKeyType, 6) != 0);
    CHECK_CONTAINS(log.logger().errorText(), "key (input 1) has type kFLOAT");

    std::vector<PluginTensorDesc> wrongPaddingType = descs;
    wrongPaddingType[5].type = DataType::kUINT8;
    CHECK(configure(plugin, wrongPaddingType, 6) != 0);
    CHECK_CONTAINS(log.logger().errorText(), "key_padding_mask (input 5) has type kUINT8");

    std::vector<PluginTensorDesc> wrongHeadDim
        = softmask_test::inOutDescs({-1, -1, -1, 8 * 24, 8}, false, DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT);
    CHECK(configure(plugin, wrongHeadDim, 5) != 0);
    CHECK_CONTAINS(log.logger().errorText(), "= 24 has no kernel");
    CHECK_EQ(log.logger().errors().size(), size_t{3});
}

SOFTMASK_TEST(theMaskIsBoolExactlyInHardMode)
{
    AttentionShape const shape{-1, 100, -1, 256, 8}; // Mask2Former: 100 queries, D = 32
    std::vector<PluginTensorDesc> const boolMask
        = softmask_test::inOutDescs(shape, true, DataType::kHALF, DataType::kBOOL, DataType::kFLOAT);
    std::vector<PluginTensorDesc> const halfMask
        = softmask_test::inOutDescs(shape, true, DataType::kHALF, DataType::kHALF, DataType::kFLOAT);
    SoftMaskedAttentionPlugin hard = makePlugin(8, true);
    SoftMaskedAttentionPlugin soft = makePlugin(8, false);
    CHECK_EQ(configure(hard, boolMask, 6), 0); // also prepares the hard kernels (fake driver)

    softmask_test::CapturedLog log;
    CHECK(configure(soft, boolMask, 6) != 0);
    CHECK_CONTAINS(log.logger().errorText(), "mask (input 3) has type kBOOL");
    CHECK_CONTAINS(log.logger().errorText(), "kBOOL only with hard_mask = 1");
    CHECK(configure(hard, halfMask, 6) != 0);
    CHECK_CONTAINS(log.logger().errorText(), "mask (input 3) has type kHALF");
    CHECK_CONTAINS(log.logger().errorText(), "kBOOL (hard_mask = 1)");
    CHECK_EQ(log.logger().errors().size(), size_t{2});
}

SOFTMASK_TEST(onShapeChangeChecksTheRealShapes)
{
    SoftMaskedAttentionPlugin plugin = makePlugin(2);
    std::vector<PluginTensorDesc> good
        = softmask_test::inOutDescs({2, 5, 7, 64, 2}, true, DataType::kFLOAT, DataType::kHALF, DataType::kFLOAT);
    CHECK_EQ(plugin.onShapeChange(good.data(), 6, good.data() + 6, 1), 0);

    softmask_test::CapturedLog log;
    std::vector<PluginTensorDesc> bad = good;
    bad[3].dims.d[2] = 8; // mask's S disagrees with key's S
    CHECK(plugin.onShapeChange(bad.data(), 6, bad.data() + 6, 1) != 0);
    CHECK_CONTAINS(log.logger().errorText(), "S (keys) differs");
    CHECK_CONTAINS(log.logger().errorText(), "mask (input 3) [B, I, S] has 8 on axis 2");
}

SOFTMASK_TEST_MAIN()
