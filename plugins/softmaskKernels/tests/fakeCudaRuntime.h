/*
 * A fake CUDA runtime for host tests: the test executable defines the CUDA runtime functions
 * libsoftmask_kernels.so calls (and exports them, ENABLE_EXPORTS), so the dynamic linker binds the
 * library's calls to these instead of libcudart's. No GPU or driver is needed.
 *
 * It models what the real runtime does where the launcher depends on it (cuda_runtime_api.h):
 * - several devices, each with a compute capability; cudaGetDevice / cudaSetDevice;
 * - a library (cudaLibraryLoadData) is context-independent; a kernel is loaded into a device's
 *   context on first use there (cudaFuncGetAttributes or a launch); a cubin runs only on a device
 *   of the same major arch and a minor >= its own (sm_90 only on 9.0 exactly), PTX on any newer one;
 * - dynamic shared memory above 48 KiB needs the kernel's MaxDynamicSharedMemorySize attribute for
 *   the launching device: cudaKernelSetAttributeForDevice sets it for the device named,
 *   cudaFuncSetAttribute for the current one; a launch above the limit fails;
 * - errors of earlier asynchronous work stay pending until cudaGetLastError returns (and clears)
 *   them; cudaLaunchKernel returns the error of its own launch.
 */
#ifndef SOFTMASK_FAKE_CUDA_RUNTIME_H
#define SOFTMASK_FAKE_CUDA_RUNTIME_H

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <vector>

namespace fake_cuda
{

//! One recorded kernel launch.
struct Launch
{
    int device;
    std::string name; //!< entry point (table kernels) or "alphaToFloat" (the launcher's own kernel)
    int tableArch;    //!< arch of the table row launched; -1 for a kernel not from the table
    bool tablePtx;
    size_t sharedBytes;
};

//! The devices of the process, by compute capability (x10, e.g. {90, 90, 86}); device 0 is
//! current until cudaSetDevice. Before the first call there is one sm_90 device.
void setDevices(std::vector<int> const& archs);

//! Clears the launch log, the counters and any pending error. Libraries, kernels and their
//! attributes stay, as they do in a process: the launcher caches them.
void clearLog();

//! Makes an error pending, as a failed earlier asynchronous operation would.
void setPendingError(cudaError_t error);

std::vector<Launch> const& launches();

//! Number of calls that load code or change kernels since clearLog(): cudaLibraryLoadData,
//! per-device loads, attribute sets.
int loadCalls();

//! Calls of cudaGetLastError / cudaPeekAtLastError since clearLog().
int lastErrorQueries();

} // namespace fake_cuda

#endif // SOFTMASK_FAKE_CUDA_RUNTIME_H
