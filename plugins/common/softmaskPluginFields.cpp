#include "softmaskPluginFields.h"

#include "softmaskPluginChecks.h"

#include <algorithm>
#include <cstring>

namespace softmask
{
namespace plugin
{
namespace
{

nvinfer1::PluginFieldCollection const& checkedCollection(nvinfer1::PluginFieldCollection const* fc)
{
    SOFTMASK_PLUGIN_VALIDATE(fc != nullptr, "the PluginFieldCollection is null");
    SOFTMASK_PLUGIN_VALIDATE(fc->nbFields >= 0, "the PluginFieldCollection has nbFields=" << fc->nbFields);
    SOFTMASK_PLUGIN_VALIDATE(fc->nbFields == 0 || fc->fields != nullptr,
        "the PluginFieldCollection has nbFields=" << fc->nbFields << " but a null fields pointer");
    return *fc;
}

} // namespace

char const* fieldTypeName(nvinfer1::PluginFieldType type) noexcept
{
    // Only enumerators that older TensorRT 10 headers (e.g. JetPack's 10.3) also declare; newer ones
    // such as kFP4 get the generic text.
    using nvinfer1::PluginFieldType;
    switch (type)
    {
    case PluginFieldType::kFLOAT16: return "kFLOAT16";
    case PluginFieldType::kFLOAT32: return "kFLOAT32";
    case PluginFieldType::kFLOAT64: return "kFLOAT64";
    case PluginFieldType::kINT8: return "kINT8";
    case PluginFieldType::kINT16: return "kINT16";
    case PluginFieldType::kINT32: return "kINT32";
    case PluginFieldType::kCHAR: return "kCHAR";
    case PluginFieldType::kDIMS: return "kDIMS";
    case PluginFieldType::kUNKNOWN: return "kUNKNOWN";
    default: return "another PluginFieldType (not kINT32)";
    }
}

PluginFieldReader::PluginFieldReader(nvinfer1::PluginFieldCollection const* fc)
    : mFields(checkedCollection(fc))
{
}

nvinfer1::PluginField const* PluginFieldReader::find(char const* name) const
{
    for (int32_t i = 0; i < mFields.nbFields; ++i)
    {
        nvinfer1::PluginField const& field = mFields.fields[i];
        if (field.name != nullptr && std::strcmp(field.name, name) == 0)
        {
            return &field;
        }
    }
    return nullptr;
}

std::optional<int32_t> PluginFieldReader::int32Scalar(char const* name) const
{
    nvinfer1::PluginField const* field = find(name);
    if (field == nullptr)
    {
        return std::nullopt;
    }
    SOFTMASK_PLUGIN_VALIDATE(field->type == nvinfer1::PluginFieldType::kINT32,
        "field '" << name << "' must be kINT32 (an ONNX INT attribute), got " << fieldTypeName(field->type));
    SOFTMASK_PLUGIN_VALIDATE(
        field->length == 1, "field '" << name << "' must hold exactly 1 value, got length " << field->length);
    SOFTMASK_PLUGIN_VALIDATE(field->data != nullptr, "field '" << name << "' has no data");
    int32_t value{};
    std::memcpy(&value, field->data, sizeof(value));
    return value;
}

std::vector<std::string> PluginFieldReader::unknownNames(std::vector<std::string> const& known) const
{
    std::vector<std::string> unknown;
    for (int32_t i = 0; i < mFields.nbFields; ++i)
    {
        char const* name = mFields.fields[i].name;
        std::string const text = name == nullptr ? std::string("(null name)") : std::string(name);
        if (std::find(known.begin(), known.end(), text) == known.end())
        {
            unknown.push_back(text);
        }
    }
    return unknown;
}

} // namespace plugin
} // namespace softmask
