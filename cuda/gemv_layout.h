/*
 * gemv_layout.h — the CUDA GEMV's resident weight layout and the integer arithmetic its kernels
 * do, as plain C shared by gemv.cu (device and host) and by tests/test_cuda_gemv_layout.cpp,
 * which checks it on machines without a GPU. No CUDA header is needed to include this file.
 *
 * Resident layout (built by cu_gemv_repack_row at upload):
 *   Each row is padded with code 1 (w = 0) to whole chunks of CU_GEMV_CHUNK = 64 weights; a chunk
 *   is 16 bytes (one uint4), so every row starts 16-byte aligned and every uint4 load is aligned
 *   and inside the matrix. Row r, chunk c lives at uint4 index r * pitch + c.
 *   Inside a chunk, 32-bit word j (0..3), byte b (0..3), bits [2t, 2t+1] (t = 0..3) hold the code
 *   (w + 1) of weight 64 c + 16 j + 4 t + b. So (word >> 2t) & 0x03030303 is four int8 lanes
 *   holding the codes of four consecutive weights 64 c + 16 j + 4 t + (0..3): one shift and one
 *   AND give an operand for dp4a against the 32-bit word 4 j + t of the chunk's 64 activation
 *   bytes (natural order; stored interleaved per 32 chunks, see cu_gemv_q_offset). (This is the
 * canonical word with its 4 x 4 grid of 2-bit fields transposed.)
 *
 * Biased codes: dp4a multiplies codes (0, 1, 2) rather than w (-1, 0, 1), so a dot product over
 * codes is sum w q + sum q; the kernels subtract the sum of q (per token, or per chunk where
 * block scales need per-chunk sums), which the prologue computes once. Padding codes meet q = 0.
 *
 * Both numeric paths use the same integer kernels on "pseudo-columns" of int8 activations, as
 * the CPU plugin does: INT8 has one per token (the documented absmax quantization), FLOAT has
 * CU_GEMV_PLANES per token, the balanced base-256 digits of x' as 30-bit fixed point relative to
 * max|x'| (cu_gemv_digits), recombined exactly in int64 before one rescale.
 */
#ifndef TRIT_CUDA_GEMV_LAYOUT_H
#define TRIT_CUDA_GEMV_LAYOUT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define CU_GEMV_HD __host__ __device__ __forceinline__
#define CU_GEMV_UNROLL _Pragma("unroll")
#else
#define CU_GEMV_HD static inline
#define CU_GEMV_UNROLL
#endif

enum {
    CU_GEMV_CHUNK = 64,       /* weights per chunk (one uint4 of codes) */
    CU_GEMV_CHUNK_BYTES = 16, /* bytes per chunk */
    CU_GEMV_BLOCK_CHUNKS = 4, /* chunks per scale block (TRIT_SCALE_BLOCK_K = 256) */
    CU_GEMV_PLANES = 4,       /* FLOAT path: base-256 digits per token */
    CU_GEMV_LANES = 32,       /* lanes of a warp that split a row's chunks */
    /* Largest K: FLOAT digits reach -128, so |sum w q| <= 128 K, which must stay below 2^31
     * (at K = 2^24, w = -1 against digits -128 sums to +2^31 and wraps). INT8 (|q| <= 127)
     * would allow a little more; one limit keeps the two paths alike. */
    CU_GEMV_MAX_K = (1 << 24) - 1,
    /* Threads of the prologue's block (one block per token). Its RMSNorm sum of squares is
     * fixed by this: thread i sums elements i, i + 512, ... with fma in fp64, a warp's 32 sums
     * meet by an xor butterfly, then the 16 warp sums are added in warp order. */
    CU_GEMV_PRO_THREADS = 512,
};

/* Whether a matrix with `cols` columns keeps every int32 sum of the kernels exact (upload
 * rejects the others). */
CU_GEMV_HD int cu_gemv_k_supported(int64_t cols)
{
    return cols >= 1 && cols <= CU_GEMV_MAX_K;
}

/* Chunks per row (the row pitch in uint4 units). */
CU_GEMV_HD int64_t cu_gemv_pitch(int64_t cols)
{
    return (cols + CU_GEMV_CHUNK - 1) / CU_GEMV_CHUNK;
}

/* 4 x 4 transpose of 2-bit fields: field f of byte j moves to field j of byte f. Two delta swaps;
 * it is its own inverse. */
CU_GEMV_HD uint32_t cu_gemv_transpose_fields(uint32_t s)
{
    uint32_t t = ((s >> 12) ^ s) & 0x0000f0f0u;
    s ^= t ^ (t << 12);
    t = ((s >> 6) ^ s) & 0x00cc00ccu;
    s ^= t ^ (t << 6);
    return s;
}

/* Repacks one row from the canonical PACKED2 bytes (ceil(cols / 4) bytes, weight k at bits
 * 2 (k % 4) of byte k / 4) into the resident layout: cu_gemv_pitch(cols) * 16 bytes at `out`. */
CU_GEMV_HD void cu_gemv_repack_row(const uint8_t *canon, int64_t cols, uint8_t *out)
{
    const int64_t pitch = cu_gemv_pitch(cols);
    const int64_t in_bytes = (cols + 3) / 4;
    for (int64_t w = 0; w < pitch * 4; w++) {
        /* Canonical word w holds weights 16 w .. 16 w + 15: byte t, field b is weight
         * 16 w + 4 t + b, which the layout wants in byte b, field t. */
        uint32_t v = 0;
        for (int t = 0; t < 4; t++) {
            const int64_t byte = 4 * w + t;
            const uint32_t b = byte < in_bytes ? canon[byte] : 0x55u; /* 0x55: four w = 0 */
            v |= b << (8 * t);
        }
        v = cu_gemv_transpose_fields(v);
        for (int b = 0; b < 4; b++)
            out[4 * w + b] = (uint8_t)(v >> (8 * b));
    }
}

/* The code (w + 1) of weight k of a row stored in the resident layout. */
CU_GEMV_HD unsigned cu_gemv_code_at(const uint8_t *row, int64_t k)
{
    const int64_t c = k / CU_GEMV_CHUNK;
    const int i = (int)(k % CU_GEMV_CHUNK);
    const int j = i / 16, t = (i % 16) / 4, b = i % 4;
    return (row[c * CU_GEMV_CHUNK_BYTES + 4 * j + b] >> (2 * t)) & 3u;
}

/* Four int8 lanes: the codes of weights 16 j + 4 t + (0..3) of the chunk whose word j is `word`. */
CU_GEMV_HD uint32_t cu_gemv_plane(uint32_t word, int t)
{
    return (word >> (2 * t)) & 0x03030303u;
}

/* Decodes one chunk (four words) into sixteen dp4a operands; operand i pairs with activation
 * word i of the chunk (bytes 4 i .. 4 i + 3). */
CU_GEMV_HD void cu_gemv_decode_chunk(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3,
                                     uint32_t pl[16])
{
    CU_GEMV_UNROLL
    for (int t = 0; t < 4; t++) {
        pl[t] = cu_gemv_plane(w0, t);
        pl[4 + t] = cu_gemv_plane(w1, t);
        pl[8 + t] = cu_gemv_plane(w2, t);
        pl[12 + t] = cu_gemv_plane(w3, t);
    }
}

/* dp4a: c + the sum of the products of the four signed bytes of a and b, modulo 2^32. */
CU_GEMV_HD uint32_t cu_gemv_dp4a(uint32_t a, uint32_t b, uint32_t c)
{
#if defined(__CUDA_ARCH__)
    return (uint32_t)__dp4a((int)a, (int)b, (int)c);
#else
    uint32_t s = c;
    for (int i = 0; i < 4; i++)
        s += (uint32_t)((int32_t)(int8_t)(uint8_t)(a >> (8 * i)) *
                        (int32_t)(int8_t)(uint8_t)(b >> (8 * i)));
    return s;
#endif
}

/* acc + sum over one chunk of code * q, in the kernel's order (operand 0 first), mod 2^32. */
CU_GEMV_HD uint32_t cu_gemv_dot_chunk(const uint32_t pl[16], const uint32_t q[16], uint32_t acc)
{
    CU_GEMV_UNROLL
    for (int i = 0; i < 16; i++)
        acc = cu_gemv_dp4a(pl[i], q[i], acc);
    return acc;
}

/* INT8 path: q = clamp(rint(x' * s), -127, 127), ties to even, with s = 127 / a in f32 (trit.h).
 * The product is a single f32 rounding on host and device (no contraction: nothing is added). */
CU_GEMV_HD int8_t cu_gemv_quantize(float xp, float s)
{
    float r = rintf(xp * s);
    r = r > 127.0f ? 127.0f : r;
    r = r < -127.0f ? -127.0f : r;
    return (int8_t)(int32_t)r;
}

/* FLOAT path: v = rint(x' * 2^30 / a) (|v| <= 2^30) as four balanced base-256 digits, least
 * significant first, each in [-128, 127]: v = d0 + 256 d1 + 65536 d2 + 2^24 d3. */
CU_GEMV_HD void cu_gemv_digits(int32_t v, int8_t d[CU_GEMV_PLANES])
{
    CU_GEMV_UNROLL
    for (int p = 0; p < CU_GEMV_PLANES; p++) {
        const int32_t dd = ((v + 128) & 255) - 128;
        d[p] = (int8_t)dd;
        v = (v - dd) / 256;
    }
}

/* INT8: the int32 accumulator sum_k w q from the raw sum of code * q (mod 2^32) and sum_k q. */
CU_GEMV_HD int32_t cu_gemv_int8_acc(uint32_t raw, int32_t qtot)
{
    return (int32_t)(raw - (uint32_t)qtot);
}

/* FLOAT with per-tensor or per-row scales: t = (sum over planes of the exact digit sums times
 * 256^p) * unit * scale, the integer part exact in int64 (each plane's sum is below 2^31 in
 * magnitude for K <= CU_GEMV_MAX_K), then one rounding to f32 as the CPU plugin does. `raw` are the
 * raw sums of code * digit (mod 2^32), `qtot` the digit sums. */
CU_GEMV_HD float cu_gemv_float_combine(const uint32_t raw[CU_GEMV_PLANES],
                                       const int32_t qtot[CU_GEMV_PLANES], double unit, float scale)
{
    int64_t s = 0;
    CU_GEMV_UNROLL
    for (int p = 0; p < CU_GEMV_PLANES; p++)
        s += (int64_t)(int32_t)(raw[p] - (uint32_t)qtot[p]) * ((int64_t)1 << (8 * p));
    return (float)((double)s * unit * (double)scale);
}

/* Activation layout: each pseudo-column's bytes (natural order: chunk c holds q of weights
 * 64 c .. 64 c + 63, four uint4) are stored interleaved by groups of CU_GEMV_LANES chunks, uint4 j
 * of chunk c at byte ((c / 32) * 4 + j) * 512 + (c % 32) * 16, so the 32 lanes of a warp, which
 * take 32 consecutive chunks, read 512 contiguous bytes per load (4 cache lines, not 16).
 * A pseudo-column takes cu_gemv_q_bytes(pitch): the pitch rounded up to whole groups. */
CU_GEMV_HD int64_t cu_gemv_q_bytes(int64_t pitch)
{
    return (pitch + CU_GEMV_LANES - 1) / CU_GEMV_LANES * CU_GEMV_LANES * CU_GEMV_CHUNK;
}

/* Byte offset, within its pseudo-column, of uint4 j (0..3) of chunk c. */
CU_GEMV_HD int64_t cu_gemv_q_offset(int64_t c, int j)
{
    return ((c / CU_GEMV_LANES) * 4 + j) * (CU_GEMV_LANES * CU_GEMV_CHUNK_BYTES) +
           (c % CU_GEMV_LANES) * CU_GEMV_CHUNK_BYTES;
}

/* Byte offset, within its pseudo-column, of 32-bit word w (bytes 4 w .. 4 w + 3 in natural
 * order). */
CU_GEMV_HD int64_t cu_gemv_q_word_offset(int64_t w)
{
    return cu_gemv_q_offset(w / 16, (int)(w % 16) / 4) + (w % 4) * 4;
}

/* Split-K: the chunks [*c0, *c1) of a row that split `s` of `splits` owns. */
CU_GEMV_HD void cu_gemv_split_range(int64_t pitch, int splits, int s, int64_t *c0, int64_t *c1)
{
    *c0 = pitch * s / splits;
    *c1 = pitch * (s + 1) / splits;
}

#endif /* TRIT_CUDA_GEMV_LAYOUT_H */
