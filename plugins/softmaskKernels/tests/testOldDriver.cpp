// libsoftmask_kernels' objects on a fake driver older than CUDA 12.0, or none (argv[1]: the driver's
// CUDA version, 0 for none; argv[2]: text the error must contain). Its own process: the library
// looks the driver up once per process.
#include "fakeCudaRuntime.h"
#include "softmask_kernels.h"

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv)
{
    if (argc != 3)
    {
        std::fprintf(stderr, "usage: %s DRIVER_VERSION EXPECTED_TEXT\n", argv[0]);
        return 2;
    }
    fake_cuda::setDriverVersion(std::atoi(argv[1]));
    int failures = 0;
    for (int attempt = 0; attempt < 2; ++attempt) // the second call reports the same, from the cached lookup
    {
        int32_t const status = softmask_sma_prepare(SOFTMASK_DTYPE_FLOAT16, SOFTMASK_DTYPE_FLOAT16, 32);
        std::string const text = softmask_status_string(status);
        std::printf("driver %s, call %d: %s\n", argv[1], attempt + 1, text.c_str());
        if (status != SOFTMASK_STATUS_CUDA_ERROR || text.find(argv[2]) == std::string::npos)
        {
            std::printf("FAIL: expected a CUDA error containing \"%s\"\n", argv[2]);
            ++failures;
        }
    }
    if (!fake_cuda::launches().empty() || fake_cuda::loadCalls() != 0)
    {
        std::printf("FAIL: the library loaded or launched something without a usable driver\n");
        ++failures;
    }
    std::printf("%d of 3 checks passed\n", 3 - failures);
    return failures == 0 ? 0 : 1;
}
