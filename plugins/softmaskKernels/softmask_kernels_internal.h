/* Internal pieces of libsoftmask_kernels shared by its sources and host tests (not installed). */
#ifndef SOFTMASK_KERNELS_INTERNAL_H
#define SOFTMASK_KERNELS_INTERNAL_H

#include "softmask_kernels.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace softmask
{
namespace kernels
{

/* Byte sizes of the workspace parts, each rounded up to 256 bytes, in this order. */
struct WorkspaceLayout
{
    size_t accBytes;     /* partial accumulators [B, H, splits, I, D] fp32 */
    size_t mlBytes;      /* partial (row max, row sum) [B, H, splits, I, 2] fp32 */
    size_t counterBytes; /* merge counters int32 [B, H, ceil(I / 16), SOFTMASK_MAX_MERGE_GROUPS + 1] */
    size_t alphaBytes;   /* alpha converted to fp32 [H] */
    size_t scratchBytes; /* Triton's global scratch, when a kernel asks for it */
    size_t total;
};

WorkspaceLayout workspaceLayout(int64_t batch, int64_t queries, int64_t heads, int64_t headDim, int64_t splits);

/* Host-only argument checks (no CUDA call); sets the thread's error message on failure. */
int32_t validate(SoftmaskSmaParams const* params);

/* Split count actually launched with these tiles: forced (clamped to the workspace bound) or
 * from the heuristic. */
int32_t resolveSplits(SoftmaskSmaParams const& params, int32_t numSms, int32_t blockI, int32_t blockS);

/* Records message as the thread's last error and returns status. */
int32_t setError(int32_t status, std::string const& message);

/* What selects a kernel pair besides the device. */
struct KernelSpec
{
    SoftmaskDtype dtype;
    SoftmaskDtype maskDtype;
    int32_t headDim;
};

/* Host-only check that spec has kernels (no CUDA call); sets the thread's error message on failure. */
int32_t validateSpec(KernelSpec const& spec);

/* Selects, loads and readies every kernel a call of a validated spec can pick (and the alpha
 * conversion) in the current context (softmask_kernels_launch.cpp); idempotent. */
int32_t prepare(KernelSpec const& spec);

/* Enqueues the kernels for validated params on stream, in the stream's context, preparing them
 * there first if prepare() has not (softmask_kernels_launch.cpp). */
int32_t launch(SoftmaskSmaParams const& params, cudaStream_t stream);

/* The fatbin of softmask_alpha.cu (fp16 alpha [H] -> fp32; entry point kAlphaKernelName),
 * embedded at build time (softmask_alpha_image.c). */
extern "C" unsigned char const softmask_alpha_image[];
constexpr char const* kAlphaKernelName = "softmask_alpha_to_float";
constexpr int32_t kAlphaThreads = 128;

} // namespace kernels
} // namespace softmask

#endif /* SOFTMASK_KERNELS_INTERNAL_H */
