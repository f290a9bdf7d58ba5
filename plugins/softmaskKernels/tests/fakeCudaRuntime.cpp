// The fake CUDA runtime of fakeCudaRuntime.h. Every definition below has the exact prototype of
// cuda_runtime_api.h (included, so the compiler checks it) and C linkage.
#include "fakeCudaRuntime.h"

#include "softmask_kernels_table.h"

#include <deque>
#include <map>
#include <cstring>
#include <mutex>
#include <set>

namespace
{

constexpr int kDefaultDynamicSharedLimit = 48 * 1024;

struct FakeLibrary
{
    void const* image;
};

struct FakeKernel
{
    size_t row;
    std::map<int, int> maxDynamicShared; //!< device -> MaxDynamicSharedMemorySize
    std::set<int> loadedOn;              //!< devices whose context holds the kernel
};

struct State
{
    std::recursive_mutex mutex;
    std::vector<int> archs{90};
    int current{0};
    cudaError_t pending{cudaSuccess};
    std::deque<FakeLibrary> libraries;
    std::deque<FakeKernel> kernels;
    std::vector<fake_cuda::Launch> launches;
    int loadCalls{0};
    int lastErrorQueries{0};
};

State& state()
{
    static State s;
    return s;
}

FakeKernel* asKernel(void const* handle)
{
    for (FakeKernel& kernel : state().kernels)
    {
        if (static_cast<void const*>(&kernel) == handle)
        {
            return &kernel;
        }
    }
    return nullptr;
}

//! Whether a table row's image can run on a device of compute capability `arch`.
bool runsOn(SoftmaskKernelEntry const& e, int arch)
{
    if (e.is_ptx)
    {
        return e.arch <= arch;
    }
    return e.arch / 10 == arch / 10 && e.arch <= arch && (e.arch != 90 || arch == 90);
}

//! Loads kernel into the current device's context (first use there); false if it cannot run there.
bool loadOnCurrent(FakeKernel& kernel)
{
    State& s = state();
    if (kernel.loadedOn.count(s.current) != 0)
    {
        return true;
    }
    if (!runsOn(softmask_kernel_table[kernel.row], s.archs.at(static_cast<size_t>(s.current))))
    {
        return false;
    }
    kernel.loadedOn.insert(s.current);
    ++s.loadCalls;
    return true;
}

cudaError_t fail(cudaError_t error)
{
    state().pending = error;
    return error;
}

} // namespace

namespace fake_cuda
{

void setDevices(std::vector<int> const& archs)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    s.archs = archs;
    s.current = 0;
}

void clearLog()
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    s.pending = cudaSuccess;
    s.launches.clear();
    s.loadCalls = 0;
    s.lastErrorQueries = 0;
}

void setPendingError(cudaError_t error)
{
    state().pending = error;
}

std::vector<Launch> const& launches()
{
    return state().launches;
}

int loadCalls()
{
    return state().loadCalls;
}

int lastErrorQueries()
{
    return state().lastErrorQueries;
}

} // namespace fake_cuda

extern "C"
{

cudaError_t cudaGetDevice(int* device)
{
    *device = state().current;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    State& s = state();
    if (device < 0 || static_cast<size_t>(device) >= s.archs.size())
    {
        return fail(cudaErrorInvalidDevice);
    }
    s.current = device;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device)
{
    State& s = state();
    if (device < 0 || static_cast<size_t>(device) >= s.archs.size())
    {
        return fail(cudaErrorInvalidDevice);
    }
    int const arch = s.archs[static_cast<size_t>(device)];
    switch (attr)
    {
    case cudaDevAttrComputeCapabilityMajor: *value = arch / 10; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = arch % 10; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    default: return fail(cudaErrorInvalidValue);
    }
}

cudaError_t cudaLibraryLoadData(cudaLibrary_t* library, void const* code, enum cudaJitOption* /*jitOptions*/,
    void** /*jitOptionsValues*/, unsigned int /*numJitOptions*/, enum cudaLibraryOption* /*libraryOptions*/,
    void** /*libraryOptionValues*/, unsigned int /*numLibraryOptions*/)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    s.libraries.push_back(FakeLibrary{code});
    ++s.loadCalls;
    *library = reinterpret_cast<cudaLibrary_t>(&s.libraries.back());
    return cudaSuccess;
}

cudaError_t cudaLibraryUnload(cudaLibrary_t /*library*/)
{
    return cudaSuccess;
}

cudaError_t cudaLibraryGetKernel(cudaKernel_t* pKernel, cudaLibrary_t library, char const* name)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    auto const* fakeLibrary = reinterpret_cast<FakeLibrary const*>(library);
    for (size_t row = 0; row < softmask_kernel_table_size; ++row)
    {
        SoftmaskKernelEntry const& e = softmask_kernel_table[row];
        // By contents: a plugin library with the kernels linked in holds its own copy of the
        // images, at other addresses than this (libsoftmask_kernels.so's) table.
        size_t const size = softmask_kernel_image_size(row);
        bool const sameImage = e.image == fakeLibrary->image
            || std::memcmp(e.image, fakeLibrary->image, size) == 0;
        if (sameImage && std::string(e.name) == name)
        {
            s.kernels.push_back(FakeKernel{row, {}, {}});
            *pKernel = reinterpret_cast<cudaKernel_t>(&s.kernels.back());
            return cudaSuccess;
        }
    }
    return fail(cudaErrorSymbolNotFound);
}

cudaError_t cudaKernelSetAttributeForDevice(cudaKernel_t kernel, enum cudaFuncAttribute attr, int value, int device)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    FakeKernel* fakeKernel = asKernel(kernel);
    if (fakeKernel == nullptr || attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
    {
        return fail(cudaErrorInvalidValue);
    }
    fakeKernel->maxDynamicShared[device] = value;
    ++s.loadCalls;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(void const* func, enum cudaFuncAttribute attr, int value)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    FakeKernel* fakeKernel = asKernel(func);
    if (fakeKernel == nullptr || attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
    {
        return fail(cudaErrorInvalidValue);
    }
    fakeKernel->maxDynamicShared[s.current] = value;
    ++s.loadCalls;
    return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes* attr, void const* func)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    FakeKernel* fakeKernel = asKernel(func);
    if (fakeKernel == nullptr)
    {
        return fail(cudaErrorInvalidDeviceFunction);
    }
    if (!loadOnCurrent(*fakeKernel))
    {
        return fail(cudaErrorNoKernelImageForDevice);
    }
    *attr = cudaFuncAttributes{};
    auto const limit = fakeKernel->maxDynamicShared.find(s.current);
    attr->maxDynamicSharedSizeBytes = limit == fakeKernel->maxDynamicShared.end() ? kDefaultDynamicSharedLimit : limit->second;
    return cudaSuccess;
}

cudaError_t cudaLaunchKernel(
    void const* func, dim3 /*gridDim*/, dim3 /*blockDim*/, void** args, size_t sharedMem, cudaStream_t /*stream*/)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    if (args == nullptr)
    {
        return fail(cudaErrorInvalidValue);
    }
    FakeKernel* fakeKernel = asKernel(func);
    if (fakeKernel == nullptr)
    {
        // A kernel compiled into the library itself (alphaToFloat), registered with the runtime.
        s.launches.push_back(fake_cuda::Launch{s.current, "alphaToFloat", -1, false, sharedMem});
        return cudaSuccess;
    }
    if (!loadOnCurrent(*fakeKernel))
    {
        return fail(cudaErrorNoKernelImageForDevice);
    }
    auto const limit = fakeKernel->maxDynamicShared.find(s.current);
    int const allowed = limit == fakeKernel->maxDynamicShared.end() ? kDefaultDynamicSharedLimit : limit->second;
    if (sharedMem > static_cast<size_t>(allowed))
    {
        return fail(cudaErrorInvalidValue);
    }
    SoftmaskKernelEntry const& e = softmask_kernel_table[fakeKernel->row];
    s.launches.push_back(fake_cuda::Launch{s.current, e.name, e.arch, e.is_ptx != 0, sharedMem});
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* /*devPtr*/, int /*value*/, size_t /*count*/, cudaStream_t /*stream*/)
{
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    State& s = state();
    ++s.lastErrorQueries;
    cudaError_t const error = s.pending;
    s.pending = cudaSuccess;
    return error;
}

cudaError_t cudaPeekAtLastError(void)
{
    State& s = state();
    ++s.lastErrorQueries;
    return s.pending;
}

} // extern "C"
