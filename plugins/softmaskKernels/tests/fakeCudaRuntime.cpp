// The fake CUDA driver of fakeCudaRuntime.h. Each driver function is stored into the PFN_*_v<version>
// type of cudaTypedefs.h that the launcher casts it to, so the compiler checks every prototype;
// the runtime functions have C linkage and the prototypes of cuda_runtime_api.h (included).
// Line numbers cite CUDA 13.0's cuda.h and cuda_runtime_api.h.
#include "fakeCudaRuntime.h"

#include "softmask_kernels_internal.h"
#include "softmask_kernels_table.h"

#include <cudaTypedefs.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>

namespace
{

constexpr int kDefaultDynamicSharedLimit = 48 * 1024;

struct FakeContext
{
    int device;
};

struct FakeStream
{
    FakeContext* context;
};

struct FakeLibrary
{
    void const* image;
};

struct FakeKernel
{
    void const* image;
    std::string name;
    std::map<int, int> maxDynamicShared; //!< device -> MAX_DYNAMIC_SHARED_SIZE_BYTES
    std::set<FakeContext*> loadedIn;
};

struct FakeFunction
{
    FakeKernel* kernel;
    FakeContext* context;
};

struct State
{
    std::recursive_mutex mutex;
    int driverVersion{12060};
    std::vector<int> archs{90};
    std::deque<FakeContext> primary{FakeContext{0}};
    std::deque<FakeStream> streams;
    std::deque<FakeLibrary> libraries;
    std::deque<FakeKernel> kernels;
    std::deque<FakeFunction> functions;
    std::vector<fake_cuda::Launch> launches;
    std::vector<fake_cuda::EntryPointRequest> requests;
    int loadCalls{0};
};

State& state()
{
    static State s;
    return s;
}

//! The current-context stack of this thread; device 0's primary context to begin with.
std::vector<FakeContext*>& contextStack()
{
    thread_local std::vector<FakeContext*> stack{&state().primary.front()};
    return stack;
}

FakeContext* current()
{
    std::vector<FakeContext*> const& stack = contextStack();
    return stack.empty() ? nullptr : stack.back();
}

template <typename T>
T* find(std::deque<T>& all, void const* handle)
{
    for (T& item : all)
    {
        if (static_cast<void const*>(&item) == handle)
        {
            return &item;
        }
    }
    return nullptr;
}

bool validDevice(int device)
{
    return device >= 0 && static_cast<size_t>(device) < state().archs.size();
}

int archOf(int device)
{
    return state().archs.at(static_cast<size_t>(device));
}

//! CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN by compute capability (CUDA C++
//! Programming Guide, "Technical Specifications per Compute Capability").
int sharedOptIn(int arch)
{
    switch (arch)
    {
    case 70: return 96 * 1024;
    case 75: return 64 * 1024;
    case 80:
    case 87: return 163 * 1024;
    case 86:
    case 89: return 99 * 1024;
    case 90: return 227 * 1024;
    default: return 48 * 1024;
    }
}

// Images are recognised by content as well as by address: a plugin library with the launcher
// linked in (plugins/tests) holds its own copy of the embedded images and of the kernel table.
// The alpha image is told by its first bytes (the fatbin header and the start of its first entry).
constexpr size_t kAlphaPrefixBytes = 64;

bool isAlphaImage(void const* image)
{
    return image == softmask::kernels::softmask_alpha_image
        || std::memcmp(image, softmask::kernels::softmask_alpha_image, kAlphaPrefixBytes) == 0;
}

bool isTableImage(size_t row, void const* image)
{
    void const* own = softmask_kernel_table[row].image;
    return own == image || std::memcmp(own, image, softmask_kernel_image_size(row)) == 0;
}

//! Whether an embedded image can run on a device of compute capability `arch`.
bool runsOn(void const* image, int arch)
{
    if (isAlphaImage(image))
    {
        // A cubin per CMAKE_CUDA_ARCHITECTURES entry and the PTX of the oldest (CMakeLists.txt).
        return arch >= SOFTMASK_ALPHA_MIN_ARCH;
    }
    for (size_t i = 0; i < softmask_kernel_table_size; ++i)
    {
        SoftmaskKernelEntry const& e = softmask_kernel_table[i];
        if (isTableImage(i, image))
        {
            return e.is_ptx ? e.arch <= arch : e.arch / 10 == arch / 10 && e.arch <= arch && (e.arch != 90 || arch == 90);
        }
    }
    return false;
}

bool knownImage(void const* image)
{
    if (isAlphaImage(image))
    {
        return true;
    }
    for (size_t i = 0; i < softmask_kernel_table_size; ++i)
    {
        if (isTableImage(i, image))
        {
            return true;
        }
    }
    return false;
}

bool hasEntryPoint(void const* image, char const* name)
{
    if (isAlphaImage(image))
    {
        return std::strcmp(name, softmask::kernels::kAlphaKernelName) == 0;
    }
    for (size_t i = 0; i < softmask_kernel_table_size; ++i)
    {
        SoftmaskKernelEntry const& e = softmask_kernel_table[i];
        if (isTableImage(i, image) && std::strcmp(e.name, name) == 0)
        {
            return true;
        }
    }
    return false;
}

//! Loads kernel into context, as lazy loading does when a function is needed there (cuda.h
//! 7889-7890: "not immediately loaded onto all existent contexts and will only be loaded when a
//! function is needed for that context, such as a kernel launch"); a library without code for the
//! device fails as cuLibraryLoadData would (CUDA_ERROR_NO_BINARY_FOR_GPU, cuda.h 7926).
CUresult loadInto(FakeKernel& kernel, FakeContext* context)
{
    if (kernel.loadedIn.count(context) != 0)
    {
        return CUDA_SUCCESS;
    }
    if (!runsOn(kernel.image, archOf(context->device)))
    {
        return CUDA_ERROR_NO_BINARY_FOR_GPU;
    }
    kernel.loadedIn.insert(context);
    ++state().loadCalls;
    return CUDA_SUCCESS;
}

// --- driver functions ---------------------------------------------------------------------------

CUresult getErrorName(CUresult error, char const** str)
{
    switch (error)
    {
    case CUDA_SUCCESS: *str = "CUDA_SUCCESS"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE: *str = "CUDA_ERROR_INVALID_VALUE"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_DEVICE: *str = "CUDA_ERROR_INVALID_DEVICE"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_CONTEXT: *str = "CUDA_ERROR_INVALID_CONTEXT"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_HANDLE: *str = "CUDA_ERROR_INVALID_HANDLE"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_FOUND: *str = "CUDA_ERROR_NOT_FOUND"; return CUDA_SUCCESS;
    case CUDA_ERROR_NO_BINARY_FOR_GPU: *str = "CUDA_ERROR_NO_BINARY_FOR_GPU"; return CUDA_SUCCESS;
    default: *str = nullptr; return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult getErrorString(CUresult error, char const** str)
{
    char const* name = nullptr;
    CUresult const r = getErrorName(error, &name);
    *str = r == CUDA_SUCCESS ? "fake driver error" : nullptr;
    return r;
}

CUresult ctxGetCurrent(CUcontext* pctx)
{
    *pctx = reinterpret_cast<CUcontext>(current());
    return CUDA_SUCCESS;
}

CUresult ctxGetDevice(CUdevice* device)
{
    // cuda.h 6451: "the handle of the current context's device"; CUDA_ERROR_INVALID_CONTEXT without one.
    FakeContext const* const context = current();
    if (context == nullptr)
    {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    *device = context->device;
    return CUDA_SUCCESS;
}

CUresult ctxPushCurrent(CUcontext ctx)
{
    std::lock_guard<std::recursive_mutex> lock(state().mutex);
    FakeContext* const context = find(state().primary, ctx);
    if (context == nullptr)
    {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    contextStack().push_back(context);
    return CUDA_SUCCESS;
}

CUresult ctxPopCurrent(CUcontext* pctx)
{
    std::vector<FakeContext*>& stack = contextStack();
    if (stack.empty())
    {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (pctx != nullptr)
    {
        *pctx = reinterpret_cast<CUcontext>(stack.back());
    }
    stack.pop_back();
    return CUDA_SUCCESS;
}

//! The context a stream belongs to: the current one for the NULL, legacy and per-thread streams
//! (cuda.h 15144-15146), CUDA_ERROR_INVALID_CONTEXT when none is current.
CUresult contextOf(CUstream stream, FakeContext** out)
{
    if (stream == nullptr || stream == CU_STREAM_LEGACY || stream == CU_STREAM_PER_THREAD)
    {
        *out = current();
        return *out == nullptr ? CUDA_ERROR_INVALID_CONTEXT : CUDA_SUCCESS;
    }
    FakeStream* const fakeStream = find(state().streams, stream);
    if (fakeStream == nullptr)
    {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    *out = fakeStream->context;
    return CUDA_SUCCESS;
}

CUresult streamGetCtx(CUstream stream, CUcontext* pctx)
{
    std::lock_guard<std::recursive_mutex> lock(state().mutex);
    FakeContext* context = nullptr;
    CUresult const r = contextOf(stream, &context);
    if (r == CUDA_SUCCESS)
    {
        *pctx = reinterpret_cast<CUcontext>(context);
    }
    return r;
}

CUresult deviceGetAttribute(int* pi, CUdevice_attribute attrib, CUdevice dev)
{
    if (!validDevice(dev))
    {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    int const arch = archOf(dev);
    switch (attrib)
    {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *pi = arch / 10; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *pi = arch % 10; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *pi = arch == 87 ? 16 : 132; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult libraryLoadData(CUlibrary* library, void const* code, CUjit_option* /*jitOptions*/,
    void** /*jitOptionsValues*/, unsigned int numJitOptions, CUlibraryOption* /*libraryOptions*/,
    void** /*libraryOptionValues*/, unsigned int numLibraryOptions)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    if (library == nullptr || code == nullptr || numJitOptions != 0 || numLibraryOptions != 0)
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!knownImage(code))
    {
        // Not a cubin, fatbin or PTX this test build embedded: the real driver would parse it.
        std::fprintf(stderr, "fake CUDA driver: cuLibraryLoadData of an image it does not know\n");
        std::abort();
    }
    s.libraries.push_back(FakeLibrary{code});
    ++s.loadCalls;
    *library = reinterpret_cast<CUlibrary>(&s.libraries.back());
    return CUDA_SUCCESS;
}

CUresult libraryGetKernel(CUkernel* pKernel, CUlibrary library, char const* name)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    FakeLibrary const* const fakeLibrary = find(s.libraries, library);
    if (fakeLibrary == nullptr)
    {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (pKernel == nullptr || name == nullptr)
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!hasEntryPoint(fakeLibrary->image, name))
    {
        return CUDA_ERROR_NOT_FOUND; // cuda.h 8027
    }
    s.kernels.push_back(FakeKernel{fakeLibrary->image, name, {}, {}});
    *pKernel = reinterpret_cast<CUkernel>(&s.kernels.back());
    return CUDA_SUCCESS;
}

CUresult kernelSetAttribute(CUfunction_attribute attrib, int val, CUkernel kernel, CUdevice dev)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    FakeKernel* const fakeKernel = find(s.kernels, kernel);
    if (fakeKernel == nullptr)
    {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (!validDevice(dev))
    {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    // cuda.h 8354-8356: the requested maximum "cannot exceed the device attribute
    // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN" (the kernels have no static shared memory).
    if (attrib != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES || val < 0 || val > sharedOptIn(archOf(dev)))
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    fakeKernel->maxDynamicShared[dev] = val;
    ++s.loadCalls;
    return CUDA_SUCCESS;
}

CUresult kernelGetFunction(CUfunction* pFunc, CUkernel kernel)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    FakeKernel* const fakeKernel = find(s.kernels, kernel);
    if (fakeKernel == nullptr)
    {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    // cuda.h 8113-8114: the function "for the requested kernel and the current context".
    FakeContext* const context = current();
    if (context == nullptr)
    {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    CUresult const r = loadInto(*fakeKernel, context);
    if (r != CUDA_SUCCESS)
    {
        return r;
    }
    s.functions.push_back(FakeFunction{fakeKernel, context});
    *pFunc = reinterpret_cast<CUfunction>(&s.functions.back());
    return CUDA_SUCCESS;
}

CUresult funcGetAttribute(int* pi, CUfunction_attribute attrib, CUfunction hfunc)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    FakeFunction const* const function = find(s.functions, hfunc);
    if (function == nullptr)
    {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (attrib != CU_FUNC_ATTRIBUTE_NUM_REGS)
    {
        return CUDA_ERROR_INVALID_VALUE; // not modelled
    }
    *pi = 64;
    return CUDA_SUCCESS;
}

CUresult launchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
    unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes,
    CUstream hStream, void** kernelParams, void** extra)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    // cuda.h 17474-17475: kernel parameters in both kernelParams and extra are invalid; every
    // kernel here has parameters, so none at all is too.
    if ((kernelParams == nullptr) == (extra == nullptr))
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (gridDimX == 0 || gridDimY == 0 || gridDimZ == 0 || gridDimY > 65535 || gridDimZ > 65535 || blockDimX == 0
        || blockDimY == 0 || blockDimZ == 0 || blockDimX * blockDimY * blockDimZ > 1024)
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // cuda.h 17492-17495: a CUkernel cast to CUfunction runs in the context of hStream, or the
    // current one for the NULL stream; a CUfunction belongs to one context.
    FakeContext* context = nullptr;
    CUresult r = contextOf(hStream, &context);
    if (r != CUDA_SUCCESS)
    {
        return r;
    }
    FakeKernel* kernel = find(s.kernels, f);
    if (kernel == nullptr)
    {
        FakeFunction const* const function = find(s.functions, f);
        if (function == nullptr)
        {
            return CUDA_ERROR_INVALID_HANDLE;
        }
        if (function->context != context)
        {
            return CUDA_ERROR_INVALID_CONTEXT;
        }
        kernel = function->kernel;
    }
    r = loadInto(*kernel, context);
    if (r != CUDA_SUCCESS)
    {
        return r;
    }
    auto const limit = kernel->maxDynamicShared.find(context->device);
    int const allowed = limit == kernel->maxDynamicShared.end() ? kDefaultDynamicSharedLimit : limit->second;
    if (sharedMemBytes > static_cast<unsigned int>(allowed))
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    int tableArch = -1;
    bool tablePtx = false;
    long tableRow = -1;
    for (size_t i = 0; i < softmask_kernel_table_size; ++i)
    {
        if (isTableImage(i, kernel->image))
        {
            tableArch = softmask_kernel_table[i].arch;
            tablePtx = softmask_kernel_table[i].is_ptx != 0;
            tableRow = static_cast<long>(i);
        }
    }
    s.launches.push_back(
        fake_cuda::Launch{context->device, kernel->name, tableArch, tablePtx, sharedMemBytes, hStream, tableRow});
    return CUDA_SUCCESS;
}

CUresult memsetD8Async(CUdeviceptr dstDevice, unsigned char /*uc*/, size_t /*n*/, CUstream hStream)
{
    std::lock_guard<std::recursive_mutex> lock(state().mutex);
    FakeContext* context = nullptr;
    CUresult const r = contextOf(hStream, &context);
    return r != CUDA_SUCCESS ? r : dstDevice == 0 ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

//! One driver function: its name, the CUDA version that introduced the ABI stored here and the
//! one that replaced it under the same name (0: none yet).
struct EntryPoint
{
    char const* symbol;
    unsigned int introduced;
    unsigned int replaced;
    void* function;
};

std::vector<EntryPoint> const& entryPoints()
{
    // Each address goes through the PFN type the launcher uses: a prototype mismatch fails to compile.
    static PFN_cuGetErrorName_v6000 const a = getErrorName;
    static PFN_cuGetErrorString_v6000 const b = getErrorString;
    static PFN_cuCtxGetCurrent_v4000 const c = ctxGetCurrent;
    static PFN_cuCtxGetDevice_v2000 const d = ctxGetDevice;
    static PFN_cuCtxPushCurrent_v4000 const e = ctxPushCurrent;
    static PFN_cuCtxPopCurrent_v4000 const f = ctxPopCurrent;
    static PFN_cuStreamGetCtx_v9020 const g = streamGetCtx;
    static PFN_cuDeviceGetAttribute_v2000 const h = deviceGetAttribute;
    static PFN_cuLibraryLoadData_v12000 const i = libraryLoadData;
    static PFN_cuLibraryGetKernel_v12000 const j = libraryGetKernel;
    static PFN_cuKernelSetAttribute_v12000 const k = kernelSetAttribute;
    static PFN_cuKernelGetFunction_v12000 const l = kernelGetFunction;
    static PFN_cuFuncGetAttribute_v2020 const m = funcGetAttribute;
    static PFN_cuLaunchKernel_v4000 const n = launchKernel;
    static PFN_cuMemsetD8Async_v3020 const o = memsetD8Async;
    static std::vector<EntryPoint> const all{
        {"cuGetErrorName", 6000, 0, reinterpret_cast<void*>(a)},
        {"cuGetErrorString", 6000, 0, reinterpret_cast<void*>(b)},
        {"cuCtxGetCurrent", 4000, 0, reinterpret_cast<void*>(c)},
        {"cuCtxGetDevice", 2000, 13000, reinterpret_cast<void*>(d)}, // cudaTypedefs.h: PFN_cuCtxGetDevice_v13000
        {"cuCtxPushCurrent", 4000, 0, reinterpret_cast<void*>(e)},
        {"cuCtxPopCurrent", 4000, 0, reinterpret_cast<void*>(f)},
        {"cuStreamGetCtx", 9020, 0, reinterpret_cast<void*>(g)},
        {"cuDeviceGetAttribute", 2000, 0, reinterpret_cast<void*>(h)},
        {"cuLibraryLoadData", 12000, 0, reinterpret_cast<void*>(i)},
        {"cuLibraryGetKernel", 12000, 0, reinterpret_cast<void*>(j)},
        {"cuKernelSetAttribute", 12000, 0, reinterpret_cast<void*>(k)},
        {"cuKernelGetFunction", 12000, 0, reinterpret_cast<void*>(l)},
        {"cuFuncGetAttribute", 2020, 0, reinterpret_cast<void*>(m)},
        {"cuLaunchKernel", 4000, 0, reinterpret_cast<void*>(n)},
        {"cuMemsetD8Async", 3020, 0, reinterpret_cast<void*>(o)},
    };
    return all;
}

cudaError_t lookUp(char const* symbol, void** funcPtr, unsigned int cudaVersion, unsigned long long flags,
    cudaDriverEntryPointQueryResult* driverStatus)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    s.requests.push_back(fake_cuda::EntryPointRequest{symbol, cudaVersion});
    if (s.driverVersion == 0)
    {
        return cudaErrorInsufficientDriver; // no libcuda.so.1: the runtime cannot start
    }
    if (funcPtr == nullptr || symbol == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    // cuda_runtime_api.h 13115-13116: "If the specified CUDA version is greater than the driver
    // version, the API will return ::cudaErrorInvalidValue."
    if (cudaVersion > static_cast<unsigned int>(s.driverVersion))
    {
        return cudaErrorInvalidValue;
    }
    if (flags != cudaEnableDefault && flags != cudaEnableLegacyStream)
    {
        std::fprintf(stderr, "fake CUDA driver: only the legacy-stream functions are modelled\n");
        std::abort();
    }
    // cuda_runtime_api.h 13132-13134: success with NULL for a symbol that is unknown or has no
    // ABI-compatible version at cudaVersion, and the reason in driverStatus.
    *funcPtr = nullptr;
    cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
    for (EntryPoint const& entry : entryPoints())
    {
        if (std::strcmp(entry.symbol, symbol) != 0)
        {
            continue;
        }
        if (entry.replaced != 0 && cudaVersion >= entry.replaced)
        {
            std::fprintf(stderr, "fake CUDA driver: %s at %u has an ABI it does not model\n", symbol, cudaVersion);
            std::abort();
        }
        status = cudaVersion >= entry.introduced ? cudaDriverEntryPointSuccess : cudaDriverEntryPointVersionNotSufficent;
        if (status == cudaDriverEntryPointSuccess)
        {
            *funcPtr = entry.function;
        }
    }
    if (driverStatus != nullptr)
    {
        *driverStatus = status;
    }
    return cudaSuccess;
}

} // namespace

namespace fake_cuda
{

void setDevices(std::vector<int> const& archs)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    s.archs = archs;
    // Contexts are never destroyed (the launcher may hold their handles); new devices get new ones.
    while (s.primary.size() < archs.size())
    {
        s.primary.push_back(FakeContext{static_cast<int>(s.primary.size())});
    }
    contextStack().assign(1, &s.primary.front());
}

void setDriverVersion(int version)
{
    state().driverVersion = version;
}

void clearLog()
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    s.launches.clear();
    s.loadCalls = 0;
}

void makeNoContextCurrent()
{
    contextStack().clear();
}

CUstream createStream(int device)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    s.streams.push_back(FakeStream{&s.primary.at(static_cast<size_t>(device))});
    return reinterpret_cast<CUstream>(&s.streams.back());
}

std::vector<Launch> const& launches()
{
    return state().launches;
}

int loadCalls()
{
    return state().loadCalls;
}

std::vector<EntryPointRequest> const& entryPointRequests()
{
    return state().requests;
}

} // namespace fake_cuda

extern "C"
{

#if CUDART_VERSION >= 12050
cudaError_t cudaGetDriverEntryPointByVersion(char const* symbol, void** funcPtr, unsigned int cudaVersion,
    unsigned long long flags, cudaDriverEntryPointQueryResult* driverStatus)
{
    return lookUp(symbol, funcPtr, cudaVersion, flags, driverStatus);
}
#else
cudaError_t cudaGetDriverEntryPoint(
    char const* symbol, void** funcPtr, unsigned long long flags, cudaDriverEntryPointQueryResult* driverStatus)
{
    return lookUp(symbol, funcPtr, CUDART_VERSION, flags, driverStatus);
}
#endif

char const* cudaGetErrorName(cudaError_t error)
{
    return error == cudaErrorInsufficientDriver ? "cudaErrorInsufficientDriver" : "cudaError";
}

char const* cudaGetErrorString(cudaError_t error)
{
    return error == cudaErrorInsufficientDriver ? "CUDA driver version is insufficient for CUDA runtime version"
                                                : "fake runtime error";
}

// cuda_runtime_api.h 1634-1638: binds the device's primary context to the calling thread, current
// on the device immediately.
cudaError_t cudaSetDevice(int device)
{
    State& s = state();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    if (!validDevice(device))
    {
        return cudaErrorInvalidDevice;
    }
    std::vector<FakeContext*>& stack = contextStack();
    FakeContext* const primary = &s.primary.at(static_cast<size_t>(device));
    if (stack.empty())
    {
        stack.push_back(primary);
    }
    else
    {
        stack.back() = primary;
    }
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device)
{
    FakeContext const* const context = current();
    *device = context == nullptr ? 0 : context->device;
    return cudaSuccess;
}

} // extern "C"
