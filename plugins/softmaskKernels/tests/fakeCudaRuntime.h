/*
 * A fake CUDA driver for host tests, reached the way libsoftmask_kernels reaches the real one: a
 * test executable links the launcher's objects with this file instead of libcudart, so the
 * library's cudaGetDriverEntryPointByVersion call returns the fake driver functions below. No GPU
 * or driver is needed. It also defines the few runtime functions the tests call (cudaSetDevice,
 * cudaGetDevice), with the real prototypes (cuda_runtime_api.h is included, so the compiler checks
 * them) and the real semantics for the current context.
 *
 * It models, and refuses, what the real driver does where the launcher depends on it (cuda.h and
 * cuda_runtime_api.h of the toolkit compiled against; the lines are cited in fakeCudaRuntime.cpp):
 * - the entry-point lookup: a version newer than the driver's is cudaErrorInvalidValue; a symbol
 *   introduced after the version asked for, or unknown, comes back NULL with its status;
 * - devices with a compute capability, each with its primary context; a per-thread stack of
 *   current contexts (cudaSetDevice makes the device's primary context current, as the runtime
 *   does since CUDA 12.0); streams belong to a context, the NULL stream to the current one;
 * - a library (cuLibraryLoadData) is context-independent and loaded into a context when a function
 *   is needed there (cuKernelGetFunction, or a launch); a cubin runs only on a device of the same
 *   major arch and a minor >= its own (sm_90 only on 9.0 exactly), PTX on any newer one;
 * - dynamic shared memory above 48 KiB needs MAX_DYNAMIC_SHARED_SIZE_BYTES set for the launching
 *   device (cuKernelSetAttribute), never above the device's opt-in limit; a launch above fails.
 * Before any cudaSetDevice, device 0's primary context is current, as in a process whose CUDA
 * runtime (TensorRT's, PyTorch's) has started.
 */
#ifndef SOFTMASK_FAKE_CUDA_RUNTIME_H
#define SOFTMASK_FAKE_CUDA_RUNTIME_H

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <vector>

namespace fake_cuda
{

//! One recorded kernel launch.
struct Launch
{
    int device;       //!< device of the context it ran in
    std::string name; //!< entry point (table kernels, or the alpha conversion)
    int tableArch;    //!< arch of the table row launched; -1 for a kernel not from the table
    bool tablePtx;
    size_t sharedBytes;
    CUstream stream;
    long tableRow; //!< index of the table row launched; -1 for a kernel not from the table
};

//! The devices of the process, by compute capability (x10, e.g. {90, 90, 86}); device 0's
//! primary context becomes current. Before the first call there is one sm_90 device.
void setDevices(std::vector<int> const& archs);

//! CUDA version of the driver (1000 * major + 10 * minor; default 12060); 0: no driver at all.
void setDriverVersion(int version);

//! Clears the launch log and the counters. Libraries, kernels and their attributes stay, as they
//! do in a process: the launcher caches them.
void clearLog();

//! Leaves no context current on this thread (a thread that never used CUDA).
void makeNoContextCurrent();

//! A new stream in device's primary context (cuStreamCreate with that context current).
CUstream createStream(int device);

std::vector<Launch> const& launches();

//! Calls that load code or change kernels since clearLog(): cuLibraryLoadData, loads into a
//! context, attribute sets.
int loadCalls();

//! Every cudaGetDriverEntryPointByVersion request: symbol and CUDA version asked for.
struct EntryPointRequest
{
    std::string symbol;
    unsigned int version;
};
std::vector<EntryPointRequest> const& entryPointRequests();

} // namespace fake_cuda

#endif // SOFTMASK_FAKE_CUDA_RUNTIME_H
