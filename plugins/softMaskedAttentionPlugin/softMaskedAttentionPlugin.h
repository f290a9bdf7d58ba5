/*
 * SoftMaskedAttention: a TensorRT IPluginV3 plugin running the fused soft-masked attention kernel.
 *
 *   out = softmax_s(q.k / sqrt(D) - alpha[h] * (1 - M)) v   per batch, head, query
 * (contract: docs/ops.md; inputs, types and shapes:
 * softMaskedAttentionContract.h). Name "SoftMaskedAttention", version "1", namespace "".
 * Fields: num_heads (kINT32, required), num_splits (kINT32, default 0 = automatic), hard_mask
 * (kINT32, default 0; 1 = hard mode: Mask2Former's masked attention with a kBOOL mask).
 */
#ifndef SOFTMASK_SOFT_MASKED_ATTENTION_PLUGIN_H
#define SOFTMASK_SOFT_MASKED_ATTENTION_PLUGIN_H

#include "softMaskedAttentionContract.h"

#include <NvInferRuntime.h>

#include <vector>

namespace softmask
{
namespace plugin
{

constexpr char const* kSOFT_MASKED_ATTENTION_NAME = "SoftMaskedAttention";
constexpr char const* kSOFT_MASKED_ATTENTION_VERSION = "1";
constexpr char const* kSOFT_MASKED_ATTENTION_NAMESPACE = "";
constexpr char const* kFIELD_NUM_HEADS = "num_heads";
constexpr char const* kFIELD_NUM_SPLITS = "num_splits";
constexpr char const* kFIELD_HARD_MASK = "hard_mask"; //!< the ONNX node's attribute of that name

class SoftMaskedAttentionPlugin final : public nvinfer1::IPluginV3,
                                        public nvinfer1::IPluginV3OneCore,
                                        public nvinfer1::IPluginV3OneBuild,
                                        public nvinfer1::IPluginV3OneRuntime
{
public:
    //! Throws PluginError when the fields are invalid (see validateFields).
    explicit SoftMaskedAttentionPlugin(SoftMaskedAttentionFields const& fields);
    SoftMaskedAttentionPlugin(SoftMaskedAttentionPlugin const& other);
    SoftMaskedAttentionPlugin& operator=(SoftMaskedAttentionPlugin const&) = delete;
    ~SoftMaskedAttentionPlugin() override = default;

    SoftMaskedAttentionFields const& fields() const noexcept
    {
        return mFields;
    }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    //! Points mSerializedCollection at this object's field values (called by the constructors).
    void bindSerializedFields();

    SoftMaskedAttentionFields mFields;
    //! Number of inputs (5 or 6) of the network layer; enqueue is not told, the shape callbacks are.
    int32_t mNbInputs{0};
    std::vector<nvinfer1::PluginField> mSerializedFields;
    nvinfer1::PluginFieldCollection mSerializedCollection{};
};

class SoftMaskedAttentionPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    SoftMaskedAttentionPluginCreator();
    ~SoftMaskedAttentionPluginCreator() override = default;

    //! Creates the plugin from fields (at build time from the ONNX attributes, at engine load time
    //! from getFieldsToSerialize). Returns nullptr after logging why when a field is missing or invalid.
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

//! Fields read from a collection: num_heads required, num_splits and hard_mask default to 0; unknown fields are
//! ignored with a warning. Throws PluginError naming the field at fault.
SoftMaskedAttentionFields parseSoftMaskedAttentionFields(nvinfer1::PluginFieldCollection const* fc);

} // namespace plugin
} // namespace softmask

#endif // SOFTMASK_SOFT_MASKED_ATTENTION_PLUGIN_H
