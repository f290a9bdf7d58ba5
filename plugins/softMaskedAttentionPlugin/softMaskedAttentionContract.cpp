#include "softMaskedAttentionContract.h"

#include "softmaskPluginChecks.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>

namespace softmask
{
namespace plugin
{
namespace
{

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

constexpr int32_t kINPUT_RANKS[kMAX_INPUTS] = {3, 3, 3, 3, 1, 2};
constexpr char const* kINPUT_LAYOUTS[kMAX_INPUTS] = {"[B, I, E]", "[B, S, E]", "[B, S, E]", "[B, I, S]", "[H]", "[B, S]"};
constexpr int32_t kSUPPORTED_HEAD_DIMS[] = {16, 32, 64, 128};

bool isFloatOrHalf(DataType type) noexcept
{
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

char const* supportedTypesText(int32_t pos, int32_t nbInputs, bool hardMask) noexcept
{
    if (pos == nbInputs)
    {
        return "the query's type";
    }
    switch (pos)
    {
    case kQUERY: return "kFLOAT or kHALF";
    case kKEY:
    case kVALUE: return "the query's type";
    case kMASK: return hardMask ? "kBOOL (hard_mask = 1)" : "kFLOAT or kHALF (kBOOL only with hard_mask = 1)";
    case kALPHA: return "kFLOAT or the query's type";
    case kKEY_PADDING_MASK: return "kBOOL";
    default: return "nothing (no such tensor)";
    }
}

std::string dimsText(Dims const& dims)
{
    std::ostringstream text;
    text << '[';
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        text << (i == 0 ? "" : ", ") << dims.d[i];
    }
    text << ']';
    return text.str();
}

//! Checks that every known (non-negative) extent added for one symbol (B, I, S or E) is equal.
class ExtentAgreement
{
public:
    ExtentAgreement(char const* symbol, int32_t nbInputs)
        : mSymbol(symbol)
        , mNbInputs(nbInputs)
    {
    }

    void add(Dims const* inputDims, int32_t tensor, int32_t axis)
    {
        int64_t const extent = inputDims[tensor].d[axis];
        if (extent < 0)
        {
            return;
        }
        if (mTensor < 0)
        {
            mTensor = tensor;
            mAxis = axis;
            mExtent = extent;
            return;
        }
        SOFTMASK_PLUGIN_VALIDATE(extent == mExtent,
            mSymbol << " differs between inputs: " << tensorName(mTensor, mNbInputs) << " "
                    << kINPUT_LAYOUTS[mTensor] << " has " << mExtent << " on axis " << mAxis << " but "
                    << tensorName(tensor, mNbInputs) << " " << kINPUT_LAYOUTS[tensor] << " has " << extent
                    << " on axis " << axis);
    }

    //! The agreed extent, or -1 when no input knew it.
    int64_t extent() const noexcept
    {
        return mTensor < 0 ? -1 : mExtent;
    }

private:
    char const* mSymbol;
    int32_t mNbInputs;
    int32_t mTensor{-1};
    int32_t mAxis{-1};
    int64_t mExtent{-1};
};

//! The mask's kernel type: kBOOL in hard mode, else as kernelDtype.
SoftmaskDtype maskKernelDtype(DataType type, bool hardMask);

SoftmaskDtype kernelDtype(DataType type, char const* tensor)
{
    switch (type)
    {
    case DataType::kFLOAT: return SOFTMASK_DTYPE_FLOAT32;
    case DataType::kHALF: return SOFTMASK_DTYPE_FLOAT16;
    default: break;
    }
    throw PluginError(std::string(tensor) + " has type " + dataTypeName(type) + ", the kernel takes kFLOAT or kHALF");
}

SoftmaskDtype maskKernelDtype(DataType type, bool hardMask)
{
    if (!hardMask)
    {
        return kernelDtype(type, "mask (input 3)");
    }
    SOFTMASK_PLUGIN_VALIDATE(type == DataType::kBOOL,
        "mask (input 3) has type " << dataTypeName(type) << ", hard_mask = 1 takes kBOOL");
    return SOFTMASK_DTYPE_BOOL;
}

int32_t checkedInt32(int64_t extent, char const* what)
{
    SOFTMASK_PLUGIN_VALIDATE(extent >= 0 && extent <= std::numeric_limits<int32_t>::max(),
        what << " = " << extent << " is outside [0, 2^31 - 1]");
    return static_cast<int32_t>(extent);
}

} // namespace

void validateFields(SoftMaskedAttentionFields const& fields)
{
    SOFTMASK_PLUGIN_VALIDATE(fields.numHeads >= 1, "field 'num_heads' must be >= 1, got " << fields.numHeads);
    SOFTMASK_PLUGIN_VALIDATE(fields.numSplits >= 0,
        "field 'num_splits' must be >= 0 (0 = choose from the GPU's SM count), got " << fields.numSplits);
    SOFTMASK_PLUGIN_VALIDATE(fields.hardMask == 0 || fields.hardMask == 1,
        "field 'hard_mask' must be 0 (soft mask) or 1 (hard mode, kBOOL mask), got " << fields.hardMask);
}

void validateIoCount(int32_t nbInputs, int32_t nbOutputs)
{
    SOFTMASK_PLUGIN_VALIDATE(nbInputs == kMIN_INPUTS || nbInputs == kMAX_INPUTS,
        "expected 5 inputs (query, key, value, mask, alpha) or 6 (plus key_padding_mask), got " << nbInputs);
    SOFTMASK_PLUGIN_VALIDATE(nbOutputs == kNB_OUTPUTS, "expected 1 output, got " << nbOutputs);
}

char const* tensorName(int32_t index, int32_t nbInputs) noexcept
{
    if (index == nbInputs)
    {
        return "output";
    }
    switch (index)
    {
    case kQUERY: return "query (input 0)";
    case kKEY: return "key (input 1)";
    case kVALUE: return "value (input 2)";
    case kMASK: return "mask (input 3)";
    case kALPHA: return "alpha (input 4)";
    case kKEY_PADDING_MASK: return "key_padding_mask (input 5)";
    default: return "(no such tensor)";
    }
}

char const* dataTypeName(DataType type) noexcept
{
    switch (type)
    {
    case DataType::kFLOAT: return "kFLOAT";
    case DataType::kHALF: return "kHALF";
    case DataType::kINT8: return "kINT8";
    case DataType::kINT32: return "kINT32";
    case DataType::kBOOL: return "kBOOL";
    case DataType::kUINT8: return "kUINT8";
    case DataType::kFP8: return "kFP8";
    case DataType::kBF16: return "kBF16";
    case DataType::kINT64: return "kINT64";
    default: return "(another DataType)";
    }
}

bool supportsCombination(int32_t pos, PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs, bool hardMask)
{
    bool const validIo = (nbInputs == kMIN_INPUTS || nbInputs == kMAX_INPUTS) && nbOutputs == kNB_OUTPUTS;
    if (!validIo || inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos];
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    DataType const queryType = inOut[kQUERY].type;
    if (pos == nbInputs)
    {
        return desc.type == queryType;
    }
    switch (pos)
    {
    case kQUERY: return isFloatOrHalf(desc.type);
    case kKEY:
    case kVALUE: return desc.type == queryType;
    case kMASK: return hardMask ? desc.type == DataType::kBOOL : isFloatOrHalf(desc.type);
    case kALPHA: return desc.type == DataType::kFLOAT || desc.type == queryType;
    case kKEY_PADDING_MASK: return desc.type == DataType::kBOOL;
    default: return false;
    }
}

void validateTypesAndFormats(PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs, bool hardMask)
{
    validateIoCount(nbInputs, nbOutputs);
    SOFTMASK_PLUGIN_VALIDATE(inOut != nullptr, "tensor descriptions are null");
    for (int32_t pos = 0; pos < nbInputs + nbOutputs; ++pos)
    {
        SOFTMASK_PLUGIN_VALIDATE(supportsCombination(pos, inOut, nbInputs, nbOutputs, hardMask),
            tensorName(pos, nbInputs)
                << " has type " << dataTypeName(inOut[pos].type) << " and format "
                << static_cast<int32_t>(inOut[pos].format) << "; supported: " << supportedTypesText(pos, nbInputs, hardMask)
                << " in linear format (TensorFormat::kLINEAR = " << static_cast<int32_t>(TensorFormat::kLINEAR)
                << "), query type " << dataTypeName(inOut[kQUERY].type));
    }
}

DataType outputDataType(DataType const* inputTypes, int32_t nbInputs)
{
    validateIoCount(nbInputs, kNB_OUTPUTS);
    SOFTMASK_PLUGIN_VALIDATE(inputTypes != nullptr, "input types are null");
    SOFTMASK_PLUGIN_VALIDATE(isFloatOrHalf(inputTypes[kQUERY]),
        "query (input 0) has type " << dataTypeName(inputTypes[kQUERY]) << "; supported: kFLOAT or kHALF");
    return inputTypes[kQUERY];
}

int32_t headDimOf(int64_t embedDim, int32_t numHeads)
{
    SOFTMASK_PLUGIN_VALIDATE(numHeads >= 1, "num_heads must be >= 1, got " << numHeads);
    SOFTMASK_PLUGIN_VALIDATE(embedDim > 0, "embedding dim E (last axis of query/key/value) must be > 0, got " << embedDim);
    SOFTMASK_PLUGIN_VALIDATE(embedDim % numHeads == 0,
        "embedding dim E = " << embedDim << " (last axis of query/key/value) is not divisible by num_heads = "
                             << numHeads);
    int64_t const headDim = embedDim / numHeads;
    bool const supported = std::find(std::begin(kSUPPORTED_HEAD_DIMS), std::end(kSUPPORTED_HEAD_DIMS), headDim)
        != std::end(kSUPPORTED_HEAD_DIMS);
    SOFTMASK_PLUGIN_VALIDATE(supported,
        "head dim D = E / num_heads = " << embedDim << " / " << numHeads << " = " << headDim
                                        << " has no kernel; supported head dims: 16, 32, 64, 128");
    return static_cast<int32_t>(headDim);
}

void validateInputDims(Dims const* inputDims, int32_t nbInputs, int32_t numHeads)
{
    validateIoCount(nbInputs, kNB_OUTPUTS);
    SOFTMASK_PLUGIN_VALIDATE(inputDims != nullptr, "input dims are null");
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        SOFTMASK_PLUGIN_VALIDATE(inputDims[i].nbDims == kINPUT_RANKS[i],
            tensorName(i, nbInputs) << " must have rank " << kINPUT_RANKS[i] << " " << kINPUT_LAYOUTS[i] << ", got "
                                    << dimsText(inputDims[i]));
    }

    ExtentAgreement batch("B (batch)", nbInputs);
    ExtentAgreement queries("I (queries)", nbInputs);
    ExtentAgreement keys("S (keys)", nbInputs);
    ExtentAgreement embed("E (embedding dim)", nbInputs);
    for (int32_t tensor : {kQUERY, kKEY, kVALUE, kMASK})
    {
        batch.add(inputDims, tensor, 0);
    }
    queries.add(inputDims, kQUERY, 1);
    queries.add(inputDims, kMASK, 1);
    keys.add(inputDims, kKEY, 1);
    keys.add(inputDims, kVALUE, 1);
    keys.add(inputDims, kMASK, 2);
    embed.add(inputDims, kQUERY, 2);
    embed.add(inputDims, kKEY, 2);
    embed.add(inputDims, kVALUE, 2);
    if (nbInputs == kMAX_INPUTS)
    {
        batch.add(inputDims, kKEY_PADDING_MASK, 0);
        keys.add(inputDims, kKEY_PADDING_MASK, 1);
    }

    int64_t const alphaLength = inputDims[kALPHA].d[0];
    SOFTMASK_PLUGIN_VALIDATE(alphaLength < 0 || alphaLength == numHeads,
        "alpha (input 4) [H] has " << alphaLength << " elements but num_heads = " << numHeads);
    if (embed.extent() >= 0)
    {
        headDimOf(embed.extent(), numHeads);
    }
}

size_t workspaceBytesForMaxDims(Dims const& queryMax, Dims const& keyMax, int32_t numHeads)
{
    SOFTMASK_PLUGIN_VALIDATE(queryMax.nbDims == 3 && keyMax.nbDims == 3,
        "profile maxima must be query [B, I, E] and key [B, S, E], got " << dimsText(queryMax) << " and "
                                                                          << dimsText(keyMax));
    int64_t const batch = std::max(queryMax.d[0], keyMax.d[0]);
    int64_t const queries = queryMax.d[1];
    int64_t const keys = keyMax.d[1];
    SOFTMASK_PLUGIN_VALIDATE(batch >= 1 && queries >= 1 && keys >= 1 && queryMax.d[2] >= 1,
        "the profile's maximum shapes must be known and positive, got query " << dimsText(queryMax) << ", key "
                                                                                 << dimsText(keyMax));
    int32_t const headDim = headDimOf(queryMax.d[2], numHeads);
    return softmask_sma_workspace_size(checkedInt32(batch, "B"), checkedInt32(queries, "I"),
        checkedInt32(keys, "S"), numHeads, headDim);
}

std::optional<KernelChoice> kernelChoiceFor(PluginTensorDesc const* inputDesc, SoftMaskedAttentionFields const& fields)
{
    int64_t const embedDim = inputDesc[kQUERY].dims.d[2];
    if (embedDim < 0)
    {
        return std::nullopt;
    }
    return KernelChoice{kernelDtype(inputDesc[kQUERY].type, "query (input 0)"),
        maskKernelDtype(inputDesc[kMASK].type, fields.hardMask != 0), headDimOf(embedDim, fields.numHeads)};
}

SoftmaskSmaParams makeSmaParams(PluginTensorDesc const* inputDesc, int32_t nbInputs, void const* const* inputs,
    void* const* outputs, void* workspace, SoftMaskedAttentionFields const& fields)
{
    validateIoCount(nbInputs, kNB_OUTPUTS);
    SOFTMASK_PLUGIN_VALIDATE(inputDesc != nullptr && inputs != nullptr && outputs != nullptr,
        "enqueue received null tensor descriptions or pointers");
    Dims dims[kMAX_INPUTS];
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        dims[i] = inputDesc[i].dims;
    }
    validateInputDims(dims, nbInputs, fields.numHeads);

    SoftmaskSmaParams params{};
    params.query = inputs[kQUERY];
    params.key = inputs[kKEY];
    params.value = inputs[kVALUE];
    params.mask = inputs[kMASK];
    params.alpha = inputs[kALPHA];
    params.key_padding_mask
        = nbInputs == kMAX_INPUTS ? static_cast<uint8_t const*>(inputs[kKEY_PADDING_MASK]) : nullptr;
    params.output = outputs[0];
    params.workspace = workspace;
    params.batch = checkedInt32(dims[kQUERY].d[0], "B");
    params.num_queries = checkedInt32(dims[kQUERY].d[1], "I");
    params.num_keys = checkedInt32(dims[kKEY].d[1], "S");
    params.num_heads = fields.numHeads;
    params.head_dim = headDimOf(dims[kQUERY].d[2], fields.numHeads);
    params.dtype = kernelDtype(inputDesc[kQUERY].type, "query (input 0)");
    params.mask_dtype = maskKernelDtype(inputDesc[kMASK].type, fields.hardMask != 0);
    params.alpha_dtype = kernelDtype(inputDesc[kALPHA].type, "alpha (input 4)");
    params.num_splits = fields.numSplits;
    // TensorRT allocated the workspace for the profile's maximum shapes, which is at least what the
    // current (smaller or equal) shapes need; enqueue is not told the allocated size.
    bool const empty = params.batch == 0 || params.num_queries == 0 || params.num_keys == 0;
    params.workspace_size = empty ? 0
                                  : softmask_sma_workspace_size(params.batch, params.num_queries, params.num_keys,
                                      params.num_heads, params.head_dim);
    return params;
}

} // namespace plugin
} // namespace softmask
