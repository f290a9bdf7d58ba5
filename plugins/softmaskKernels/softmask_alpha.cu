/* Converts an fp16 alpha to fp32 so one set of AOT kernels serves both alpha dtypes.
 *
 * Device code only: compiled into a fatbin (cubins for CMAKE_CUDA_ARCHITECTURES plus PTX of the
 * oldest), embedded like the Triton images and launched through the driver (softmask_kernels_launch.cpp),
 * so the library registers nothing with a CUDA runtime. */
#include <cuda_fp16.h>

#include <cstdint>

extern "C" __global__ void softmask_alpha_to_float(__half const* in, float* out, int32_t n)
{
    int32_t const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        out[i] = __half2float(in[i]);
    }
}
