/*
 * Kernel selection, image loading and launch for libsoftmask_kernels (validated params only).
 *
 * Selection by the device's compute capability: a cubin for exactly that arch; else a cubin of the
 * same major and lower minor (binary compatible; never sm_90a, which runs only on 9.0); else the
 * PTX (JIT-compiled by the driver). Within that, the most specialised row the call can use: the
 * query tile matched to I (softmask_sma_block_i), then an unpadded S % 16 == 0 kernel over the
 * general one (key padding, any S). Each image is loaded once per process with cudaLibraryLoadData
 * (a CUDA library is context-independent); everything that depends on the device is done per
 * (row, device): loading into that device's context (the PTX JIT happens here), the dynamic
 * shared-memory limit (cudaKernelSetAttributeForDevice), and the device's arch and SM count.
 * prepare() does all of it, for every row a call of those types can pick, outside any launch;
 * launch() then only looks the prepared kernels up.
 */
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

struct LoadedKernel
{
    cudaKernel_t kernel{nullptr};
    SoftmaskKernelEntry const* entry{nullptr};
};

std::string cudaText(std::string const& what, cudaError_t err)
{
    return what + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
}

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

struct DeviceInfo
{
    int32_t arch{0};
    int32_t numSms{0};
};

// Guarded by gMutex. Nothing here is ever unloaded: the images live as long as the process.
std::mutex gMutex;
std::map<size_t, cudaKernel_t> gRowKernels;       // table row -> kernel (library loaded once per process)
std::set<std::pair<size_t, int>> gRowsOnDevice;   // (row, device): in that device's context, smem limit set
std::map<int, DeviceInfo> gDevices;               // device -> arch, SM count

int32_t queryDevice(int device, DeviceInfo* out)
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
    cudaError_t err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    if (err == cudaSuccess)
    {
        err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    }
    if (err == cudaSuccess)
    {
        err = cudaDeviceGetAttribute(&numSms, cudaDevAttrMultiProcessorCount, device);
    }
    if (err != cudaSuccess)
    {
        return setError(SOFTMASK_STATUS_CUDA_ERROR, cudaText("querying device " + std::to_string(device), err));
    }
    *out = DeviceInfo{major * 10 + minor, numSms};
    gDevices.emplace(device, *out);
    return SOFTMASK_STATUS_SUCCESS;
}

int32_t loadRow(size_t row, cudaKernel_t* out)
{
    auto const found = gRowKernels.find(row);
    if (found != gRowKernels.end())
    {
        *out = found->second;
        return SOFTMASK_STATUS_SUCCESS;
    }
    SoftmaskKernelEntry const& e = softmask_kernel_table[row];
    cudaLibrary_t library{};
    cudaError_t err = cudaLibraryLoadData(&library, e.image, nullptr, nullptr, 0, nullptr, nullptr, 0);
    if (err != cudaSuccess)
    {
        return setError(SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH,
            cudaText(e.is_ptx ? "loading the PTX (driver JIT)" : "loading the cubin", err) + " for sm_"
                + std::to_string(e.arch));
    }
    cudaKernel_t kernel{};
    err = cudaLibraryGetKernel(&kernel, library, e.name);
    if (err != cudaSuccess)
    {
        cudaLibraryUnload(library);
        return setError(SOFTMASK_STATUS_CUDA_ERROR, cudaText("cudaLibraryGetKernel", err) + " for " + e.name);
    }
    gRowKernels.emplace(row, kernel);
    *out = kernel;
    return SOFTMASK_STATUS_SUCCESS;
}

/* Makes row's kernel launchable on device (the current one): raises its dynamic shared-memory
 * limit for that device, and loads it into the device's context now (cudaFuncGetAttributes
 * needs it there), so that neither happens in the first launch. */
int32_t readyOnDevice(size_t row, cudaKernel_t kernel, int device)
{
    if (gRowsOnDevice.count({row, device}) != 0)
    {
        return SOFTMASK_STATUS_SUCCESS;
    }
    SoftmaskKernelEntry const& e = softmask_kernel_table[row];
    if (e.shared_bytes > 48 * 1024)
    {
        cudaError_t const err = cudaKernelSetAttributeForDevice(
            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, e.shared_bytes, device);
        if (err != cudaSuccess)
        {
            return setError(SOFTMASK_STATUS_CUDA_ERROR,
                cudaText("cudaKernelSetAttributeForDevice(MaxDynamicSharedMemorySize, " + std::to_string(e.shared_bytes)
                        + " B, device " + std::to_string(device) + ")",
                    err)
                    + " for " + e.name);
        }
    }
    cudaFuncAttributes attributes{};
    cudaError_t const err = cudaFuncGetAttributes(&attributes, reinterpret_cast<void const*>(kernel));
    if (err != cudaSuccess)
    {
        return setError(SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH,
            cudaText(e.is_ptx ? "loading the PTX (driver JIT)" : "loading the cubin", err) + " on device "
                + std::to_string(device) + " for " + e.name);
    }
    gRowsOnDevice.emplace(row, device);
    return SOFTMASK_STATUS_SUCCESS;
}

/* The best loadable kernel for the call p on device (loaded and readied there on first use; a
 * lookup afterwards): a cubin that fails to load falls back to the PTX. Caller holds gMutex. */
int32_t findKernel(SoftmaskSmaParams const& p, int device, int32_t arch, LoadedKernel* out)
{
    int32_t status = SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH;
    bool tried = false;
    for (bool allowCubin : {true, false})
    {
        int64_t const row = pickEntry(p, arch, allowCubin);
        if (row < 0)
        {
            continue;
        }
        tried = true;
        auto const index = static_cast<size_t>(row);
        status = loadRow(index, &out->kernel);
        if (status == SOFTMASK_STATUS_SUCCESS)
        {
            status = readyOnDevice(index, out->kernel, device);
        }
        if (status == SOFTMASK_STATUS_SUCCESS)
        {
            out->entry = &softmask_kernel_table[index];
            return status;
        }
    }
    // A failed load already recorded the CUDA error; only a missing row needs a message here.
    if (!tried)
    {
        setError(status, "no cubin or PTX usable on sm_" + std::to_string(arch) + " for dtype "
                + std::to_string(p.dtype) + ", mask dtype " + std::to_string(p.mask_dtype) + ", head dim "
                + std::to_string(p.head_dim));
    }
    return status;
}

/* The kernel for call p on device, with the device's arch and SM count. */
int32_t kernelFor(SoftmaskSmaParams const& p, int device, LoadedKernel* kernel, DeviceInfo* info)
{
    std::lock_guard<std::mutex> lock(gMutex);
    int32_t const status = queryDevice(device, info);
    return status == SOFTMASK_STATUS_SUCCESS ? findKernel(p, device, info->arch, kernel) : status;
}

int32_t currentDevice(int* device)
{
    cudaError_t const err = cudaGetDevice(device);
    return err == cudaSuccess ? SOFTMASK_STATUS_SUCCESS
                              : setError(SOFTMASK_STATUS_CUDA_ERROR, cudaText("cudaGetDevice", err));
}

int32_t launchOne(LoadedKernel const& k, dim3 grid, void** args, cudaStream_t stream)
{
    dim3 const block(32 * k.entry->num_warps);
    cudaError_t const err = cudaLaunchKernel(
        reinterpret_cast<void const*>(k.kernel), grid, block, args, k.entry->shared_bytes, stream);
    if (err != cudaSuccess)
    {
        return setError(SOFTMASK_STATUS_CUDA_ERROR, cudaText("cudaLaunchKernel", err) + " for " + k.entry->name);
    }
    return SOFTMASK_STATUS_SUCCESS;
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
    if (p.num_keys == 0)
    {
        // No key at all: every row is fully padded, so the contract's output is zeros.
        size_t const bytes = static_cast<size_t>(p.batch) * p.num_queries * p.num_heads * p.head_dim * dtypeBytes(p.dtype);
        cudaError_t const err = cudaMemsetAsync(p.output, 0, bytes, stream);
        return err == cudaSuccess ? SOFTMASK_STATUS_SUCCESS
                                  : setError(SOFTMASK_STATUS_CUDA_ERROR, cudaText("cudaMemsetAsync", err));
    }
    int device = 0;
    LoadedKernel kernel{};
    DeviceInfo info{};
    int32_t status = currentDevice(&device);
    if (status == SOFTMASK_STATUS_SUCCESS)
    {
        // Already prepared (softmask_sma_prepare) on this device for these types: a lookup only.
        status = kernelFor(p, device, &kernel, &info);
    }
    if (status != SOFTMASK_STATUS_SUCCESS)
    {
        return status;
    }
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
        cudaError_t const err = cudaMemsetAsync(counterPtr, 0, layout.counterBytes, stream);
        if (err != cudaSuccess)
        {
            return setError(SOFTMASK_STATUS_CUDA_ERROR, cudaText("clearing the merge counters", err));
        }
    }
    void const* alpha = p.alpha;
    if (p.alpha_dtype == SOFTMASK_DTYPE_FLOAT16)
    {
        cudaError_t const err = convertAlphaToFloat(p.alpha, alphaFloat, p.num_heads, stream);
        if (err != cudaSuccess)
        {
            return setError(SOFTMASK_STATUS_CUDA_ERROR, cudaText("converting alpha to float", err));
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
    return launchOne(kernel, dim3(numHeads * queryTiles, numSplits, p.batch), args, stream);
}

int32_t prepare(KernelSpec const& spec)
{
    int device = 0;
    int32_t status = currentDevice(&device);
    if (status != SOFTMASK_STATUS_SUCCESS)
    {
        return status;
    }
    // Every row a call of these types can pick: each query tile (I of 16, 32, 64 picks 16, 32,
    // 64), with and without key padding, S a multiple of 16 or not.
    SoftmaskSmaParams p{};
    p.dtype = static_cast<SoftmaskDtype>(spec.dtype);
    p.mask_dtype = static_cast<SoftmaskDtype>(spec.maskDtype);
    p.head_dim = spec.headDim;
    uint8_t const somePadding = 0;
    LoadedKernel kernel{};
    DeviceInfo info{};
    for (int32_t queries : {16, 32, 64})
    {
        for (bool padded : {false, true})
        {
            for (int32_t keys : {16, 17})
            {
                p.num_queries = queries;
                p.num_keys = keys;
                p.key_padding_mask = padded ? &somePadding : nullptr;
                status = kernelFor(p, device, &kernel, &info);
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
