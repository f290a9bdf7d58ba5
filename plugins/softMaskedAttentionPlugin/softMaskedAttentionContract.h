/*
 * What the SoftMaskedAttention plugin accepts: fields, tensor types and formats, shapes, and how
 * they map to the fused kernel's launch parameters.
 *
 * The op's contract is docs/ops.md (math, reference: softmask/ops/reference.py) and the layout of
 * plugins/softmaskKernels/softmask_kernels.h:
 *   inputs  0 query [B, I, E], 1 key [B, S, E], 2 value [B, S, E], 3 mask [B, I, S],
 *           4 alpha [H] (an initializer), optional 5 key_padding_mask [B, S] (kBOOL, true = padded)
 *   output  0 [B, I, E], same type as query; E = H * D with D in {16, 32, 64, 128}.
 * Types: query, key, value and output share one type, kFLOAT or kHALF; mask kFLOAT or kHALF, or
 * kBOOL in hard mode (field hard_mask = 1: Mask2Former's masked attention, true = attend, a row
 * with no allowed key attends to every key; alpha is then not read); alpha kFLOAT or the query's
 * type. Every tensor is linear (row-major, contiguous).
 *
 * These functions hold no state and need no TensorRT runtime, so the C++ tests call them directly.
 * Each throws softmask::plugin::PluginError with a message naming the tensor and axis at fault.
 */
#ifndef SOFTMASK_SOFT_MASKED_ATTENTION_CONTRACT_H
#define SOFTMASK_SOFT_MASKED_ATTENTION_CONTRACT_H

#include "softmask_kernels.h"

#include <NvInferRuntime.h>

#include <cstddef>
#include <cstdint>
#include <optional>

namespace softmask
{
namespace plugin
{

enum SoftMaskedAttentionInput : int32_t
{
    kQUERY = 0,
    kKEY = 1,
    kVALUE = 2,
    kMASK = 3,
    kALPHA = 4,
    kKEY_PADDING_MASK = 5,
};

constexpr int32_t kMIN_INPUTS = 5; //!< without key_padding_mask
constexpr int32_t kMAX_INPUTS = 6; //!< with key_padding_mask
constexpr int32_t kNB_OUTPUTS = 1;

//! The plugin's fields (creator attributes), as validated values.
struct SoftMaskedAttentionFields
{
    int32_t numHeads{0};  //!< H >= 1
    int32_t numSplits{0}; //!< split-KV count; 0 lets the kernel choose from the GPU's SM count
    int32_t hardMask{0};  //!< 1: hard mode (the ONNX node's hard_mask attribute): mask kBOOL

    bool operator==(SoftMaskedAttentionFields const& other) const noexcept
    {
        return numHeads == other.numHeads && numSplits == other.numSplits && hardMask == other.hardMask;
    }
};

//! Throws when num_heads < 1, num_splits < 0 or hard_mask is not 0 or 1.
void validateFields(SoftMaskedAttentionFields const& fields);

//! Throws unless nbInputs is 5 or 6 and nbOutputs is 1.
void validateIoCount(int32_t nbInputs, int32_t nbOutputs);

//! Name of input `index` (or "output" for index == nbInputs) for messages.
char const* tensorName(int32_t index, int32_t nbInputs) noexcept;

//! Name of a DataType for messages ("kFLOAT", "kHALF", ...).
char const* dataTypeName(nvinfer1::DataType type) noexcept;

//! supportsFormatCombination's rule: whether inOut[pos] is supported given inOut[0..pos-1].
//! Looks only at inOut[0..pos] (TensorRT may not have chosen the later ones yet). The mask is
//! kBOOL exactly when hardMask, kFLOAT or kHALF otherwise.
bool supportsCombination(
    int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs, bool hardMask);

//! Throws unless every tensor's type and format satisfy supportsCombination.
void validateTypesAndFormats(
    nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs, bool hardMask);

//! Output type for the given input types (the query's). Throws for an unsupported query type.
nvinfer1::DataType outputDataType(nvinfer1::DataType const* inputTypes, int32_t nbInputs);

//! Throws unless the input ranks are right and every pair of extents that must agree does.
//! An extent of -1 (not known yet, e.g. at build time) matches anything.
void validateInputDims(nvinfer1::Dims const* inputDims, int32_t nbInputs, int32_t numHeads);

//! Head dimension D = E / H. Throws when E is not divisible by H or D has no kernel.
int32_t headDimOf(int64_t embedDim, int32_t numHeads);

//! Workspace bytes for the largest shapes of an optimisation profile (maxima of query and key).
size_t workspaceBytesForMaxDims(nvinfer1::Dims const& queryMax, nvinfer1::Dims const& keyMax, int32_t numHeads);

//! What selects the fused kernels besides the GPU: data type, mask type, head dim.
struct KernelChoice
{
    SoftmaskDtype dtype;
    SoftmaskDtype maskDtype;
    int32_t headDim;
};

//! The kernels that validated input descriptions need, or nullopt while E is unknown (-1).
std::optional<KernelChoice> kernelChoiceFor(
    nvinfer1::PluginTensorDesc const* inputDesc, SoftMaskedAttentionFields const& fields);

//! Kernel launch parameters for one enqueue call. inputDesc holds the real (runtime) dims.
SoftmaskSmaParams makeSmaParams(nvinfer1::PluginTensorDesc const* inputDesc, int32_t nbInputs,
    void const* const* inputs, void* const* outputs, void* workspace, SoftMaskedAttentionFields const& fields);

} // namespace plugin
} // namespace softmask

#endif // SOFTMASK_SOFT_MASKED_ATTENTION_CONTRACT_H
