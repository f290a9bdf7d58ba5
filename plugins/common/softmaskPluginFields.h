/*
 * Reading plugin fields (the attributes a creator receives in a PluginFieldCollection).
 *
 * The ONNX parser turns INT attributes into kINT32 fields of length 1; the same collection comes
 * back at engine load time from IPluginV3OneRuntime::getFieldsToSerialize. Readers check the type
 * and length of each field and name the field in the error, because a mismatch here usually means
 * an exporter wrote the attribute with the wrong ONNX type.
 */
#ifndef SOFTMASK_PLUGIN_FIELDS_H
#define SOFTMASK_PLUGIN_FIELDS_H

#include <NvInferRuntime.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace softmask
{
namespace plugin
{

//! Name of a PluginFieldType for messages ("kINT32", "kFLOAT32", ...).
char const* fieldTypeName(nvinfer1::PluginFieldType type) noexcept;

//! Looks up fields of one collection by name. The collection must outlive the reader.
class PluginFieldReader
{
public:
    //! Throws PluginError when fc is null or claims fields it does not hold.
    explicit PluginFieldReader(nvinfer1::PluginFieldCollection const* fc);

    //! Value of the scalar kINT32 field `name`, or nullopt when absent.
    //! Throws PluginError when present with another type, a length other than 1, or no data.
    std::optional<int32_t> int32Scalar(char const* name) const;

    //! Names of fields that are not in `known` (for a warning: they are ignored).
    std::vector<std::string> unknownNames(std::vector<std::string> const& known) const;

private:
    nvinfer1::PluginField const* find(char const* name) const;

    nvinfer1::PluginFieldCollection const& mFields;
};

} // namespace plugin
} // namespace softmask

#endif // SOFTMASK_PLUGIN_FIELDS_H
