/*
 * What TensorRT does with an IPluginV3 between the parser and enqueue, in TensorRT's order
 * (NvInferRuntime.h, IPluginV3One* and IPluginCreatorV3One), so host tests meet the plugin the way
 * a real engine does rather than the way its own code would like:
 *
 * build    the network keeps the plugin the parser created; the builder works on clones of it:
 *          getOutputDataTypes, getOutputShapes (dynamic axes unknown), supportsFormatCombination for
 *          each position, then, on a further clone, configurePlugin and getWorkspaceSize (for the
 *          profile's range); the engine stores a deep copy of getFieldsToSerialize(); every build
 *          object is destroyed afterwards.
 * runtime  deserialising looks the creator up again (getCreator) and calls createPlugin(kRUNTIME)
 *          with the stored fields only: nothing configured survives. Each execution context calls
 *          attachToContext and uses the clone it returns: onShapeChange with the real shapes, then
 *          enqueue with device pointers and a workspace of getWorkspaceSize's size.
 */
#ifndef SOFTMASK_PLUGIN_FAKE_ENGINE_H
#define SOFTMASK_PLUGIN_FAKE_ENGINE_H

#include "fakeTensorRT.h"
#include "tensorDescs.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace softmask_test
{

//! An optimisation profile from `minimum` to `maximum` (E and H fixed) with one set of types.
struct Profile
{
    AttentionShape minimum;
    AttentionShape maximum;
    bool withKeyPaddingMask;
    nvinfer1::DataType data;
    nvinfer1::DataType mask;
    nvinfer1::DataType alpha;

    int32_t nbInputs() const
    {
        return withKeyPaddingMask ? 6 : 5;
    }

    std::vector<nvinfer1::PluginTensorDesc> descs(AttentionShape const& shape) const
    {
        return inOutDescs(shape, withKeyPaddingMask, data, mask, alpha);
    }
};

//! The plugin's part of a serialised engine: its identity and a deep copy of its fields.
struct SerializedPlugin
{
    std::string name;
    std::string version;
    std::string nameSpace;
    size_t workspaceBytes{0};
    std::deque<std::string> fieldNames;
    std::deque<std::vector<unsigned char>> fieldData;
    std::vector<nvinfer1::PluginField> fields;

    nvinfer1::PluginFieldCollection collection() const
    {
        return nvinfer1::PluginFieldCollection{static_cast<int32_t>(fields.size()), fields.data()};
    }
};

inline size_t fieldTypeBytes(nvinfer1::PluginFieldType type)
{
    switch (type)
    {
    case nvinfer1::PluginFieldType::kFLOAT64:
    case nvinfer1::PluginFieldType::kINT64: return 8;
    case nvinfer1::PluginFieldType::kFLOAT32:
    case nvinfer1::PluginFieldType::kINT32: return 4;
    case nvinfer1::PluginFieldType::kFLOAT16:
    case nvinfer1::PluginFieldType::kBF16:
    case nvinfer1::PluginFieldType::kINT16: return 2;
    default: return 1;
    }
}

template <typename Capability>
Capability* capability(nvinfer1::IPluginV3& plugin, nvinfer1::PluginCapabilityType type)
{
    return static_cast<Capability*>(plugin.getCapabilityInterface(type));
}

//! Builds as TensorRT's builder does; returns false with `error` set when the plugin refuses.
inline bool buildEngine(nvinfer1::IPluginV3& networkPlugin, Profile const& profile, SerializedPlugin& engine, std::string& error)
{
    using nvinfer1::PluginCapabilityType;
    int32_t const nbInputs = profile.nbInputs();
    std::unique_ptr<nvinfer1::IPluginV3> analysed(networkPlugin.clone());
    if (analysed == nullptr)
    {
        error = "clone failed";
        return false;
    }
    auto* build = capability<nvinfer1::IPluginV3OneBuild>(*analysed, PluginCapabilityType::kBUILD);

    AttentionShape const dynamic{-1, -1, -1, profile.maximum.embed, profile.maximum.heads};
    std::vector<nvinfer1::PluginTensorDesc> const symbolic = profile.descs(dynamic);
    std::vector<nvinfer1::DataType> inputTypes;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        inputTypes.push_back(symbolic[static_cast<size_t>(i)].type);
    }
    nvinfer1::DataType outputType{};
    if (build->getOutputDataTypes(&outputType, 1, inputTypes.data(), nbInputs) != 0)
    {
        error = "getOutputDataTypes failed";
        return false;
    }
    FakeShapes shapes;
    std::vector<nvinfer1::DimsExprs> inputShapes;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        nvinfer1::Dims const& dims = symbolic[static_cast<size_t>(i)].dims;
        inputShapes.push_back(shapes.exprs(std::vector<int64_t>(dims.d, dims.d + dims.nbDims)));
    }
    nvinfer1::DimsExprs outputShape{};
    UnusedExprBuilder exprBuilder;
    if (build->getOutputShapes(inputShapes.data(), nbInputs, nullptr, 0, &outputShape, 1, exprBuilder) != 0)
    {
        error = "getOutputShapes failed";
        return false;
    }
    std::vector<nvinfer1::DynamicPluginTensorDesc> range
        = dynamicDescs(symbolic, profile.descs(profile.minimum), profile.descs(profile.maximum));
    for (int32_t pos = 0; pos < nbInputs + 1; ++pos)
    {
        if (!build->supportsFormatCombination(pos, range.data(), nbInputs, 1))
        {
            error = "supportsFormatCombination refused position " + std::to_string(pos);
            return false;
        }
    }

    std::unique_ptr<nvinfer1::IPluginV3> tuned(analysed->clone());
    auto* tunedBuild = capability<nvinfer1::IPluginV3OneBuild>(*tuned, PluginCapabilityType::kBUILD);
    if (tunedBuild->configurePlugin(range.data(), nbInputs, range.data() + nbInputs, 1) != 0)
    {
        error = "configurePlugin failed";
        return false;
    }
    engine.workspaceBytes = tunedBuild->getWorkspaceSize(range.data(), nbInputs, range.data() + nbInputs, 1);

    auto* core = capability<nvinfer1::IPluginV3OneCore>(*tuned, PluginCapabilityType::kCORE);
    engine.name = core->getPluginName();
    engine.version = core->getPluginVersion();
    engine.nameSpace = core->getPluginNamespace();
    nvinfer1::PluginFieldCollection const* fields
        = capability<nvinfer1::IPluginV3OneRuntime>(*tuned, PluginCapabilityType::kRUNTIME)->getFieldsToSerialize();
    for (int32_t i = 0; fields != nullptr && i < fields->nbFields; ++i)
    {
        nvinfer1::PluginField const& field = fields->fields[i];
        auto const* bytes = static_cast<unsigned char const*>(field.data);
        engine.fieldNames.emplace_back(field.name);
        engine.fieldData.emplace_back(bytes, bytes + fieldTypeBytes(field.type) * static_cast<size_t>(field.length));
        engine.fields.emplace_back(engine.fieldNames.back().c_str(), engine.fieldData.back().data(), field.type, field.length);
    }
    return true;
}

//! Deserialises the plugin of `engine` (createPlugin with kRUNTIME); null when the creator is missing.
inline std::unique_ptr<nvinfer1::IPluginV3> deserializePlugin(nvinfer1::IPluginRegistry& registry, SerializedPlugin const& engine)
{
    auto* creator = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(
        registry.getCreator(engine.name.c_str(), engine.version.c_str(), engine.nameSpace.c_str()));
    if (creator == nullptr)
    {
        return nullptr;
    }
    nvinfer1::PluginFieldCollection const fields = engine.collection();
    return std::unique_ptr<nvinfer1::IPluginV3>(creator->createPlugin("layer", &fields, nvinfer1::TensorRTPhase::kRUNTIME));
}

//! One execution context's plugin and the buffers of a run (host memory; the fake CUDA runtime
//! never reads it).
class ExecutionContext
{
public:
    explicit ExecutionContext(nvinfer1::IPluginV3& enginePlugin)
        : mPlugin(capability<nvinfer1::IPluginV3OneRuntime>(enginePlugin, nvinfer1::PluginCapabilityType::kRUNTIME)
                      ->attachToContext(nullptr))
    {
    }

    nvinfer1::IPluginV3OneRuntime& runtime()
    {
        return *capability<nvinfer1::IPluginV3OneRuntime>(*mPlugin, nvinfer1::PluginCapabilityType::kRUNTIME);
    }

    //! setInputShape: TensorRT calls onShapeChange with the real shapes.
    int32_t setShapes(Profile const& profile, AttentionShape const& shape)
    {
        mDescs = profile.descs(shape);
        mNbInputs = profile.nbInputs();
        return runtime().onShapeChange(mDescs.data(), mNbInputs, mDescs.data() + mNbInputs, 1);
    }

    int32_t enqueue(size_t workspaceBytes)
    {
        std::vector<void const*> inputs;
        for (int32_t i = 0; i < mNbInputs; ++i)
        {
            inputs.push_back(buffer());
        }
        void* outputs[] = {buffer()};
        return runtime().enqueue(mDescs.data(), mDescs.data() + mNbInputs, inputs.data(), outputs,
            workspaceBytes == 0 ? nullptr : buffer(workspaceBytes), nullptr);
    }

private:
    void* buffer(size_t bytes = 1 << 16)
    {
        mBuffers.emplace_back(std::aligned_alloc(256, (bytes + 255) / 256 * 256), &std::free);
        return mBuffers.back().get();
    }

    std::unique_ptr<nvinfer1::IPluginV3> mPlugin;
    std::vector<nvinfer1::PluginTensorDesc> mDescs;
    int32_t mNbInputs{0};
    std::vector<std::unique_ptr<void, decltype(&std::free)>> mBuffers;
};

} // namespace softmask_test

#endif // SOFTMASK_PLUGIN_FAKE_ENGINE_H
