/*
 * softmask_kernels: C ABI of the fused soft-masked attention forward kernel.
 *
 * Contract: docs/reference/soft_masked_attention.md (math) and docs/ops.md (layout):
 *   query [B, I, E], key/value [B, S, E], mask [B, I, S], alpha [H], key_padding_mask [B, S]
 *   (uint8/bool, nonzero = padded, may be NULL), output [B, I, E]; E = H * D; all contiguous.
 * Rows whose keys are all padded produce zeros.
 *
 * Hard mode (Mask2Former's masked attention): mask_dtype SOFTMASK_DTYPE_BOOL, one byte per key
 * (nonzero = attend); blocked keys are left out of the softmax and a row with no allowed unpadded
 * key attends to every unpadded key (the empty-row rule). alpha is not read (it may be NULL).
 *
 * The kernels are Triton-compiled cubins (plus PTX) embedded at build time, launched through the
 * CUDA driver API with the CUDA runtime linked in statically (no TensorRT, no libcuda link; a
 * driver for CUDA >= 12.0 at run time). Launches run in the context of the stream passed;
 * softmask_sma_prepare uses the context current on the calling thread.
 */
#ifndef SOFTMASK_KERNELS_H
#define SOFTMASK_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum SoftmaskDtype
{
    SOFTMASK_DTYPE_FLOAT32 = 0,
    SOFTMASK_DTYPE_FLOAT16 = 1,
    SOFTMASK_DTYPE_BFLOAT16 = 2,
    SOFTMASK_DTYPE_BOOL = 3 /* masks only: 1 byte per key, the hard mode */
} SoftmaskDtype;

typedef enum SoftmaskStatus
{
    SOFTMASK_STATUS_SUCCESS = 0,
    SOFTMASK_STATUS_INVALID_ARGUMENT = 1,   /* null pointer, non-positive size, bad dtype */
    SOFTMASK_STATUS_UNSUPPORTED = 2,        /* head dim / dtype combination without a kernel */
    SOFTMASK_STATUS_NO_KERNEL_FOR_ARCH = 3, /* no cubin for this GPU and PTX JIT failed */
    SOFTMASK_STATUS_WORKSPACE_TOO_SMALL = 4,
    SOFTMASK_STATUS_CUDA_ERROR = 5
} SoftmaskStatus;

typedef struct SoftmaskSmaParams
{
    const void* query;            /* [B, I, E], dtype */
    const void* key;              /* [B, S, E], dtype */
    const void* value;            /* [B, S, E], dtype */
    const void* mask;             /* [B, I, S], mask_dtype (BOOL: hard mode) */
    const void* alpha;            /* [H], alpha_dtype; not read in hard mode (may be NULL) */
    const uint8_t* key_padding_mask; /* [B, S] or NULL */
    void* output;                 /* [B, I, E], dtype */
    void* workspace;              /* split-KV partials; see softmask_sma_workspace_size */
    size_t workspace_size;        /* bytes available at workspace */
    int32_t batch;                /* B >= 1 */
    int32_t num_queries;          /* I >= 1 */
    int32_t num_keys;             /* S >= 1 */
    int32_t num_heads;            /* H >= 1 */
    int32_t head_dim;             /* D in {16, 32, 64, 128} */
    SoftmaskDtype dtype;          /* query, key, value, output */
    SoftmaskDtype mask_dtype;     /* mask: FLOAT32, FLOAT16, or BOOL (hard mode) */
    SoftmaskDtype alpha_dtype;    /* alpha; ignored in hard mode */
    int32_t num_splits;           /* 0 = choose from the device's SM count; > 0 forces it */
} SoftmaskSmaParams;

/* Upper bound of the workspace bytes any call with these sizes may need, independent of the GPU
 * (the plugin sizes its workspace from the profile's largest shapes with it). */
size_t softmask_sma_workspace_size(int32_t batch, int32_t num_queries, int32_t num_keys,
    int32_t num_heads, int32_t head_dim);

/* Tile rules of the fused kernel, the same as softmask.kernels.heuristics (pure host functions).
 * Query rows per program: 16, 32 or 64, the smallest holding num_queries (64 for head_dim 128). */
int32_t softmask_sma_block_i(int32_t num_queries, int32_t head_dim);

/* Keys per main-loop iteration: 128 for D <= 32 (64 when num_keys % 16 != 0), 64 for D = 64,
 * 32 for D = 128; halved for 4-byte elements. */
int32_t softmask_sma_block_s(int32_t head_dim, int32_t num_keys, int32_t elem_bytes);

/* Split count for programs_per_split = B * H * query tiles programs over key_tiles tiles on
 * num_sms SMs (CTAs of num_warps warps): at least max(2, 8 / num_warps) programs per SM, then the
 * count whose busiest SM streams the fewest key tiles (see softmask/kernels/heuristics.py). */
int32_t softmask_sma_splits_for(int64_t programs_per_split, int64_t key_tiles, int32_t num_sms,
    int32_t num_warps);

/* Key splits of a launch of these sizes with these tiles (params.num_splits == 0). */
int32_t softmask_sma_num_splits(int32_t batch, int32_t num_heads, int32_t num_queries,
    int32_t num_keys, int32_t block_i, int32_t block_s, int32_t num_sms);

/* Most key splits any call with these sizes uses (what softmask_sma_workspace_size sizes for):
 * min(128, ceil(num_keys / smallest BLOCK_S for head_dim)). */
int32_t softmask_sma_max_splits(int32_t num_keys, int32_t head_dim);

/* Load the kernels that calls with these types and head dim need in the current context (the
 * current device's), before the first softmask_sma_forward: selects the table rows for the
 * device's compute capability, loads them into the context (JIT-compiling the PTX when no cubin
 * fits, which can take seconds) and sets their dynamic shared-memory limit for this device.
 * Thread-safe and idempotent: once done for a context, later calls (and forward calls on its
 * streams) only look the kernels up. CUDA_ERROR when no context is current on the thread. Call it outside
 * CUDA stream capture and timed regions; the TensorRT plugin calls it from configurePlugin and
 * onShapeChange. Without it, the first forward call on a device does this work itself.
 * Returns a SoftmaskStatus (NO_KERNEL_FOR_ARCH when nothing in the table runs on this GPU). */
int32_t softmask_sma_prepare(SoftmaskDtype dtype, SoftmaskDtype mask_dtype, int32_t head_dim);

/* Enqueue the forward pass on stream, in the stream's context (the NULL and per-thread streams:
 * the context current on this thread). Returns a SoftmaskStatus; never aborts. Arguments are
 * checked before any CUDA call. batch, num_queries or num_keys equal to 0 is a valid empty call
 * (num_keys == 0 zero-fills the output: every key is missing). query, key, value, mask, output and
 * workspace must be 16-byte aligned. Forced num_splits above the workspace bound are clamped. */
int32_t softmask_sma_forward(const SoftmaskSmaParams* params, cudaStream_t stream);

/* Human-readable text of a status, including the last detailed error message of this thread. */
const char* softmask_status_string(int32_t status);

#ifdef __cplusplus
}
#endif

#endif /* SOFTMASK_KERNELS_H */
