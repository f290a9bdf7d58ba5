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
    // cudaLaunchKernel reports this launch's error; `<<<>>>` + cudaGetLastError would also return
    // (and clear) an unrelated error left by earlier work in the process.
    auto const* in = static_cast<__half const*>(alphaHalf);
    void* args[] = {&in, &alphaFloat, &heads};
    return cudaLaunchKernel(reinterpret_cast<void const*>(&alphaToFloat), dim3((heads + kThreads - 1) / kThreads),
        dim3(kThreads), args, 0, stream);
}
