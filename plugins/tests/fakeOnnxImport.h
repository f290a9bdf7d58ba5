/*
 * How TensorRT's ONNX parser turns a node that names a plugin into a plugin object, as onnx-tensorrt
 * does it (onnxOpImporters.cpp: FallbackPluginImporter, loadFields, addPluginWithCreator; importerUtils.cpp:
 * getNodeName), reduced to what reaches the plugin:
 * - the creator is looked up by (op_type, attribute plugin_version or "1", attribute
 *   plugin_namespace or "") with IPluginRegistry::getCreator; those two attributes select the
 *   creator and are never passed to it;
 * - only attributes named by the creator's getFieldNames() become fields, in that order; a field
 *   without an attribute is skipped (the creator's default applies); INT becomes kINT32 of length 1
 *   (the int64 value narrowed), INTS kINT32 of length n, FLOAT(S) kFLOAT32, STRING kCHAR; an INT64
 *   or BOOL tensor attribute is an error;
 * - the plugin is created with TensorRTPhase::kBUILD and named after the node, or "node_of_<first
 *   output>" when the node has no name (that name becomes the layer's name).
 */
#ifndef SOFTMASK_PLUGIN_FAKE_ONNX_IMPORT_H
#define SOFTMASK_PLUGIN_FAKE_ONNX_IMPORT_H

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace softmask_test
{

struct OnnxAttribute
{
    enum class Kind
    {
        kINT,
        kINTS,
        kFLOAT,
        kSTRING,
        kINT64_TENSOR
    };
    std::string name;
    Kind kind;
    std::vector<int64_t> ints{};
    float floatValue{0.0F};
    std::string text{};
};

struct OnnxNode
{
    std::string opType;
    std::string name;
    std::string firstOutput;
    std::vector<OnnxAttribute> attributes;
};

struct ImportedPlugin
{
    std::unique_ptr<nvinfer1::IPluginV3> plugin;
    std::string layerName;
    std::string error; //!< the parser's error when plugin is null
};

inline OnnxAttribute const* findAttribute(OnnxNode const& node, char const* name)
{
    for (OnnxAttribute const& attribute : node.attributes)
    {
        if (attribute.name == name)
        {
            return &attribute;
        }
    }
    return nullptr;
}

inline ImportedPlugin importPluginNode(nvinfer1::IPluginRegistry& registry, OnnxNode const& node)
{
    ImportedPlugin result;
    result.layerName = node.name.empty() ? "node_of_" + node.firstOutput : node.name;
    OnnxAttribute const* version = findAttribute(node, "plugin_version");
    OnnxAttribute const* nameSpace = findAttribute(node, "plugin_namespace");
    nvinfer1::IPluginCreatorInterface* found = registry.getCreator(node.opType.c_str(),
        version == nullptr ? "1" : version->text.c_str(), nameSpace == nullptr ? "" : nameSpace->text.c_str());
    auto* creator = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(found);
    if (creator == nullptr)
    {
        result.error = "Plugin not found, are the plugin name, version, and namespace correct?";
        return result;
    }
    nvinfer1::PluginFieldCollection const* fieldNames = creator->getFieldNames();
    std::deque<std::vector<int32_t>> ints;
    std::deque<std::vector<float>> floats;
    std::vector<nvinfer1::PluginField> fields;
    for (int32_t i = 0; i < fieldNames->nbFields; ++i)
    {
        OnnxAttribute const* attribute = findAttribute(node, fieldNames->fields[i].name);
        if (attribute == nullptr)
        {
            continue;
        }
        char const* name = fieldNames->fields[i].name;
        switch (attribute->kind)
        {
        case OnnxAttribute::Kind::kINT:
        case OnnxAttribute::Kind::kINTS:
            ints.emplace_back(attribute->ints.begin(), attribute->ints.end()); // narrowed to int32
            fields.emplace_back(name, ints.back().data(), nvinfer1::PluginFieldType::kINT32,
                static_cast<int32_t>(ints.back().size()));
            break;
        case OnnxAttribute::Kind::kFLOAT:
            floats.push_back({attribute->floatValue});
            fields.emplace_back(name, floats.back().data(), nvinfer1::PluginFieldType::kFLOAT32, 1);
            break;
        case OnnxAttribute::Kind::kSTRING:
            fields.emplace_back(name, attribute->text.data(), nvinfer1::PluginFieldType::kCHAR,
                static_cast<int32_t>(attribute->text.size()));
            break;
        case OnnxAttribute::Kind::kINT64_TENSOR:
            result.error = "Tensor type: INT64 is unsupported in plugin fields.";
            return result;
        }
    }
    nvinfer1::PluginFieldCollection collection{static_cast<int32_t>(fields.size()), fields.data()};
    result.plugin.reset(creator->createPlugin(result.layerName.c_str(), &collection, nvinfer1::TensorRTPhase::kBUILD));
    if (result.plugin == nullptr)
    {
        result.error = "Could not create the plugin.";
    }
    return result;
}

//! The node softmask's exporter writes for one attention call (softmask/ops/onnx_op.py).
inline OnnxNode exportedNode(int64_t numHeads, std::string name = "SoftMaskedAttention_0")
{
    return OnnxNode{"SoftMaskedAttention", std::move(name), "attention_out",
        {OnnxAttribute{"num_heads", OnnxAttribute::Kind::kINT, {numHeads}},
            OnnxAttribute{"plugin_version", OnnxAttribute::Kind::kSTRING, {}, 0.0F, "1"},
            OnnxAttribute{"plugin_namespace", OnnxAttribute::Kind::kSTRING, {}, 0.0F, ""}}};
}

} // namespace softmask_test

#endif // SOFTMASK_PLUGIN_FAKE_ONNX_IMPORT_H
