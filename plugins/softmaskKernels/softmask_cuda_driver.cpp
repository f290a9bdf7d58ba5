/* Looks the driver's functions up through the CUDA runtime (softmask_cuda_driver.h). */
#include "softmask_cuda_driver.h"

#include "softmask_kernels.h"
#include "softmask_kernels_internal.h"

#include <cuda_runtime_api.h>

namespace softmask
{
namespace kernels
{
namespace
{

struct Lookup
{
    Driver driver{};
    bool ok{false};
    std::string error;
};

//! One entry point at kDriverApiVersion; false with *error set when the driver has none.
template <typename Fn>
bool find(char const* symbol, Fn* out, std::string* error)
{
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    cudaError_t const err = cudaGetDriverEntryPointByVersion(symbol, &fn, kDriverApiVersion, cudaEnableDefault, &found);
#else
    // Toolkits 12.0 to 12.4 have only the unversioned lookup, which returns each function at the
    // ABI of the runtime compiled against: the same as 12.0's for every function in Driver.
    cudaError_t const err = cudaGetDriverEntryPoint(symbol, &fn, cudaEnableDefault, &found);
#endif
    if (err == cudaErrorInvalidValue)
    {
        // cuda_runtime_api.h: "If the specified CUDA version is greater than the driver version,
        // the API will return ::cudaErrorInvalidValue."
        *error = "the CUDA driver is older than CUDA 12.0, which libsoftmask_kernels needs (cuLibraryLoadData)";
        return false;
    }
    if (err != cudaSuccess)
    {
        *error = std::string("no usable CUDA driver: cudaGetDriverEntryPointByVersion(") + symbol
            + ") failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
        return false;
    }
    if (fn == nullptr || found != cudaDriverEntryPointSuccess)
    {
        *error = std::string("the CUDA driver has no ") + symbol + " at the ABI of CUDA 12.0 ("
            + (found == cudaDriverEntryPointVersionNotSufficent ? "version not sufficient" : "symbol not found") + ")";
        return false;
    }
    *out = reinterpret_cast<Fn>(fn);
    return true;
}

Lookup lookUp()
{
    Lookup l;
    Driver& d = l.driver;
    l.ok = find("cuGetErrorName", &d.getErrorName, &l.error) && find("cuGetErrorString", &d.getErrorString, &l.error)
        && find("cuCtxGetCurrent", &d.ctxGetCurrent, &l.error) && find("cuCtxGetDevice", &d.ctxGetDevice, &l.error)
        && find("cuCtxPushCurrent", &d.ctxPushCurrent, &l.error) && find("cuCtxPopCurrent", &d.ctxPopCurrent, &l.error)
        && find("cuStreamGetCtx", &d.streamGetCtx, &l.error)
        && find("cuDeviceGetAttribute", &d.deviceGetAttribute, &l.error)
        && find("cuLibraryLoadData", &d.libraryLoadData, &l.error)
        && find("cuLibraryGetKernel", &d.libraryGetKernel, &l.error)
        && find("cuKernelSetAttribute", &d.kernelSetAttribute, &l.error)
        && find("cuKernelGetFunction", &d.kernelGetFunction, &l.error)
        && find("cuFuncGetAttribute", &d.funcGetAttribute, &l.error)
        && find("cuLaunchKernel", &d.launchKernel, &l.error) && find("cuMemsetD8Async", &d.memsetD8Async, &l.error);
    return l;
}

} // namespace

Driver const* driver()
{
    static Lookup const lookup = lookUp();
    if (!lookup.ok)
    {
        setError(SOFTMASK_STATUS_CUDA_ERROR, lookup.error);
        return nullptr;
    }
    return &lookup.driver;
}

std::string driverText(Driver const& d, std::string const& what, CUresult result)
{
    char const* name = nullptr;
    char const* text = nullptr;
    if (d.getErrorName(result, &name) != CUDA_SUCCESS || name == nullptr)
    {
        name = "unknown CUresult";
    }
    if (d.getErrorString(result, &text) != CUDA_SUCCESS || text == nullptr)
    {
        text = "no description";
    }
    return what + " failed: " + name + " " + std::to_string(static_cast<int>(result)) + " (" + text + ")";
}

} // namespace kernels
} // namespace softmask
