/*
 * attention.cu — tiled attention with online softmax on CUDA: FlashAttention-2-style prefill on
 * tensor cores, split-KV decode with GQA packing, the combine pass, and the per-stream staging
 * that carries each call's host arrays to the device.
 *
 * NONE OF THIS HAS RUN ON A GPU. It was written and compiled (sm_80, sm_90; ptxas reports no
 * spills) on a machine without one. tests/test_cuda_attention_plan.cpp checks the planning
 * (attention_plan.h) and runs the device code (attention_kernels.h) on a CPU emulation of the
 * CUDA features it uses, against the fp64 reference; the emulation's ldmatrix / mma fragment
 * layouts are its reading of the PTX ISA, so a shared misreading would pass. The host glue below
 * and the real hardware behaviour are checked by tests/test_attention.cpp on the first machine
 * with a GPU.
 *
 * Paths (attention_plan.h plans the blocks, one work item each):
 *  - attn_mma_kernel<D> (f16 cache, sequences with >= 16 queries): one query head, 64 query
 *    rows, 4 warps of 16 rows (FA2: warps split the rows, never the keys). Q times the softmax
 *    scale is converted to f16 into shared memory (so |q scale| must stay below 65504) and, for
 *    D <= 128, kept in registers as mma A fragments (ldmatrix x4);
 *    for D = 256 it stays in shared memory and is re-read per tile (the O accumulator alone is
 *    128 registers there). K/V tiles of 64 keys (32 for D = 256) are double-buffered with
 *    cp.async.cg 16-byte copies (commit/wait groups; plain loads when rows are not 16-byte
 *    aligned) into rows padded by 16 bytes, which keeps ldmatrix conflict-free for every D.
 *    S = Q K^T and O += P V run on mma.sync.m16n8k16 (f16 in, f32 accumulate); the softmax lives
 *    in the S accumulators (row max/sum over the 4 lanes of a quad) and P is re-packed from
 *    them as the A operand of P V without touching shared memory. A warp skips tiles none of
 *    its rows can see (causal / window) and the mask math on tiles all its rows fully see.
 *    Softcap uses tanh_fast here (1 - 2 / (1 + __expf(2y)), ~1e-7 absolute). The items are
 *    launched heaviest first (cuda_attn_plan_order): in a causal prefill the last token blocks
 *    see the most keys, and started last they would run alone in the tail wave.
 *  - attn_simt_kernel<D, T> (decode, short query runs, and every f32 cache — the f32 tolerance
 *    of 1e-5 forbids rounding to f16): one KV head, its H/Hkv query heads times consecutive
 *    tokens (<= 16 rows), f32 math. K/V tiles double-buffered with cp.async; in the score step
 *    4 (or 8) lanes share a key, each widening a quarter (eighth) of its row once for all the
 *    rows and summing partial dots with shuffles (K rows padded so that this read is free of
 *    bank conflicts: simt_ldk); one warp per row takes the softmax step; each thread
 *    accumulates pairs of output dims of P V.
 *  - Long key ranges are cut into kv_splits items whose (o, m, l) partials attn_combine_kernel
 *    merges. kv_splits = 0 (automatic) aims at one wave of blocks: the occupancy the CUDA
 *    runtime reports for the kernel (after the largest shared-memory carveout), times the SMs,
 *    with the split count rounded so the blocks fill whole waves (cuda_attn_wave_splits). A
 *    SIMT block at D = 128, f16, takes 44608 bytes of shared memory: by that and its 92
 *    registers (sm_90 ptxas) 5 fit an H100 SM, 3 an A100 SM (the launch bounds ask for 4, which
 *    only caps the registers). Each kernel's attributes are set, and its occupancy asked, once
 *    per device (cuda_device.attn_blocks_per_sm), not before every launch.
 *  - attn_combine_kernel: a grid of (group x runs of 32..128 output elements), sized so that
 *    even 8 groups (the decode below) make 128 blocks; a block first turns its rows' (m, l) of
 *    every split into normalised weights in shared memory (one expf per row and split, lanes
 *    over (row, split) pairs), then each thread sums one output element over the splits with
 *    independent coalesced loads. The weight table (rows x splits of a group) is held to 48 KB
 *    by the plan, which lowers an explicit kv_splits to fit.
 *
 * Floors (H100 SXM: ~3.35 TB/s HBM3, ~990 TFLOP/s dense f16 with wgmma; mma.sync, used here so
 * one kernel serves sm_80 and sm_90, reaches roughly two thirds of that on Hopper):
 *  - decode streams K and V once: 2 * kv_len * Hkv * D * 2 bytes; 32/8 heads, D = 128, 32768 f16
 *    tokens = 134 MB = 40 us at peak copy bandwidth; the target is >= 85% of measured copy
 *    bandwidth (~47 us). Per block and 32-key tile (16 KB moved, 4 query rows) the SIMT kernel
 *    issues ~2.6k warp instructions by count of the source: at 4 blocks per SM (its launch
 *    bounds) that is ~60% of the time the bytes take, so it should stay memory-bound; unmeasured.
 *    Its split blocks (one wave: 82 per group at 5 per SM on 132 SMs) leave 1.4 MB of partials
 *    that the combine reads back, mostly from L2, on 128 blocks: a few us, launch-bound by
 *    estimate; unmeasured.
 *  - prefill is compute-bound: 4 * H * D flops per visible (query, key) pair; 32 heads, D = 128,
 *    8192 causal tokens = 33.6 M pairs = 0.55 TFLOP = 0.56 ms at 990 TFLOP/s (mma.sync at ~2/3 of
 *    that: ~0.85 ms).
 *
 * Host arrays (block table, ALiBi slopes, sinks) and the plan travel in one pinned staging slot
 * of the stream (cuda_staging_*, reused only after the event recorded behind its copy) into the
 * stream's device scratch (cuda_stream_scratch: plan, then the split partials), which later work
 * on the same stream may reuse only after these kernels, by stream order.
 */
#include <cuda_fp16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_kernels.h"
#include "attention_plan.h"
#include "cu.h"

using namespace cuda_attn;

namespace {

/* --- host side ------------------------------------------------------------------------------- */

/* The kernel instantiations: head dim slot x kind. */
enum { KIND_MMA = 0, KIND_SIMT_F16 = 1, KIND_SIMT_F32 = 2, N_KINDS = 3 };

struct kernel_ref {
    const void *fn;
    size_t smem;
};

template <int D> kernel_ref kernel_of_dim(int kind)
{
    switch (kind) {
    case KIND_MMA: return {reinterpret_cast<const void *>(attn_mma_kernel<D>), mma_smem_bytes(D)};
    case KIND_SIMT_F16:
        return {reinterpret_cast<const void *>(attn_simt_kernel<D, __half>), simt_smem_bytes(D, 2)};
    default:
        return {reinterpret_cast<const void *>(attn_simt_kernel<D, float>), simt_smem_bytes(D, 4)};
    }
}

/* The kernel for head dim d (one supports() accepts) and a kind, and its slot in the device's
 * attn_blocks_per_sm. */
kernel_ref kernel_of(int d, int kind, int *slot)
{
    switch (d) {
    case 64: *slot = 0 * N_KINDS + kind; return kernel_of_dim<64>(kind);
    case 80: *slot = 1 * N_KINDS + kind; return kernel_of_dim<80>(kind);
    case 96: *slot = 2 * N_KINDS + kind; return kernel_of_dim<96>(kind);
    case 128: *slot = 3 * N_KINDS + kind; return kernel_of_dim<128>(kind);
    default: *slot = 4 * N_KINDS + kind; return kernel_of_dim<256>(kind);
    }
}
static_assert(5 * N_KINDS <=
                  (int)(sizeof(((cuda_device *)nullptr)->attn_blocks_per_sm) / sizeof(int)),
              "cuda_device.attn_blocks_per_sm has a slot per instantiation");

/* Sets a kernel's launch attributes on the current device once (dynamic shared memory opt-in,
 * the largest shared-memory carveout, so that the blocks the registers allow also fit their
 * shared memory: without it the driver may keep L1 and fit fewer) and returns how many of its
 * blocks an SM holds, cached in the device. The attributes belong to the device's context, so
 * the cache is per device; two threads that both see 0 set the same values twice. */
cudaError_t kernel_prepare(cuda_device *dev, int d, int kind, kernel_ref *out_k,
                           int *out_blocks_per_sm)
{
    int slot;
    *out_k = kernel_of(d, kind, &slot);
    int n = dev->attn_blocks_per_sm[slot];
    if (n > 0) {
        *out_blocks_per_sm = n;
        return cudaSuccess;
    }
    cudaError_t err = cudaFuncSetAttribute(out_k->fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)out_k->smem);
    if (err == cudaSuccess)
        err = cudaFuncSetAttribute(out_k->fn, cudaFuncAttributePreferredSharedMemoryCarveout,
                                   cudaSharedmemCarveoutMaxShared);
    if (err == cudaSuccess)
        err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, out_k->fn, kThreads, out_k->smem);
    if (err != cudaSuccess)
        return err;
    if (n < 1)
        return cudaErrorInvalidConfiguration; /* supports() checked the shared memory */
    dev->attn_blocks_per_sm[slot] = n;
    *out_blocks_per_sm = n;
    return cudaSuccess;
}

cudaError_t launch(const kernel_ref &k, int64_t blocks, unsigned threads, cudaStream_t stream,
                   const attn_params &prm)
{
    void *args[] = {const_cast<attn_params *>(&prm)};
    return cudaLaunchKernel(k.fn, dim3((unsigned)blocks), dim3(threads), args, k.smem, stream);
}

int is_f16(const trit_plugin_tensor *t)
{
    return t->dtype == TRIT_DTYPE_F16;
}

size_t elem_size(const trit_plugin_tensor *t)
{
    return t->dtype == TRIT_DTYPE_F16 ? 2 : 4;
}

/* Device address of a tensor's first element. */
const char *tensor_ptr(const trit_plugin_tensor *t)
{
    return static_cast<const char *>(static_cast<const cuda_buffer *>(t->buffer)->ptr) + t->offset;
}

/* Whether every row of a rank-4 cache starts on 16 bytes (cp.async needs it). */
int rows_aligned16(const trit_plugin_tensor *t)
{
    const uint64_t es = elem_size(t);
    if ((uintptr_t)tensor_ptr(t) % 16)
        return 0;
    for (int i = 0; i < 3; i++)
        if (((uint64_t)t->strides[i] * es) % 16)
            return 0;
    return 1;
}

size_t align16(size_t x)
{
    return (x + 15) & ~(size_t)15;
}

} // namespace

/* --- per-stream pinned staging ------------------------------------------------------------- */

enum { STAGING_SLOTS = 4 };

/* A ring of pinned buffers: a call fills one slot and enqueues its copy; the slot is reused four
 * calls later, after its event says the copy has run (normally long done, so no wait). */
struct cuda_staging {
    struct {
        void *host;
        size_t bytes;
        cudaEvent_t done;
        int pending;
    } slot[STAGING_SLOTS];
    unsigned next;
};

extern "C" trit_status cuda_staging_acquire(cuda_stream *s, size_t bytes, void **out_host)
{
    if (!s->staging) {
        s->staging = static_cast<cuda_staging *>(calloc(1, sizeof(cuda_staging)));
        if (!s->staging) {
            return cuda_error(s->dev, TRIT_ERROR_OUT_OF_MEMORY,
                              "out of host memory for the stream's staging");
        }
    }
    cuda_staging *sg = s->staging;
    auto &sl = sg->slot[sg->next % STAGING_SLOTS];
    cudaError_t err;
    if (sl.pending) {
        if ((err = cudaEventSynchronize(sl.done)) != cudaSuccess)
            return cuda_fail(s->dev, err, "staging: cudaEventSynchronize");
        sl.pending = 0;
    }
    if (!sl.done &&
        (err = cudaEventCreateWithFlags(&sl.done, cudaEventDisableTiming)) != cudaSuccess)
        return cuda_fail(s->dev, err, "staging: cudaEventCreate");
    if (sl.bytes < bytes) {
        if (sl.host)
            cudaFreeHost(sl.host);
        sl.host = nullptr;
        size_t want = sl.bytes * 2 > bytes ? sl.bytes * 2 : bytes;
        want = want < 4096 ? 4096 : want;
        sl.bytes = 0;
        if ((err = cudaMallocHost(&sl.host, want)) != cudaSuccess)
            return cuda_fail(s->dev, err, "staging: cudaMallocHost");
        sl.bytes = want;
    }
    *out_host = sl.host;
    return TRIT_OK;
}

extern "C" trit_status cuda_staging_upload(cuda_stream *s, void *dst, size_t bytes)
{
    cuda_staging *sg = s->staging;
    auto &sl = sg->slot[sg->next % STAGING_SLOTS];
    cudaError_t err = cudaMemcpyAsync(dst, sl.host, bytes, cudaMemcpyHostToDevice, s->stream);
    if (err != cudaSuccess)
        return cuda_fail(s->dev, err, "staging: cudaMemcpyAsync"); /* nothing queued */
    err = cudaEventRecord(sl.done, s->stream);
    if (err != cudaSuccess) {
        /* The copy is queued but no event follows it: wait for the stream instead, so the
         * pinned memory is not rewritten under it. If even that fails, the slot's memory is
         * given up (leaked, neither reused nor freed under a copy that may still run). */
        if (cudaStreamSynchronize(s->stream) != cudaSuccess) {
            sl.host = nullptr;
            sl.bytes = 0;
        }
        sg->next++;
        return cuda_fail(s->dev, err, "staging: cudaEventRecord");
    }
    sl.pending = 1;
    sg->next++;
    return TRIT_OK;
}

extern "C" void cuda_staging_release(cuda_stream *s)
{
    cuda_staging *sg = s->staging;
    if (!sg)
        return;
    for (auto &sl : sg->slot) {
        if (sl.pending)
            cudaEventSynchronize(sl.done);
        if (sl.host)
            cudaFreeHost(sl.host);
        if (sl.done)
            cudaEventDestroy(sl.done);
    }
    free(sg);
    s->staging = nullptr;
}

/* --- entry points ---------------------------------------------------------------------------- */

extern "C" int cuda_attention_supports(const cuda_device *dev, const trit_op_desc *desc,
                                       char *reason, size_t reason_size)
{
    const char *why = nullptr;
    const int d = desc->head_dim;
    if (desc->op != TRIT_OP_ATTENTION)
        why = "not an attention op";
    else if (d != 64 && d != 80 && d != 96 && d != 128 && d != 256)
        why = "head dim must be 64, 80, 96, 128 or 256";
    else if (desc->x_dtype != TRIT_DTYPE_F32 && desc->x_dtype != TRIT_DTYPE_F16)
        why = "q must be f32 or f16 (the CUDA attention has no bf16 path)";
    else if (desc->y_dtype != TRIT_DTYPE_F32 && desc->y_dtype != TRIT_DTYPE_F16)
        why = "out must be f32 or f16";
    else if (desc->kv_dtype != TRIT_DTYPE_F32 && desc->kv_dtype != TRIT_DTYPE_F16)
        why = "the KV cache must be f32 or f16";
    else if (dev->prop.major < 8)
        why = "the CUDA attention needs sm_80 or newer (cp.async, mma.sync m16n8k16)";
    else if ((size_t)dev->prop.sharedMemPerBlockOptin <
             (desc->kv_dtype == TRIT_DTYPE_F16
                  ? (mma_smem_bytes(d) > simt_smem_bytes(d, 2) ? mma_smem_bytes(d)
                                                               : simt_smem_bytes(d, 2))
                  : simt_smem_bytes(d, 4)))
        why = "the device has too little shared memory per block for this head dim's tiles";
    if (!why)
        return 1;
    if (reason && reason_size)
        snprintf(reason, reason_size, "%s", why);
    return 0;
}

extern "C" trit_status cuda_attention(void *stream, const trit_plugin_attention_args *a)
{
    cuda_stream *s = static_cast<cuda_stream *>(stream);
    cuda_device *dev = s->dev;
    trit_status st = cuda_use(dev);
    if (st != TRIT_OK)
        return st;
    const int d = a->head_dim, kv_f16 = is_f16(&a->cache.k);

    cuda_attn_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.n_heads = a->n_heads;
    cfg.n_kv_heads = a->n_kv_heads;
    cfg.head_dim = d;
    cfg.causal = a->causal != 0;
    cfg.window = a->window;
    cfg.mma = kv_f16;
    cfg.mma_min_q = kMmaMinQ;
    cfg.mma_rows = kMmaRows;
    cfg.mma_tile = mma_tile(d);
    cfg.simt_rows = simt_rows(d);
    cfg.simt_tile = simt_tile(d, kv_f16 ? 2 : 4);
    cfg.partial_bytes_max = kPartialBytesMax;
    cfg.combine_floats_max = kCombineFloatsMax;

    /* A wave: the blocks all SMs hold at once, from the occupancy of the kernels this call may
     * launch (not a fixed 4 per SM: the SIMT block at D = 128, f16, fits 5 times on an H100 SM
     * and 3 times on an A100 SM). */
    kernel_ref kern[2] = {};
    int per_sm[2] = {0, 0};
    cudaError_t err = kernel_prepare(dev, d, kv_f16 ? KIND_SIMT_F16 : KIND_SIMT_F32,
                                     &kern[CUDA_ATTN_SIMT], &per_sm[CUDA_ATTN_SIMT]);
    if (err == cudaSuccess && kv_f16)
        err = kernel_prepare(dev, d, KIND_MMA, &kern[CUDA_ATTN_MMA], &per_sm[CUDA_ATTN_MMA]);
    if (err != cudaSuccess)
        return cuda_fail(dev, err, "attention: kernel attributes");
    const int sms = dev->prop.multiProcessorCount;
    cfg.target_items = per_sm[CUDA_ATTN_SIMT] * sms;
    cfg.target_items_mma = per_sm[CUDA_ATTN_MMA] * sms;

    cuda_attn_plan plan;
    cuda_attn_plan_splits(&cfg, a->n_seqs, a->q_lens, a->kv_lens, a->q_starts, a->kv_splits, &plan);
    cuda_attn_combine_shape comb;
    cuda_attn_combine_plan(&plan, d, sms, &comb);
    if (plan.n_items[0] > INT32_MAX || plan.n_items[1] > INT32_MAX || comb.blocks > INT32_MAX) {
        return cuda_error(
            dev, TRIT_ERROR_UNSUPPORTED,
            "attention: %lld + %lld blocks (+ %lld to combine) are too many for one launch",
            (long long)plan.n_items[0], (long long)plan.n_items[1], (long long)comb.blocks);
    }

    /* One device allocation: items (SIMT, MMA) | groups | slopes | sinks | block table, all
     * staged from pinned memory, then the split partials (device only). */
    const uint64_t table_n =
        a->cache.block_table ? (uint64_t)a->n_seqs * (uint64_t)a->cache.max_blocks_per_seq : 0;
    size_t off = 0;
    const size_t items0_at = off;
    off = align16(off + (size_t)plan.n_items[0] * sizeof(cuda_attn_item));
    const size_t items1_at = off;
    off = align16(off + (size_t)plan.n_items[1] * sizeof(cuda_attn_item));
    const size_t groups_at = off;
    off = align16(off + (size_t)plan.n_groups * sizeof(cuda_attn_group));
    const size_t slopes_at = off;
    off = align16(off + (a->alibi_slopes ? (size_t)a->n_heads * sizeof(float) : 0));
    const size_t sinks_at = off;
    off = align16(off + (a->sinks ? (size_t)a->n_heads * sizeof(float) : 0));
    const size_t table_at = off;
    off = align16(off + (size_t)table_n * sizeof(int32_t));
    const size_t meta_bytes = off, partial_at = off;
    const size_t total = partial_at + (size_t)plan.partial_floats * sizeof(float);

    /* The stream's scratch first: growing it waits for the stream, which is best done before
     * a staging slot is taken. */
    void *dmem = nullptr;
    if ((st = cuda_stream_scratch(s, total, &dmem)) != TRIT_OK)
        return st;
    void *host = nullptr;
    if ((st = cuda_staging_acquire(s, meta_bytes, &host)) != TRIT_OK)
        return st;
    char *h = static_cast<char *>(host);
    plan.items[0] = reinterpret_cast<cuda_attn_item *>(h + items0_at);
    plan.items[1] = reinterpret_cast<cuda_attn_item *>(h + items1_at);
    plan.groups = reinterpret_cast<cuda_attn_group *>(h + groups_at);
    cuda_attn_plan_walk(&cfg, a->n_seqs, a->q_lens, a->kv_lens, a->q_starts, &plan);
    cuda_attn_plan_order(&plan);
    if (a->alibi_slopes)
        memcpy(h + slopes_at, a->alibi_slopes, (size_t)a->n_heads * sizeof(float));
    if (a->sinks)
        memcpy(h + sinks_at, a->sinks, (size_t)a->n_heads * sizeof(float));
    if (table_n)
        memcpy(h + table_at, a->cache.block_table, (size_t)table_n * sizeof(int32_t));

    if ((st = cuda_staging_upload(s, dmem, meta_bytes)) != TRIT_OK)
        return st;
    char *dm = static_cast<char *>(dmem);

    const trit_plugin_tensor *kt = &a->cache.k, *vt = &a->cache.v;
    attn_params prm;
    memset(&prm, 0, sizeof(prm));
    prm.q = tensor_ptr(&a->q);
    prm.q_s0 = a->q.strides[0];
    prm.q_s1 = a->q.strides[1];
    prm.q_f16 = is_f16(&a->q);
    prm.out = const_cast<char *>(tensor_ptr(&a->out));
    prm.o_s0 = a->out.strides[0];
    prm.o_s1 = a->out.strides[1];
    prm.o_f16 = is_f16(&a->out);
    prm.k = tensor_ptr(kt);
    prm.v = tensor_ptr(vt);
    prm.k_s0 = kt->strides[0];
    prm.k_s1 = kt->strides[1];
    prm.k_s2 = kt->strides[2];
    prm.v_s0 = vt->strides[0];
    prm.v_s1 = vt->strides[1];
    prm.v_s2 = vt->strides[2];
    prm.block_size = a->cache.block_table ? (int)kt->shape[1] : 0;
    prm.max_blocks = a->cache.block_table ? a->cache.max_blocks_per_seq : 0;
    prm.kv_aligned = rows_aligned16(kt) && rows_aligned16(vt);
    prm.head_dim = d;
    prm.table = table_n ? reinterpret_cast<const int32_t *>(dm + table_at) : nullptr;
    prm.slopes = a->alibi_slopes ? reinterpret_cast<const float *>(dm + slopes_at) : nullptr;
    prm.sinks = a->sinks ? reinterpret_cast<const float *>(dm + sinks_at) : nullptr;
    prm.groups = reinterpret_cast<const cuda_attn_group *>(dm + groups_at);
    prm.partials = reinterpret_cast<float *>(dm + partial_at);
    prm.scale = a->scale;
    prm.softcap = a->softcap;
    prm.inv_softcap = a->softcap > 0 ? 1.0f / a->softcap : 0.0f;
    prm.causal = a->causal != 0;
    prm.window = a->window;
    prm.combine_chunk = comb.chunk;
    prm.combine_chunks = comb.chunks;

    /* Both item launches write disjoint output rows or partials; the combine follows them on
     * the stream. */
    const size_t items_at[2] = {items0_at, items1_at};
    for (int path = CUDA_ATTN_MMA; path >= CUDA_ATTN_SIMT && err == cudaSuccess; path--) {
        if (plan.n_items[path] == 0)
            continue;
        prm.items = reinterpret_cast<const cuda_attn_item *>(dm + items_at[path]);
        err = launch(kern[path], plan.n_items[path], kThreads, s->stream, prm);
    }
    if (err == cudaSuccess && plan.n_groups > 0) {
        const kernel_ref combine = {reinterpret_cast<const void *>(attn_combine_kernel),
                                    (size_t)comb.smem_bytes};
        err = launch(combine, comb.blocks, (unsigned)comb.threads, s->stream, prm);
    }
    return err == cudaSuccess ? TRIT_OK : cuda_fail(dev, err, "attention: kernel launch");
}
