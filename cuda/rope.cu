/*
 * rope.cu — RoPE on q and the new keys, and the append of keys and values to the KV cache, in
 * one pass over the new tokens.
 *
 * NONE OF THIS HAS RUN ON A GPU: written and compiled without one. The kernel (rope_kernel.h) runs
 * on a CPU emulation in tests/test_cuda_attention_plan.cpp against the fp64 reference; the host
 * glue here and the hardware behaviour are checked by tests/test_rope.cpp on the first machine
 * with a GPU. The sincos slow path (huge angles) gives the kernel a 40-byte stack frame; no
 * spills.
 *
 * Tiling. One block of 128 threads per new token: it alone writes that token's q rows and its
 * cache slot (position p of its sequence, contiguous or through the block table). The block
 * finds its sequence by binary search in q_starts (empty sequences included), computes the
 * token's rot_dims/2 (cos, sin) pairs once into shared memory for all H query heads and Hkv key
 * heads, then a thread owns one rotated pair of q (rotated in place, so one owner reads and
 * writes both halves; dims past rot_dims are never written) and one element of each K and V
 * cache row.
 *
 * Accuracy: as on the CPU, the inverse frequencies base^(-2i/rot_dims) are computed in double
 * on the host, theta = p * inv_freq and its sin/cos in double on the device (exact to ~1e-11
 * where an f32 angle of 1e5 rad would be off by ~4e-3), and only cos/sin are rounded to f32.
 * FP64 is slow on consumer GPUs (1/64 rate), but it is rot_dims/2 sincos per token.
 *
 * Floor: (2 H + 2 Hkv) D element reads/writes of q and k_new/v_new plus 2 Hkv D cache writes per
 * token, 30 KB per decode token for 20/5 heads, D = 128, all f32: ~10 ns of an H100's bandwidth,
 * so decode RoPE is bound by the launch and the staging copy (a few us, unmeasured); prefill
 * streams at memory speed.
 */
#include <cuda_fp16.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cu.h"
#include "rope_kernel.h"

using namespace cuda_rope;

namespace {

int is_f16(const trit_plugin_tensor *t)
{
    return t->dtype == TRIT_DTYPE_F16;
}

char *tensor_ptr(const trit_plugin_tensor *t)
{
    return static_cast<char *>(static_cast<cuda_buffer *>(t->buffer)->ptr) + t->offset;
}

size_t align16(size_t x)
{
    return (x + 15) & ~(size_t)15;
}

} // namespace

extern "C" int cuda_rope_supports(const cuda_device *dev, const trit_op_desc *desc, char *reason,
                                  size_t reason_size)
{
    const char *why = nullptr;
    const int d = desc->head_dim;
    if (desc->op != TRIT_OP_ROPE_KV_APPEND)
        why = "not a rope_kv_append op";
    else if (d != 64 && d != 80 && d != 96 && d != 128 && d != 256)
        why = "head dim must be 64, 80, 96, 128 or 256";
    else if (desc->x_dtype != TRIT_DTYPE_F32 && desc->x_dtype != TRIT_DTYPE_F16)
        why = "q must be f32 or f16 (the CUDA RoPE has no bf16 path)";
    else if (desc->y_dtype != TRIT_DTYPE_F32 && desc->y_dtype != TRIT_DTYPE_F16)
        why = "k_new must be f32 or f16";
    else if (desc->kv_dtype != TRIT_DTYPE_F32 && desc->kv_dtype != TRIT_DTYPE_F16)
        why = "the KV cache must be f32 or f16";
    else if (dev->prop.major < 8)
        why = "the CUDA plugin's kernels are built for sm_80 and newer";
    if (!why)
        return 1;
    if (reason && reason_size)
        snprintf(reason, reason_size, "%s", why);
    return 0;
}

extern "C" trit_status cuda_rope_kv_append(void *stream, const trit_plugin_rope_args *a)
{
    cuda_stream *s = static_cast<cuda_stream *>(stream);
    cuda_device *dev = s->dev;
    const int64_t total = a->q_starts[a->n_seqs];
    if (total == 0)
        return TRIT_OK;
    trit_status st = cuda_use(dev);
    if (st != TRIT_OK)
        return st;
    if (a->head_dim > 256 || a->rot_dims > a->head_dim || a->rot_dims % 2 || total > INT32_MAX) {
        return cuda_error(dev, TRIT_ERROR_UNSUPPORTED,
                          "rope_kv_append: head dim %d / rot_dims %d / %lld tokens out of range",
                          (int)a->head_dim, (int)a->rot_dims, (long long)total);
    }

    /* Staged: inverse frequencies | q_starts | start_pos | block table. */
    const int half = a->rot_dims / 2;
    const uint64_t table_n =
        a->cache.block_table ? (uint64_t)a->n_seqs * (uint64_t)a->cache.max_blocks_per_seq : 0;
    const size_t freq_at = 0;
    const size_t starts_at = align16(freq_at + (size_t)half * sizeof(double));
    const size_t pos_at = align16(starts_at + ((size_t)a->n_seqs + 1) * sizeof(int64_t));
    const size_t table_at = align16(pos_at + (size_t)a->n_seqs * sizeof(int32_t));
    const size_t bytes = align16(table_at + (size_t)table_n * sizeof(int32_t));

    void *dmem = nullptr, *host = nullptr;
    if ((st = cuda_stream_scratch(s, bytes, &dmem)) != TRIT_OK ||
        (st = cuda_staging_acquire(s, bytes, &host)) != TRIT_OK)
        return st;
    char *h = static_cast<char *>(host);
    double *freq = reinterpret_cast<double *>(h + freq_at);
    const double log_base = log((double)a->base);
    for (int i = 0; i < half; i++)
        freq[i] = exp(-(2.0 * i / a->rot_dims) * log_base);
    memcpy(h + starts_at, a->q_starts, ((size_t)a->n_seqs + 1) * sizeof(int64_t));
    memcpy(h + pos_at, a->start_pos, (size_t)a->n_seqs * sizeof(int32_t));
    if (table_n)
        memcpy(h + table_at, a->cache.block_table, (size_t)table_n * sizeof(int32_t));

    if ((st = cuda_staging_upload(s, dmem, bytes)) != TRIT_OK)
        return st;
    const char *dm = static_cast<const char *>(dmem);

    rope_params p;
    memset(&p, 0, sizeof(p));
    p.has_q = a->has_q;
    if (a->has_q) {
        p.q = tensor_ptr(&a->q);
        p.q_s0 = a->q.strides[0];
        p.q_s1 = a->q.strides[1];
        p.q_f16 = is_f16(&a->q);
    }
    p.kn = tensor_ptr(&a->k_new);
    p.kn_s0 = a->k_new.strides[0];
    p.kn_s1 = a->k_new.strides[1];
    p.kn_f16 = is_f16(&a->k_new);
    p.vn = tensor_ptr(&a->v_new);
    p.vn_s0 = a->v_new.strides[0];
    p.vn_s1 = a->v_new.strides[1];
    p.vn_f16 = is_f16(&a->v_new);
    const trit_plugin_tensor *kt = &a->cache.k, *vt = &a->cache.v;
    p.kc = tensor_ptr(kt);
    p.vc = tensor_ptr(vt);
    p.k_s0 = kt->strides[0];
    p.k_s1 = kt->strides[1];
    p.k_s2 = kt->strides[2];
    p.v_s0 = vt->strides[0];
    p.v_s1 = vt->strides[1];
    p.v_s2 = vt->strides[2];
    p.k_f16 = is_f16(kt);
    p.v_f16 = is_f16(vt);
    p.block_size = a->cache.block_table ? (int)kt->shape[1] : 0;
    p.max_blocks = a->cache.block_table ? a->cache.max_blocks_per_seq : 0;
    p.table = table_n ? reinterpret_cast<const int32_t *>(dm + table_at) : nullptr;
    p.q_starts = reinterpret_cast<const int64_t *>(dm + starts_at);
    p.start_pos = reinterpret_cast<const int32_t *>(dm + pos_at);
    p.inv_freq = reinterpret_cast<const double *>(dm + freq_at);
    p.n_seqs = a->n_seqs;
    p.n_heads = a->n_heads;
    p.n_kv_heads = a->n_kv_heads;
    p.d = a->head_dim;
    p.rot = a->rot_dims;
    p.neox = a->mode == TRIT_ROPE_NEOX;

    rope_append_kernel<<<(unsigned)total, kThreads, kSmemBytes, s->stream>>>(p);
    const cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? TRIT_OK : cuda_fail(dev, err, "rope_kv_append: kernel launch");
}
