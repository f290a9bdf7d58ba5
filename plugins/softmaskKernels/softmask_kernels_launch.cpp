/*
 * Kernel selection, image loading and launch for libsoftmask_kernels (validated params only), on
 * the CUDA driver API (softmask_cuda_driver.h).
 *
 * Selection by the device's compute capability: a cubin for exactly that arch; else a cubin of the
 * same major and lower minor (binary compatible; never sm_90a, which runs only on 9.0); else the
 * PTX (JIT-compiled by the driver). Within that, the most specialised row the call can use: the
 * query tile matched to I (softmask_sma_block_i), then an unpadded S % 16 == 0 kernel over the
 * general one (key padding, any S).
 *
 * Each image is loaded once per process with cuLibraryLoadData (a CUDA library is
 * context-independent). What depends on the device is done once per (kernel, device): the dynamic
 * shared-memory limit (cuKernelSetAttribute); what depends on the context once per (kernel,
 * context): loading the kernel there (cuKernelGetFunction and an attribute query; the PTX JIT
 * happens here). A launch runs in its stream's context (cuLaunchKernel with the CUkernel), so the
 * kernels are readied in that context, made current for the time it takes when another one is.
 * prepare() readies every kernel a call of those types can pick in the current context, outside
 * any launch; launch() then only looks them up.
 */
#include "softmask_cuda_driver.h"
#include "softmask_kernels.h"
#include "softmask_kernels_internal.h"
#include "softmask_kernels_table.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

namespace softmask
{
namespace kernels
{
namespace
{

constexpr int32_t kDefaultDynamicSharedLimit = 48 * 1024;

struct DeviceInfo
{
    int32_t arch{0};
    int32_t numSms{0};
};

//! Where a launch runs: a context and its device.
struct Target
{
    CUcontext context{nullptr};
    CUdevice device{0};
    DeviceInfo info{};
};

struct LoadedKernel
{
    CUkernel kernel{nullptr};
    SoftmaskKernelEntry const* entry{nullptr};
};

/* Whether row e can run this call: same types and head dim, padding and S it accepts. */
bool usable(SoftmaskKernelEntry const& e, SoftmaskSmaParams const& p)
{
    return e.dtype == p.dtype && e.mask_dtype == p.mask_dtype && e.head_dim == p.head_dim
        && (e.padding != 0 || p.key_padding_mask == nullptr) && e.key_align > 0 && p.num_keys % e.key_align == 0;
}

/* How well a usable row fits the call (higher is better): matched query tile, then unpadded. */
int32_t fit(SoftmaskKernelEntry const& e, SoftmaskSmaParams const& p)
{
    return (e.block_i == softmask_sma_block_i(p.num_queries, p.head_dim) ? 4 : 0) + (e.padding == 0 ? 2 : 0);
}

/* A cubin of another minor of the same major runs here, except the Hopper-only sm_90 and the
   Orin-tuned sm_87 (sized for Orin's larger shared memory), which serve their own arch only. */
bool compatibleCubin(int32_t cubinArch, int32_t arch)
{
    return cubinArch / 10 == arch / 10 && cubinArch != 90 && cubinArch != 87;
}

/* Best row: exact cubin, compatible cubin (highest minor), PTX (highest arch); then fit. */
int64_t pickEntry(SoftmaskSmaParams const& p, int32_t arch, bool allowCubin)
{
    int64_t best = -1;
    int32_t bestRank = -1;
    for (size_t i = 0; i < softmask_kernel_table_size; ++i)
    {
        SoftmaskKernelEntry const& e = softmask_kernel_table[i];
        if (!usable(e, p) || e.arch > arch)
        {
            continue;
        }
        int32_t rank = -1;
        if (!e.is_ptx && allowCubin && e.arch == arch)
        {
            rank = 3000;
        }
        else if (!e.is_ptx && allowCubin && compatibleCubin(e.arch, arch))
        {
            rank = 2000 + e.arch;
        }
        else if (e.is_ptx)
        {
            rank = 1000 + e.arch;
        }
        rank = rank < 0 ? rank : rank * 8 + fit(e, p);
        if (rank > bestRank)
        {
            best = static_cast<int64_t>(i);
            bestRank = rank;
        }
    }
    return best;
}

// Guarded by gMutex. Nothing here is ever unloaded: the images live as long as the process.
std::mutex gMutex;
std::map<void const*, CUkernel> gKernels;             // image -> its kernel (library loaded once)
std::set<std::pair<CUkernel, CUdevice>> gSharedSet;   // dynamic shared-memory limit raised there
std::set<std::pair<CUkernel, CUcontext>> gLoadedIn;   // kernel loaded into that context
std::map<CUdevice, DeviceInfo> gDevices;              // device -> arch, SM count

/* Makes context current for the scope when another one is (a stream of another device). */
class ContextScope
{
public:
    ContextScope(Driver const& d, CUcontext context)
        : mDriver(d)
    {
        CUcontext current = nullptr;
        mResult = d.ctxGetCurrent(&current);
        if (mResult == CUDA_SUCCESS && current != context)
        {
            mResult = d.ctxPushCurrent(context);
            mPushed = mResult == CUDA_SUCCESS;
        }
    }
    ~ContextScope()
    {
        if (mPushed)
        {
            CUcontext popped = nullptr;
            mDriver.ctxPopCurrent(&popped);
        }
    }
    ContextScope(ContextScope const&) = delete;
    ContextScope& operator=(ContextScope const&) = delete;
    CUresult result() const
    {
        return mResult;
    }

private:
    Driver const& mDriver;
    CUresult mResult{CUDA_SUCCESS};
    bool mPushed{false};
};

int32_t cudaError(Driver const& d, std::string const& what, CUresult result)
{
    return setError(SOFTMASK_STATUS_CUDA_ERROR, driverText(d, what, result));
}

int32_t queryDevice(Driver const& d, CUdevice device, DeviceInfo* out)
{
    auto const found = gDevices.find(device);
    if (found != gDevices.end())
    {
        *out = found->second;
        return SOFTMASK_STATUS_SUCCESS;
    }
    int major = 0;
    int minor = 0;
    int numSms = 0;
    CUresult r = d.deviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
    if (r == CUDA_SUCCESS)
    {
        r = d.deviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
    }
    if (r == CUDA_SUCCESS)
    {
        r = d.deviceGetAttribute(&numSms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device);
    }
    if (r != CUDA_SUCCESS)
    {
        return cudaError(d, "querying device " + std::to_string(device), r);
    }
    *out = DeviceInfo{major * 10 + minor, numSms};
    gDevices.emplace(device, *out);
    return SOFTMASK_STATUS_SUCCESS;
}

/* The context a launch on stream runs in (the current one for the NULL and per-thread streams)
 * and its device. */
int32_t targetOf(Driver const& d, CUstream stream, Target* out)
{
    CUresult r = d.streamGetCtx(stream, &out->context);
    if (r != CUDA_SUCCESS)
    {
        return cudaError(d,
            "cuStreamGetCtx (the stream's context; the default stream needs a context current on this thread, "
            "e.g. after cudaSetDevice)",
            r);
    }
    ContextScope const scope(d, out->context);
    r = scope.result();
    if (r == CUDA_SUCCESS)
    {
        r = d.ctxGetDevice(&out->device);
    }
    if (r != CUDA_SUCCESS)
    {
        return cudaError(d, "cuCtxGetDevice (the stream's device)", r);
    }
    return queryDevice(d, out->device, &out->info);
}

/* The kernel of an image, its library loaded on first use. */
int32_t loadImage(Driver const& d, void const* image, char const* name, std::string const& what, CUkernel* out)
{
    auto const found = gKernels.find(image);
    if (found != gKernels.end())
    {
        *out = found->second;
        return SOFTMASK_STATUS_SUCCESS;
    }
    CUlibrary library{};
    CUresult r = d.libraryLoadData(&library, image, nullptr, nullptr, 0, nullptr, nullptr, 0);
    if (r != CUDA_SUCCESS)
    {
        return setError(SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH, driverText(d, "loading " + what, r));
    }
    CUkernel kernel{};
    r = d.libraryGetKernel(&kernel, library, name);
    if (r != CUDA_SUCCESS)
    {
        // The library stays loaded (never unloaded, like the others): this is a build defect.
        return cudaError(d, std::string("cuLibraryGetKernel for ") + name + " in " + what, r);
    }
    gKernels.emplace(image, kernel);
    *out = kernel;
    return SOFTMASK_STATUS_SUCCESS;
}

/* Makes kernel launchable in target's context (the current one): raises its dynamic
 * shared-memory limit for the device, and loads it into the context now (the attribute query
 * needs it there), so that neither happens in the first launch. */
int32_t readyIn(Driver const& d, CUkernel kernel, int32_t sharedBytes, Target const& target, std::string const& what)
{
    if (sharedBytes > kDefaultDynamicSharedLimit && gSharedSet.count({kernel, target.device}) == 0)
    {
        CUresult const r
            = d.kernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes, kernel, target.device);
        if (r != CUDA_SUCCESS)
        {
            return cudaError(d,
                "cuKernelSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, " + std::to_string(sharedBytes) + " B, device "
                    + std::to_string(target.device) + ") for " + what,
                r);
        }
        gSharedSet.emplace(kernel, target.device);
    }
    if (gLoadedIn.count({kernel, target.context}) != 0)
    {
        return SOFTMASK_STATUS_SUCCESS;
    }
    CUfunction function{};
    CUresult r = d.kernelGetFunction(&function, kernel);
    int registers = 0;
    if (r == CUDA_SUCCESS)
    {
        r = d.funcGetAttribute(&registers, CU_FUNC_ATTRIBUTE_NUM_REGS, function);
    }
    if (r != CUDA_SUCCESS)
    {
        return setError(SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH,
            driverText(d, "loading " + what + " on device " + std::to_string(target.device), r));
    }
    gLoadedIn.emplace(kernel, target.context);
    return SOFTMASK_STATUS_SUCCESS;
}

std::string rowText(SoftmaskKernelEntry const& e)
{
    return std::string(e.is_ptx ? "the PTX (driver JIT) of " : "the cubin of ") + e.name + " for sm_"
        + std::to_string(e.arch);
}

/* The best loadable kernel for the call p in target's context (loaded and readied there on first
 * use; a lookup afterwards): a cubin that fails to load falls back to the PTX. Caller holds
 * gMutex and has made the context current. */
int32_t findKernel(Driver const& d, SoftmaskSmaParams const& p, Target const& target, LoadedKernel* out)
{
    int32_t status = SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH;
    bool tried = false;
    for (bool allowCubin : {true, false})
    {
        int64_t const row = pickEntry(p, target.info.arch, allowCubin);
        if (row < 0)
        {
            continue;
        }
        tried = true;
        SoftmaskKernelEntry const& e = softmask_kernel_table[static_cast<size_t>(row)];
        status = loadImage(d, e.image, e.name, rowText(e), &out->kernel);
        if (status == SOFTMASK_STATUS_SUCCESS)
        {
            status = readyIn(d, out->kernel, e.shared_bytes, target, rowText(e));
        }
        if (status == SOFTMASK_STATUS_SUCCESS)
        {
            out->entry = &e;
            return status;
        }
    }
    // A failed load already recorded the CUDA error; only a missing row needs a message here.
    if (!tried)
    {
        setError(status, "no cubin or PTX usable on sm_" + std::to_string(target.info.arch) + " for dtype "
                + std::to_string(p.dtype) + ", mask dtype " + std::to_string(p.mask_dtype) + ", head dim "
                + std::to_string(p.head_dim));
    }
    return status;
}

int32_t alphaKernel(Driver const& d, Target const& target, CUkernel* out)
{
    std::string const what = std::string("the alpha conversion (") + kAlphaKernelName + ")";
    int32_t const status = loadImage(d, softmask_alpha_image, kAlphaKernelName, what, out);
    return status == SOFTMASK_STATUS_SUCCESS ? readyIn(d, *out, 0, target, what) : status;
}

/* Whether a call first converts an fp16 alpha to fp32 (hard mode never reads alpha). */
bool convertsAlpha(SoftmaskSmaParams const& p)
{
    return p.alpha_dtype == SOFTMASK_DTYPE_FLOAT16 && p.mask_dtype != SOFTMASK_DTYPE_BOOL;
}

/* The kernel for call p on stream, with the alpha conversion when alpha is fp16, readied in the
 * stream's context. */
int32_t kernelsFor(Driver const& d, SoftmaskSmaParams const& p, CUstream stream, Target* target, LoadedKernel* kernel,
    CUkernel* alpha)
{
    std::lock_guard<std::mutex> lock(gMutex);
    int32_t status = targetOf(d, stream, target);
    if (status != SOFTMASK_STATUS_SUCCESS)
    {
        return status;
    }
    ContextScope const scope(d, target->context);
    if (scope.result() != CUDA_SUCCESS)
    {
        return cudaError(d, "making the stream's context current", scope.result());
    }
    status = findKernel(d, p, *target, kernel);
    if (status == SOFTMASK_STATUS_SUCCESS && convertsAlpha(p))
    {
        status = alphaKernel(d, *target, alpha);
    }
    return status;
}

int32_t launchOne(Driver const& d, CUkernel kernel, std::string const& what, dim3 grid, uint32_t block,
    uint32_t sharedBytes, void** args, CUstream stream)
{
    // cuda.h, cuLaunchKernel: a CUkernel cast to CUfunction runs in the stream's context.
    CUresult const r = d.launchKernel(reinterpret_cast<CUfunction>(kernel), grid.x, grid.y, grid.z, block, 1, 1,
        sharedBytes, stream, args, nullptr);
    return r == CUDA_SUCCESS ? SOFTMASK_STATUS_SUCCESS : cudaError(d, "cuLaunchKernel for " + what, r);
}

size_t dtypeBytes(SoftmaskDtype t)
{
    return t == SOFTMASK_DTYPE_FLOAT32 ? 4 : 2;
}

} // namespace

int32_t launch(SoftmaskSmaParams const& p, cudaStream_t stream)
{
    if (p.batch == 0 || p.num_queries == 0)
    {
        return SOFTMASK_STATUS_SUCCESS;
    }
    Driver const* const d = driver();
    if (d == nullptr)
    {
        return SOFTMASK_STATUS_CUDA_ERROR;
    }
    if (p.num_keys == 0)
    {
        // No key at all: every row is fully padded, so the contract's output is zeros.
        size_t const bytes = static_cast<size_t>(p.batch) * p.num_queries * p.num_heads * p.head_dim * dtypeBytes(p.dtype);
        CUresult const r = d->memsetD8Async(reinterpret_cast<CUdeviceptr>(p.output), 0, bytes, stream);
        return r == CUDA_SUCCESS ? SOFTMASK_STATUS_SUCCESS : cudaError(*d, "cuMemsetD8Async (zero output)", r);
    }
    Target target{};
    LoadedKernel kernel{};
    CUkernel alphaToFloat{nullptr};
    // Already prepared (softmask_sma_prepare) in this context for these types: lookups only.
    int32_t status = kernelsFor(*d, p, stream, &target, &kernel, &alphaToFloat);
    if (status != SOFTMASK_STATUS_SUCCESS)
    {
        return status;
    }
    DeviceInfo const& info = target.info;
    SoftmaskKernelEntry const& entry = *kernel.entry;
    int32_t splits = resolveSplits(p, info.numSms, entry.block_i, entry.block_s);
    WorkspaceLayout const layout = workspaceLayout(p.batch, p.num_queries, p.num_heads, p.head_dim, splits);
    if (p.workspace == nullptr || p.workspace_size < layout.total)
    {
        return setError(SOFTMASK_STATUS_WORKSPACE_TOO_SMALL,
            "workspace needs " + std::to_string(layout.total) + " bytes for " + std::to_string(splits)
                + " splits, got " + std::to_string(p.workspace_size)
                + (p.workspace == nullptr ? " (NULL pointer)" : ""));
    }
    if (reinterpret_cast<uintptr_t>(p.workspace) % 16 != 0)
    {
        return setError(SOFTMASK_STATUS_INVALID_ARGUMENT, "workspace pointer is not 16-byte aligned");
    }

    char* const base = static_cast<char*>(p.workspace);
    void* accPtr = base;
    void* mlPtr = base + layout.accBytes;
    void* counterPtr = base + layout.accBytes + layout.mlBytes;
    char* const afterCounters = base + layout.accBytes + layout.mlBytes + layout.counterBytes;
    float* const alphaFloat = reinterpret_cast<float*>(afterCounters);
    void* scratch = layout.scratchBytes > 0 ? afterCounters + layout.alphaBytes : nullptr;
    void* profileScratch = nullptr;

    if (splits > 1)
    {
        // The fused merge counts finished splits per (b, h, query tile); counts start at zero.
        CUresult const r = d->memsetD8Async(reinterpret_cast<CUdeviceptr>(counterPtr), 0, layout.counterBytes, stream);
        if (r != CUDA_SUCCESS)
        {
            return cudaError(*d, "cuMemsetD8Async (clearing the merge counters)", r);
        }
    }
    // Hard mode: alpha may be NULL; the kernel never reads it.
    void const* alpha = p.alpha;
    if (convertsAlpha(p))
    {
        void const* alphaHalf = p.alpha;
        float* alphaOut = alphaFloat;
        int32_t heads = p.num_heads;
        void* alphaArgs[] = {&alphaHalf, &alphaOut, &heads};
        uint32_t const blocks = static_cast<uint32_t>((heads + kAlphaThreads - 1) / kAlphaThreads);
        status = launchOne(*d, alphaToFloat, kAlphaKernelName, dim3(blocks), kAlphaThreads, 0, alphaArgs, stream);
        if (status != SOFTMASK_STATUS_SUCCESS)
        {
            return status;
        }
        alpha = alphaFloat;
    }

    // Without a key padding mask the general kernels read (and ignore) bytes at any readable
    // pointer at least B * S bytes long: the mask is.
    void const* padding = p.key_padding_mask != nullptr ? static_cast<void const*>(p.key_padding_mask) : p.mask;
    int32_t numQueries = p.num_queries;
    int32_t numKeys = p.num_keys;
    int32_t numHeads = p.num_heads;
    int32_t numSplits = splits;
    int32_t hasPadding = p.key_padding_mask != nullptr ? 1 : 0;
    void const* q = p.query;
    void const* k = p.key;
    void const* v = p.value;
    void const* m = p.mask;
    void* o = p.output;

    void* args[] = {&q, &k, &v, &m, &alpha, &padding, &o, &accPtr, &mlPtr, &counterPtr, &numQueries, &numKeys,
        &numHeads, &numSplits, &hasPadding, &scratch, &profileScratch};
    int32_t const queryTiles = (numQueries + entry.block_i - 1) / entry.block_i;
    return launchOne(*d, kernel.kernel, entry.name, dim3(numHeads * queryTiles, numSplits, p.batch),
        32 * entry.num_warps, entry.shared_bytes, args, stream);
}

int32_t prepare(KernelSpec const& spec)
{
    Driver const* const d = driver();
    if (d == nullptr)
    {
        return SOFTMASK_STATUS_CUDA_ERROR;
    }
    CUcontext current = nullptr;
    CUresult const r = d->ctxGetCurrent(&current);
    if (r != CUDA_SUCCESS || current == nullptr)
    {
        return r != CUDA_SUCCESS ? cudaError(*d, "cuCtxGetCurrent", r)
                                 : setError(SOFTMASK_STATUS_CUDA_ERROR,
                                     "no CUDA context is current on this thread: make the device's one current "
                                     "first (cudaSetDevice, cuCtxSetCurrent)");
    }
    // Every row a call of these types can pick: each query tile (I of 16, 32, 64 picks 16, 32,
    // 64), with and without key padding, S a multiple of 16 or not; and the alpha conversion
    // (soft mode only: kernelsFor skips it for a bool mask).
    SoftmaskSmaParams p{};
    p.dtype = static_cast<SoftmaskDtype>(spec.dtype);
    p.mask_dtype = static_cast<SoftmaskDtype>(spec.maskDtype);
    p.alpha_dtype = SOFTMASK_DTYPE_FLOAT16;
    p.head_dim = spec.headDim;
    uint8_t const somePadding = 0;
    Target target{};
    LoadedKernel kernel{};
    CUkernel alpha{nullptr};
    for (int32_t queries : {16, 32, 64})
    {
        for (bool padded : {false, true})
        {
            for (int32_t keys : {16, 17})
            {
                p.num_queries = queries;
                p.num_keys = keys;
                p.key_padding_mask = padded ? &somePadding : nullptr;
                int32_t const status = kernelsFor(*d, p, nullptr, &target, &kernel, &alpha);
                if (status != SOFTMASK_STATUS_SUCCESS)
                {
                    return status;
                }
            }
        }
    }
    return SOFTMASK_STATUS_SUCCESS;
}

} // namespace kernels
} // namespace softmask
