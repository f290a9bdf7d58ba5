/*
 * The CUDA driver functions libsoftmask_kernels calls, looked up once per process through the CUDA
 * runtime's cudaGetDriverEntryPointByVersion: the library never links libcuda (a machine without a
 * driver can still load it and report why it cannot launch), and the statically linked runtime is
 * used for nothing else, so its state never mixes with the process's own runtime.
 *
 * Every function is asked for at the ABI of CUDA 12.0 (kDriverApiVersion), the oldest driver that
 * has the library-management API (cuLibraryLoadData, cuKernelSetAttribute). A newer toolkit's
 * header may define a newer ABI under the same name (CUDA 13.0's cuCtxGetDevice takes a context);
 * the versioned PFN_*_v<version> types below pin the one asked for.
 */
#ifndef SOFTMASK_CUDA_DRIVER_H
#define SOFTMASK_CUDA_DRIVER_H

#include <cuda.h>
#include <cudaTypedefs.h>

#include <string>

namespace softmask
{
namespace kernels
{

//! CUDA version (1000 * major + 10 * minor) whose driver ABI every function is requested at.
constexpr unsigned int kDriverApiVersion = 12000;

struct Driver
{
    PFN_cuGetErrorName_v6000 getErrorName;
    PFN_cuGetErrorString_v6000 getErrorString;
    PFN_cuCtxGetCurrent_v4000 ctxGetCurrent;
    PFN_cuCtxGetDevice_v2000 ctxGetDevice;
    PFN_cuCtxPushCurrent_v4000 ctxPushCurrent;
    PFN_cuCtxPopCurrent_v4000 ctxPopCurrent;
    PFN_cuStreamGetCtx_v9020 streamGetCtx;
    PFN_cuDeviceGetAttribute_v2000 deviceGetAttribute;
    PFN_cuLibraryLoadData_v12000 libraryLoadData;
    PFN_cuLibraryGetKernel_v12000 libraryGetKernel;
    PFN_cuKernelSetAttribute_v12000 kernelSetAttribute;
    PFN_cuKernelGetFunction_v12000 kernelGetFunction;
    PFN_cuFuncGetAttribute_v2020 funcGetAttribute;
    PFN_cuLaunchKernel_v4000 launchKernel;
    PFN_cuMemsetD8Async_v3020 memsetD8Async;
};

//! The driver's functions, or nullptr when the driver is missing or older than CUDA 12.0 (the
//! thread's error message then says which and why). Looked up on the first call; thread-safe.
Driver const* driver();

//! "<what> failed: CUDA_ERROR_NAME (description)".
std::string driverText(Driver const& d, std::string const& what, CUresult result);

} // namespace kernels
} // namespace softmask

#endif // SOFTMASK_CUDA_DRIVER_H
