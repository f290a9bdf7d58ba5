/*
 * Building PluginTensorDesc / DynamicPluginTensorDesc values for the plugin's five or six inputs
 * and one output, as TensorRT would pass them.
 */
#ifndef SOFTMASK_PLUGIN_TEST_TENSOR_DESCS_H
#define SOFTMASK_PLUGIN_TEST_TENSOR_DESCS_H

#include <NvInferRuntime.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace softmask_test
{

inline nvinfer1::Dims makeDims(std::initializer_list<int64_t> extents)
{
    nvinfer1::Dims dims{};
    dims.nbDims = static_cast<int32_t>(extents.size());
    int32_t axis = 0;
    for (int64_t extent : extents)
    {
        dims.d[axis++] = extent;
    }
    return dims;
}

inline nvinfer1::PluginTensorDesc makeDesc(nvinfer1::Dims const& dims, nvinfer1::DataType type,
    nvinfer1::TensorFormat format = nvinfer1::TensorFormat::kLINEAR)
{
    nvinfer1::PluginTensorDesc desc{};
    desc.dims = dims;
    desc.type = type;
    desc.format = format;
    desc.scale = 1.0F;
    return desc;
}

//! Sizes of one call: B, I, S, E and H (alpha's length).
struct AttentionShape
{
    int64_t batch;
    int64_t queries;
    int64_t keys;
    int64_t embed;
    int64_t heads;
};

//! Input dims in the plugin's order (5 or 6 inputs) for one shape; -1 entries stay dynamic.
inline std::vector<nvinfer1::Dims> inputDimsFor(AttentionShape const& s, bool withKeyPaddingMask)
{
    std::vector<nvinfer1::Dims> dims{makeDims({s.batch, s.queries, s.embed}), makeDims({s.batch, s.keys, s.embed}),
        makeDims({s.batch, s.keys, s.embed}), makeDims({s.batch, s.queries, s.keys}), makeDims({s.heads})};
    if (withKeyPaddingMask)
    {
        dims.push_back(makeDims({s.batch, s.keys}));
    }
    return dims;
}

//! Inputs followed by the output, with the given data types (query, mask, alpha) and linear format.
inline std::vector<nvinfer1::PluginTensorDesc> inOutDescs(AttentionShape const& s, bool withKeyPaddingMask,
    nvinfer1::DataType dataType, nvinfer1::DataType maskType, nvinfer1::DataType alphaType)
{
    std::vector<nvinfer1::Dims> const dims = inputDimsFor(s, withKeyPaddingMask);
    std::vector<nvinfer1::PluginTensorDesc> descs{makeDesc(dims[0], dataType), makeDesc(dims[1], dataType),
        makeDesc(dims[2], dataType), makeDesc(dims[3], maskType), makeDesc(dims[4], alphaType)};
    if (withKeyPaddingMask)
    {
        descs.push_back(makeDesc(dims[5], nvinfer1::DataType::kBOOL));
    }
    descs.push_back(makeDesc(dims[0], dataType));
    return descs;
}

//! Build-time descriptions: desc.dims dynamic where min != max, plus min/opt/max per tensor.
inline std::vector<nvinfer1::DynamicPluginTensorDesc> dynamicDescs(std::vector<nvinfer1::PluginTensorDesc> const& plain,
    std::vector<nvinfer1::PluginTensorDesc> const& minimum, std::vector<nvinfer1::PluginTensorDesc> const& maximum)
{
    std::vector<nvinfer1::DynamicPluginTensorDesc> result(plain.size());
    for (size_t i = 0; i < plain.size(); ++i)
    {
        result[i].desc = plain[i];
        result[i].min = minimum[i].dims;
        result[i].opt = maximum[i].dims;
        result[i].max = maximum[i].dims;
    }
    return result;
}

} // namespace softmask_test

#endif // SOFTMASK_PLUGIN_TEST_TENSOR_DESCS_H
