// libsoftmask_kernels' objects against the fake CUDA driver (fakeCudaRuntime.h): which kernel runs on
// which device, per-device shared-memory limits, launches in the stream's context, preparing
// kernels before the first launch, and the driver ABI asked for. Buffers are host memory the fake
// never reads.
#include "fakeCudaRuntime.h"
#include "softmask_kernels.h"
#include "softmask_kernels_table.h"
#include "testHarness.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace
{

// Devices of this process: two of one arch (a multi-GPU server), another arch, one too old, and an
// Ada GPU (8.9, beside the Orin-tuned sm_87 cubins).
constexpr int kFirstHopper = 0;
constexpr int kSecondHopper = 1;
constexpr int kAmpere = 2;
constexpr int kVolta = 3;
constexpr int kAda = 4;

void useDevices()
{
    static bool const configured = [] {
        fake_cuda::setDevices({90, 90, 86, 70, 89});
        return true;
    }();
    (void) configured;
    fake_cuda::clearLog();
}

struct Buffers
{
    std::unique_ptr<void, decltype(&std::free)> data{nullptr, &std::free};
    std::unique_ptr<void, decltype(&std::free)> workspace{nullptr, &std::free};
};

//! Parameters for one call of B=1, I=5, S=300, H=2 with the given types; pointers into `buffers`.
SoftmaskSmaParams params(Buffers& buffers, SoftmaskDtype dtype, SoftmaskDtype maskDtype, int32_t headDim,
    SoftmaskDtype alphaDtype = SOFTMASK_DTYPE_FLOAT32)
{
    buffers.data.reset(std::aligned_alloc(256, 1 << 20));
    SoftmaskSmaParams p{};
    p.batch = 1;
    p.num_queries = 5;
    p.num_keys = 300;
    p.num_heads = 2;
    p.head_dim = headDim;
    p.dtype = dtype;
    p.mask_dtype = maskDtype;
    p.alpha_dtype = alphaDtype;
    p.query = p.key = p.value = p.mask = p.alpha = buffers.data.get();
    p.output = buffers.data.get();
    p.workspace_size = softmask_sma_workspace_size(p.batch, p.num_queries, p.num_keys, p.num_heads, p.head_dim);
    size_t const rounded = (p.workspace_size + 255) / 256 * 256;
    buffers.workspace.reset(std::aligned_alloc(256, rounded));
    p.workspace = buffers.workspace.get();
    return p;
}

//! The sm_90 kernel with the most dynamic shared memory: the one a second GPU would break.
SoftmaskKernelEntry const& largestHopperKernel()
{
    SoftmaskKernelEntry const* largest = nullptr;
    for (size_t i = 0; i < softmask_kernel_table_size; ++i)
    {
        SoftmaskKernelEntry const& e = softmask_kernel_table[i];
        if (e.arch == 90 && !e.is_ptx && (largest == nullptr || e.shared_bytes > largest->shared_bytes))
        {
            largest = &e;
        }
    }
    CHECK(largest != nullptr);
    return *largest;
}

//! Reshapes p into a call for which the launcher picks row e: I matched to its query tile, key
//! padding for a padding kernel, S a multiple of 16 only for the S % 16 == 0 kernels.
void callFor(SoftmaskKernelEntry const& e, SoftmaskSmaParams& p, Buffers& buffers)
{
    static uint8_t const padding[1024] = {};
    p.num_queries = e.block_i == 16 ? 5 : e.block_i == 32 ? 20 : 40;
    p.num_keys = e.key_align == 16 ? 304 : 301;
    p.key_padding_mask = e.padding != 0 ? padding : nullptr;
    p.workspace_size = softmask_sma_workspace_size(p.batch, p.num_queries, p.num_keys, p.num_heads, p.head_dim);
    buffers.workspace.reset(std::aligned_alloc(256, (p.workspace_size + 255) / 256 * 256));
    p.workspace = buffers.workspace.get();
}

int32_t forward(SoftmaskSmaParams const& p)
{
    return softmask_sma_forward(&p, nullptr);
}

std::string statusText(int32_t status)
{
    return softmask_status_string(status);
}

size_t launchesOn(int device, int arch)
{
    size_t count = 0;
    for (fake_cuda::Launch const& launch : fake_cuda::launches())
    {
        count += launch.device == device && launch.tableArch == arch;
    }
    return count;
}

} // namespace

SOFTMASK_TEST(kernelsAboveTheDefaultSharedMemoryRunOnEveryDeviceOfOneArch)
{
    useDevices();
    SoftmaskKernelEntry const& kernel = largestHopperKernel();
    std::printf("         largest sm_90 kernel: %s, %d B dynamic shared memory\n", kernel.name, kernel.shared_bytes);
    CHECK(kernel.shared_bytes > 48 * 1024);
    Buffers buffers;
    SoftmaskSmaParams p = params(buffers, static_cast<SoftmaskDtype>(kernel.dtype),
        static_cast<SoftmaskDtype>(kernel.mask_dtype), kernel.head_dim);
    callFor(kernel, p, buffers);
    for (int device : {kFirstHopper, kSecondHopper})
    {
        CHECK_EQ(cudaSetDevice(device), cudaSuccess);
        int32_t const status = forward(p);
        if (status != SOFTMASK_STATUS_SUCCESS)
        {
            ::softmask_test::fail(__FILE__, __LINE__, "device " + std::to_string(device) + ": " + statusText(status));
        }
        CHECK_EQ(launchesOn(device, 90), size_t{1}); // one kernel: splits and their merge
        CHECK_EQ(fake_cuda::launches().back().name, std::string(kernel.name));
    }
}

SOFTMASK_TEST(eachDeviceRunsTheKernelsBuiltForItsArch)
{
    useDevices();
    Buffers buffers;
    SoftmaskSmaParams const p = params(buffers, SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT16, 64);
    for (int device : {kAmpere, kFirstHopper, kAmpere})
    {
        CHECK_EQ(cudaSetDevice(device), cudaSuccess);
        CHECK_EQ(forward(p), SOFTMASK_STATUS_SUCCESS);
    }
    // 8.6 runs the sm_80 cubins (same major, highest lower minor) unless the build has sm_86 ones.
    CHECK_EQ(launchesOn(kAmpere, 86) + launchesOn(kAmpere, 80), size_t{2});
    CHECK_EQ(launchesOn(kFirstHopper, 90), size_t{1});
}

SOFTMASK_TEST(anAdaGpuNeverRunsTheOrinCubins)
{
    // The driver would run sm_87 cubins on 8.9, but they are tuned for Orin's larger shared
    // memory: 8.9 takes its own, the sm_80 ones, or PTX.
    useDevices();
    Buffers buffers;
    SoftmaskSmaParams const p = params(buffers, SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT16, 64);
    CHECK_EQ(cudaSetDevice(kAda), cudaSuccess);
    CHECK_EQ(forward(p), SOFTMASK_STATUS_SUCCESS);
    CHECK_EQ(launchesOn(kAda, 87), size_t{0});
    CHECK_EQ(launchesOn(kAda, 89) + launchesOn(kAda, 80), size_t{1});
}

SOFTMASK_TEST(aStreamOfAnotherDeviceRunsInItsContextWithThatDevicesKernels)
{
    useDevices();
    CHECK_EQ(cudaSetDevice(kFirstHopper), cudaSuccess);
    CUstream const ampereStream = fake_cuda::createStream(kAmpere);
    Buffers buffers;
    // fp16 alpha: the launcher converts it with its own small kernel first, on the same stream.
    SoftmaskSmaParams const p = params(buffers, SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT16, 32, SOFTMASK_DTYPE_FLOAT16);
    int32_t const status = softmask_sma_forward(&p, ampereStream);
    if (status != SOFTMASK_STATUS_SUCCESS)
    {
        ::softmask_test::fail(__FILE__, __LINE__, statusText(status));
    }
    CHECK_EQ(fake_cuda::launches().size(), size_t{2});
    CHECK_EQ(fake_cuda::launches()[0].name, std::string("softmask_alpha_to_float"));
    for (fake_cuda::Launch const& launch : fake_cuda::launches())
    {
        CHECK_EQ(launch.device, kAmpere);
        CHECK(launch.stream == ampereStream);
    }
    CHECK_EQ(launchesOn(kAmpere, 86) + launchesOn(kAmpere, 80), size_t{1});
    // The caller's current device is left as it was.
    int device = -1;
    CHECK_EQ(cudaGetDevice(&device), cudaSuccess);
    CHECK_EQ(device, kFirstHopper);
}

SOFTMASK_TEST(aBoolMaskRunsTheHardKernelsAndNeverTouchesAlpha)
{
    // Mask2Former's shapes: I = 100 queries, S = 1024 keys (S % 16 == 0: the fast hard row), then
    // key padding (the general hard row). alpha is NULL and declared fp16: hard mode must neither
    // check it nor launch the fp16 -> fp32 conversion.
    useDevices();
    CHECK_EQ(cudaSetDevice(kFirstHopper), cudaSuccess);
    CHECK_EQ(softmask_sma_prepare(SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_BOOL, 32), SOFTMASK_STATUS_SUCCESS);
    static uint8_t const padding[2 * 1024] = {};
    for (bool padded : {false, true})
    {
        fake_cuda::clearLog();
        Buffers buffers;
        SoftmaskSmaParams p = params(buffers, SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_BOOL, 32, SOFTMASK_DTYPE_FLOAT16);
        p.alpha = nullptr;
        p.batch = 2;
        p.num_queries = 100;
        p.num_keys = 1024;
        p.key_padding_mask = padded ? padding : nullptr;
        p.workspace_size = softmask_sma_workspace_size(p.batch, p.num_queries, p.num_keys, p.num_heads, p.head_dim);
        buffers.workspace.reset(std::aligned_alloc(256, (p.workspace_size + 255) / 256 * 256));
        p.workspace = buffers.workspace.get();
        int32_t const status = forward(p);
        if (status != SOFTMASK_STATUS_SUCCESS)
        {
            ::softmask_test::fail(__FILE__, __LINE__, statusText(status));
        }
        CHECK_EQ(fake_cuda::launches().size(), size_t{1});
        fake_cuda::Launch const& launch = fake_cuda::launches()[0];
        CHECK(launch.tableRow >= 0);
        SoftmaskKernelEntry const& row = softmask_kernel_table[static_cast<size_t>(launch.tableRow)];
        CHECK_EQ(row.mask_dtype, int32_t{SOFTMASK_DTYPE_BOOL});
        CHECK_EQ(row.dtype, int32_t{SOFTMASK_DTYPE_FLOAT16});
        CHECK_EQ(row.arch, 90);
        CHECK_EQ(row.padding, padded ? 1 : 0);
    }
    // The soft mode still needs alpha.
    Buffers buffers;
    SoftmaskSmaParams p = params(buffers, SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT16, 32);
    p.alpha = nullptr;
    int32_t const status = forward(p);
    CHECK_EQ(status, SOFTMASK_STATUS_INVALID_ARGUMENT);
    CHECK_CONTAINS(statusText(status), "alpha pointer is NULL");
}

SOFTMASK_TEST(withoutACurrentContextTheCallsSayWhatIsMissing)
{
    useDevices();
    fake_cuda::makeNoContextCurrent();
    int32_t status = softmask_sma_prepare(SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT16, 32);
    CHECK_EQ(status, SOFTMASK_STATUS_CUDA_ERROR);
    CHECK_CONTAINS(statusText(status), "no CUDA context is current");
    Buffers buffers;
    SoftmaskSmaParams const p = params(buffers, SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT16, 32);
    status = softmask_sma_forward(&p, nullptr);
    CHECK_EQ(status, SOFTMASK_STATUS_CUDA_ERROR);
    CHECK_CONTAINS(statusText(status), "CUDA_ERROR_INVALID_CONTEXT");
    CHECK(fake_cuda::launches().empty());
    CHECK_EQ(cudaSetDevice(kFirstHopper), cudaSuccess);
}

SOFTMASK_TEST(everyDriverFunctionIsAskedForAtTheAbiOfCuda12)
{
    useDevices();
    CHECK_EQ(softmask_sma_prepare(SOFTMASK_DTYPE_FLOAT32, SOFTMASK_DTYPE_FLOAT32, 64), SOFTMASK_STATUS_SUCCESS);
    std::vector<fake_cuda::EntryPointRequest> const& requests = fake_cuda::entryPointRequests();
    CHECK(!requests.empty());
    bool libraryApi = false;
    for (fake_cuda::EntryPointRequest const& request : requests)
    {
        CHECK_EQ(request.version, 12000u);
        libraryApi = libraryApi || request.symbol == "cuLibraryLoadData";
    }
    CHECK(libraryApi);
}

SOFTMASK_TEST(prepareLoadsEverythingSoTheFirstCallLoadsNothing)
{
    useDevices();
    CHECK_EQ(cudaSetDevice(kSecondHopper), cudaSuccess);
    CHECK_EQ(softmask_sma_prepare(SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT32, 16), SOFTMASK_STATUS_SUCCESS);
    CHECK(fake_cuda::loadCalls() > 0);
    CHECK(fake_cuda::launches().empty());
    int const loadsAfterPrepare = fake_cuda::loadCalls();
    CHECK_EQ(softmask_sma_prepare(SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT32, 16), SOFTMASK_STATUS_SUCCESS);
    CHECK_EQ(fake_cuda::loadCalls(), loadsAfterPrepare);

    fake_cuda::clearLog();
    Buffers buffers;
    CHECK_EQ(forward(params(buffers, SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT32, 16)), SOFTMASK_STATUS_SUCCESS);
    CHECK_EQ(fake_cuda::loadCalls(), 0);
    CHECK_EQ(launchesOn(kSecondHopper, 90), size_t{1});
}

SOFTMASK_TEST(prepareOnAGpuWithoutAKernelNamesItsArch)
{
    useDevices();
    CHECK_EQ(cudaSetDevice(kVolta), cudaSuccess);
    int32_t const status = softmask_sma_prepare(SOFTMASK_DTYPE_FLOAT32, SOFTMASK_DTYPE_FLOAT32, 32);
    CHECK_EQ(status, SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH);
    CHECK_CONTAINS(statusText(status), "sm_70");
    CHECK_EQ(softmask_sma_prepare(SOFTMASK_DTYPE_FLOAT32, SOFTMASK_DTYPE_FLOAT32, 48), SOFTMASK_STATUS_UNSUPPORTED);
    CHECK_EQ(cudaSetDevice(kFirstHopper), cudaSuccess);
}

SOFTMASK_TEST_MAIN()
