/* Converts an fp16 alpha to fp32 so one set of AOT kernels serves both alpha dtypes. */
#include "softmask_kernels_internal.h"

#include <cuda_fp16.h>

namespace
{
__global__ void alphaToFloat(__half const* in, float* out, int32_t n)
{
    int32_t const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        out[i] = __half2float(in[i]);
    }
}
} // namespace

cudaError_t softmask::kernels::convertAlphaToFloat(
    void const* alphaHalf, float* alphaFloat, int32_t heads, cudaStream_t stream)
{
    constexpr int32_t kThreads = 128;
    alphaToFloat<<<(heads + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        static_cast<__half const*>(alphaHalf), alphaFloat, heads);
    return cudaGetLastError();
}
