/*
 * attention.h — what attention.c shares with its SIMD variants (attention_avx2.c,
 * attention_avx512.c) and with rope.c: the table of inner kernels one ISA provides, the per-row
 * mask/bias description the softmax kernel works from, and portable f16 <-> f32 conversion.
 *
 * The driver in attention.c owns tiling, masking ranges, split-KV and threads; a kernel table
 * only ever sees small dense f32 blocks in per-thread scratch, so the three ISA versions stay
 * short and can be compared line by line.
 */
#ifndef TRIT_CPU_ATTENTION_H
#define TRIT_CPU_ATTENTION_H

#include <stdint.h>
#include <string.h>

#include "cpu.h"
#include "half.h"

/* Keys in a tile are padded to this many (the widest score block is 1 x 16). */
#define ATTN_KEY_PAD 16

/* One query row's view of one K/V tile: keys [lo, hi) of the tile are visible; entries outside
 * are masked. ALiBi adds slope * (bias0 + i) to key i of the tile (bias0 = j0 - p). */
typedef struct attn_row {
    int lo, hi;
    float softcap, inv_softcap; /* softcap 0: none */
    int has_alibi;
    float slope;
    float bias0;
} attn_row;

typedef struct attn_kernels {
    /* dst[r][0..d) = mul * src[r][0..d) for r < n, from f32 or f16 rows. */
    void (*load_rows)(float *dst, const void *const *src, int n, int d, trit_dtype dt, float mul);
    /* s[r * lds + c] = q[r] . k[c] for r < rows, c < n_keys (n_keys a multiple of ATTN_KEY_PAD).
     * q is rows x d dense f32; k[c] points to key row c, f32 or f16 (widened in registers). */
    void (*scores)(const float *q, int rows, const void *const *k, trit_dtype kdt, int n_keys,
                   int d, float *s, int lds);
    /* One online-softmax step for one row: turns the n (padded) scores at s into weights
     * exp(s - m_new) (0 where masked), updates *m (running max) and *l (running sum), and
     * returns the factor alpha = exp(m_old - m_new) by which earlier output must be scaled. */
    float (*softmax_row)(float *s, int n, const attn_row *row, float *m, float *l);
    /* o[r] = alpha[r] * o[r] + sum_c p[r * ldp + c] * v[c] for r < rows, c < n_keys; v[c]
     * points to value row c, f32 or f16. */
    void (*accumulate)(float *o, const float *alpha, int rows, const float *p, int ldp,
                       const void *const *v, trit_dtype vdt, int n_keys, int d);
    /* dst[0..d) = mul * src[0..d), converted to f32 or f16. */
    void (*store_row)(void *dst, const float *src, int d, trit_dtype dt, float mul);
} attn_kernels;

extern const attn_kernels attn_kernels_portable;
extern const attn_kernels attn_kernels_avx2;   /* only when dev->isa >= CPU_ISA_AVX2 */
extern const attn_kernels attn_kernels_avx512; /* only when dev->isa == CPU_ISA_AVX512 */

/* The table for the ISA the device chose at init (also used by rope.c for its conversions). */
const attn_kernels *attn_kernels_select(const cpu_device *dev);

#endif /* TRIT_CPU_ATTENTION_H */
