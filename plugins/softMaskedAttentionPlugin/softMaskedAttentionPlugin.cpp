#include "softMaskedAttentionPlugin.h"

#include "softmaskPluginChecks.h"
#include "softmaskPluginFields.h"
#include "softmaskPluginLogging.h"

#include <optional>
#include <string>

namespace softmask
{
namespace plugin
{
namespace
{

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginTensorDesc;

//! Copies the `desc` members so the shared contract checks see one array of plain descriptions.
std::vector<PluginTensorDesc> plainDescs(DynamicPluginTensorDesc const* in, int32_t nbInputs,
    DynamicPluginTensorDesc const* out, int32_t nbOutputs)
{
    SOFTMASK_PLUGIN_VALIDATE(in != nullptr && out != nullptr, "tensor descriptions are null");
    std::vector<PluginTensorDesc> descs;
    descs.reserve(static_cast<size_t>(nbInputs + nbOutputs));
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        descs.push_back(in[i].desc);
    }
    for (int32_t i = 0; i < nbOutputs; ++i)
    {
        descs.push_back(out[i].desc);
    }
    return descs;
}

std::vector<Dims> inputDims(PluginTensorDesc const* descs, int32_t nbInputs)
{
    std::vector<Dims> dims;
    dims.reserve(static_cast<size_t>(nbInputs));
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        dims.push_back(descs[i].dims);
    }
    return dims;
}

//! Loads the fused kernels these tensors need on the current device now, so that enqueue never
//! loads (or JIT-compiles) anything: the first frame is not slowed and CUDA graph capture is safe.
void prepareKernels(PluginTensorDesc const* inputDesc, SoftMaskedAttentionFields const& fields)
{
    std::optional<KernelChoice> const choice = kernelChoiceFor(inputDesc, fields);
    if (!choice)
    {
        return; // E not known yet; onShapeChange prepares with the real dims
    }
    int32_t const status = softmask_sma_prepare(choice->dtype, choice->maskDtype, choice->headDim);
    SOFTMASK_PLUGIN_VALIDATE(status == SOFTMASK_STATUS_SUCCESS,
        "loading the fused kernels (head dim " << choice->headDim << ") failed: " << softmask_status_string(status));
}

} // namespace

SoftMaskedAttentionFields parseSoftMaskedAttentionFields(nvinfer1::PluginFieldCollection const* fc)
{
    PluginFieldReader const reader(fc);
    std::optional<int32_t> const numHeads = reader.int32Scalar(kFIELD_NUM_HEADS);
    SOFTMASK_PLUGIN_VALIDATE(numHeads.has_value(),
        "required field '" << kFIELD_NUM_HEADS << "' (kINT32, the number of attention heads) is missing");
    for (std::string const& name : reader.unknownNames({kFIELD_NUM_HEADS, kFIELD_NUM_SPLITS, kFIELD_HARD_MASK}))
    {
        logWarning(std::string(kSOFT_MASKED_ATTENTION_NAME) + ": ignoring unknown field '" + name + "'");
    }
    SoftMaskedAttentionFields fields;
    fields.numHeads = *numHeads;
    fields.numSplits = reader.int32Scalar(kFIELD_NUM_SPLITS).value_or(0);
    // Absent in soft-mode nodes (the exporter writes it only when set) and in engines serialised
    // before the hard mode existed.
    fields.hardMask = reader.int32Scalar(kFIELD_HARD_MASK).value_or(0);
    validateFields(fields);
    return fields;
}

SoftMaskedAttentionPlugin::SoftMaskedAttentionPlugin(SoftMaskedAttentionFields const& fields)
    : mFields(fields)
{
    validateFields(mFields);
    bindSerializedFields();
}

SoftMaskedAttentionPlugin::SoftMaskedAttentionPlugin(SoftMaskedAttentionPlugin const& other)
    : nvinfer1::IPluginV3(other)
    , nvinfer1::IPluginV3OneCore(other)
    , nvinfer1::IPluginV3OneBuild(other)
    , nvinfer1::IPluginV3OneRuntime(other)
    , mFields(other.mFields)
    , mNbInputs(other.mNbInputs)
{
    // The serialised fields point into this object's members, never into the source's.
    bindSerializedFields();
}

void SoftMaskedAttentionPlugin::bindSerializedFields()
{
    mSerializedFields.clear();
    mSerializedFields.emplace_back(kFIELD_NUM_HEADS, &mFields.numHeads, nvinfer1::PluginFieldType::kINT32, 1);
    mSerializedFields.emplace_back(kFIELD_NUM_SPLITS, &mFields.numSplits, nvinfer1::PluginFieldType::kINT32, 1);
    mSerializedFields.emplace_back(kFIELD_HARD_MASK, &mFields.hardMask, nvinfer1::PluginFieldType::kINT32, 1);
    mSerializedCollection.nbFields = static_cast<int32_t>(mSerializedFields.size());
    mSerializedCollection.fields = mSerializedFields.data();
}

nvinfer1::IPluginCapability* SoftMaskedAttentionPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept
{
    return callGuarded<nvinfer1::IPluginCapability*>("SoftMaskedAttention::getCapabilityInterface", nullptr, [&]() {
        switch (type)
        {
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginCapability*>(
            static_cast<nvinfer1::IPluginV3OneCore*>(this));
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginCapability*>(
            static_cast<nvinfer1::IPluginV3OneBuild*>(this));
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginCapability*>(
            static_cast<nvinfer1::IPluginV3OneRuntime*>(this));
        }
        throw PluginError("unknown PluginCapabilityType " + std::to_string(static_cast<int32_t>(type)));
    });
}

nvinfer1::IPluginV3* SoftMaskedAttentionPlugin::clone() noexcept
{
    return callGuarded<nvinfer1::IPluginV3*>(
        "SoftMaskedAttention::clone", nullptr, [&]() { return new SoftMaskedAttentionPlugin(*this); });
}

char const* SoftMaskedAttentionPlugin::getPluginName() const noexcept
{
    return kSOFT_MASKED_ATTENTION_NAME;
}

char const* SoftMaskedAttentionPlugin::getPluginVersion() const noexcept
{
    return kSOFT_MASKED_ATTENTION_VERSION;
}

char const* SoftMaskedAttentionPlugin::getPluginNamespace() const noexcept
{
    return kSOFT_MASKED_ATTENTION_NAMESPACE;
}

int32_t SoftMaskedAttentionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return callGuarded("SoftMaskedAttention::configurePlugin", kSTATUS_FAILURE, [&]() {
        validateIoCount(nbInputs, nbOutputs);
        std::vector<PluginTensorDesc> const descs = plainDescs(in, nbInputs, out, nbOutputs);
        validateTypesAndFormats(descs.data(), nbInputs, nbOutputs, mFields.hardMask != 0);
        // Dynamic extents are -1 here; the checks compare only the known ones.
        validateInputDims(inputDims(descs.data(), nbInputs).data(), nbInputs, mFields.numHeads);
        prepareKernels(descs.data(), mFields);
        mNbInputs = nbInputs;
        return kSTATUS_SUCCESS;
    });
}

int32_t SoftMaskedAttentionPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return callGuarded("SoftMaskedAttention::getOutputDataTypes", kSTATUS_FAILURE, [&]() {
        validateIoCount(nbInputs, nbOutputs);
        SOFTMASK_PLUGIN_VALIDATE(outputTypes != nullptr, "output types are null");
        outputTypes[0] = outputDataType(inputTypes, nbInputs);
        return kSTATUS_SUCCESS;
    });
}

int32_t SoftMaskedAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    return callGuarded("SoftMaskedAttention::getOutputShapes", kSTATUS_FAILURE, [&]() {
        validateIoCount(nbInputs, nbOutputs);
        SOFTMASK_PLUGIN_VALIDATE(nbShapeInputs == 0, "expected no shape inputs, got " << nbShapeInputs);
        SOFTMASK_PLUGIN_VALIDATE(inputs != nullptr && outputs != nullptr, "shape expressions are null");
        // Build-time constants are checked now so a wrong model fails when the network is built.
        std::vector<Dims> known(static_cast<size_t>(nbInputs));
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            SOFTMASK_PLUGIN_VALIDATE(inputs[i].nbDims >= 0 && inputs[i].nbDims <= Dims::MAX_DIMS,
                tensorName(i, nbInputs) << " has rank " << inputs[i].nbDims);
            known[i].nbDims = inputs[i].nbDims;
            for (int32_t axis = 0; axis < inputs[i].nbDims; ++axis)
            {
                nvinfer1::IDimensionExpr const* extent = inputs[i].d[axis];
                known[i].d[axis] = extent != nullptr && extent->isConstant() ? extent->getConstantValue() : -1;
            }
        }
        validateInputDims(known.data(), nbInputs, mFields.numHeads);
        outputs[0] = inputs[kQUERY];
        return kSTATUS_SUCCESS;
    });
}

bool SoftMaskedAttentionPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return callGuarded("SoftMaskedAttention::supportsFormatCombination", false, [&]() {
        if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
        {
            return false;
        }
        // Only inOut[0..pos] may be read: copy exactly those.
        std::vector<PluginTensorDesc> descs;
        descs.reserve(static_cast<size_t>(pos + 1));
        for (int32_t i = 0; i <= pos; ++i)
        {
            descs.push_back(inOut[i].desc);
        }
        return supportsCombination(pos, descs.data(), nbInputs, nbOutputs, mFields.hardMask != 0);
    });
}

int32_t SoftMaskedAttentionPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

size_t SoftMaskedAttentionPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const* inputs, int32_t nbInputs, DynamicPluginTensorDesc const* /*outputs*/,
    int32_t nbOutputs) const noexcept
{
    return callGuarded("SoftMaskedAttention::getWorkspaceSize", size_t{0}, [&]() {
        validateIoCount(nbInputs, nbOutputs);
        SOFTMASK_PLUGIN_VALIDATE(inputs != nullptr, "input descriptions are null");
        // The engine allocates once for the whole profile: size for its largest shapes.
        return workspaceBytesForMaxDims(inputs[kQUERY].max, inputs[kKEY].max, mFields.numHeads);
    });
}

int32_t SoftMaskedAttentionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return callGuarded("SoftMaskedAttention::onShapeChange", kSTATUS_FAILURE, [&]() {
        validateIoCount(nbInputs, nbOutputs);
        SOFTMASK_PLUGIN_VALIDATE(in != nullptr && out != nullptr, "tensor descriptions are null");
        std::vector<PluginTensorDesc> descs(in, in + nbInputs);
        descs.insert(descs.end(), out, out + nbOutputs);
        validateTypesAndFormats(descs.data(), nbInputs, nbOutputs, mFields.hardMask != 0);
        validateInputDims(inputDims(descs.data(), nbInputs).data(), nbInputs, mFields.numHeads);
        prepareKernels(descs.data(), mFields);
        mNbInputs = nbInputs;
        return kSTATUS_SUCCESS;
    });
}

int32_t SoftMaskedAttentionPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    return callGuarded("SoftMaskedAttention::enqueue", kSTATUS_FAILURE, [&]() {
        SOFTMASK_PLUGIN_VALIDATE(mNbInputs != 0, "enqueue called before configurePlugin or onShapeChange");
        SoftmaskSmaParams const params = makeSmaParams(inputDesc, mNbInputs, inputs, outputs, workspace, mFields);
        if (params.batch == 0 || params.num_queries == 0)
        {
            return kSTATUS_SUCCESS; // empty output: nothing to compute
        }
        // S = 0 is passed on: the launcher zero-fills the output (every key missing), the same rule
        // as for fully padded rows.
        int32_t const status = softmask_sma_forward(&params, stream);
        SOFTMASK_PLUGIN_VALIDATE(status == SOFTMASK_STATUS_SUCCESS,
            "softmask_sma_forward failed (B=" << params.batch << ", I=" << params.num_queries << ", S="
                                              << params.num_keys << ", H=" << params.num_heads << ", D="
                                              << params.head_dim << "): " << softmask_status_string(status));
        return kSTATUS_SUCCESS;
    });
}

nvinfer1::IPluginV3* SoftMaskedAttentionPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    // Each execution context gets its own copy; the plugin holds no per-context resources.
    return clone();
}

nvinfer1::PluginFieldCollection const* SoftMaskedAttentionPlugin::getFieldsToSerialize() noexcept
{
    // Bound to this object's members in the constructors; nothing to allocate here.
    return &mSerializedCollection;
}

SoftMaskedAttentionPluginCreator::SoftMaskedAttentionPluginCreator()
{
    mFieldNames.emplace_back(kFIELD_NUM_HEADS, nullptr, nvinfer1::PluginFieldType::kINT32, 1);
    mFieldNames.emplace_back(kFIELD_NUM_SPLITS, nullptr, nvinfer1::PluginFieldType::kINT32, 1);
    mFieldNames.emplace_back(kFIELD_HARD_MASK, nullptr, nvinfer1::PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

nvinfer1::IPluginV3* SoftMaskedAttentionPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    // Build and runtime phases read the same fields: getFieldsToSerialize writes exactly these.
    std::string const where
        = std::string("SoftMaskedAttention createPlugin (layer '") + (name == nullptr ? "" : name) + "')";
    return callGuarded<nvinfer1::IPluginV3*>(where.c_str(), nullptr,
        [&]() { return new SoftMaskedAttentionPlugin(parseSoftMaskedAttentionFields(fc)); });
}

nvinfer1::PluginFieldCollection const* SoftMaskedAttentionPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

char const* SoftMaskedAttentionPluginCreator::getPluginName() const noexcept
{
    return kSOFT_MASKED_ATTENTION_NAME;
}

char const* SoftMaskedAttentionPluginCreator::getPluginVersion() const noexcept
{
    return kSOFT_MASKED_ATTENTION_VERSION;
}

char const* SoftMaskedAttentionPluginCreator::getPluginNamespace() const noexcept
{
    return kSOFT_MASKED_ATTENTION_NAMESPACE;
}

} // namespace plugin
} // namespace softmask
