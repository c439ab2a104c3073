/*
 * formats.c — ternary weight formats: sizes, row codecs, pack/unpack, and the conversion of any
 * trit_ternary_desc into the canonical host form (packed 2-bit codes + f32 scales).
 *
 * Layouts are specified in include/trit/trit_formats.h and were checked against the producers
 * that define them: ggml's quantize_row_tq{1,2}_0_ref / dequantize_row_tq{1,2}_0 and BitNet's
 * quantize_i2_s (x86, 128-weight groups).
 *
 * Every input byte is hostile: sizes are checked before any product is formed, buffers are
 * checked against what the shape needs before they are touched, and every code is validated.
 * Public functions validate everything before they write any output, so a failed call leaves the
 * caller's buffers as they were (trit.h's convention). The host conversion decodes one row at a
 * time into a scratch row of int8 weights, which keeps the memory it needs at one row beyond the
 * result, and is plain sequential byte work: it runs once per matrix, at upload.
 *
 * All functions are reentrant: no state outside their arguments.
 */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "trit/trit_formats.h"

enum {
    TQ_BLOCK = 256,         /* weights per TQ1_0 / TQ2_0 block (ggml's QK_K) */
    TQ2_QS_BYTES = 64,      /* block_tq2_0.qs */
    TQ1_QS_BYTES = 48,      /* block_tq1_0.qs: 32 bytes of 5 trits, then 16 bytes of 5 trits */
    TQ1_QH_BYTES = 4,       /* block_tq1_0.qh: 4 trits each (the fifth trit is padding) */
    I2S_GROUP_BYTES = 32,   /* 128 weights per group */
    HALF_MAX_FINITE = 65504 /* largest finite binary16 */
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static int mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static int add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static const char *format_name(trit_weight_format format)
{
    switch (format) {
    case TRIT_WEIGHTS_I8: return "I8";
    case TRIT_WEIGHTS_PACKED2: return "PACKED2";
    case TRIT_WEIGHTS_BASE3: return "BASE3";
    case TRIT_WEIGHTS_TQ2_0: return "TQ2_0";
    case TRIT_WEIGHTS_TQ1_0: return "TQ1_0";
    case TRIT_WEIGHTS_I2_S: return "I2_S";
    }
    return "unknown";
}

static int format_known(trit_weight_format format)
{
    switch (format) {
    case TRIT_WEIGHTS_I8:
    case TRIT_WEIGHTS_PACKED2:
    case TRIT_WEIGHTS_BASE3:
    case TRIT_WEIGHTS_TQ2_0:
    case TRIT_WEIGHTS_TQ1_0:
    case TRIT_WEIGHTS_I2_S: return 1;
    }
    return 0;
}

static uint16_t load_u16le(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static void store_u16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static float load_f32le(const uint8_t *p)
{
    uint32_t u =
        (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static void store_f32le(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    p[0] = (uint8_t)(u & 0xff);
    p[1] = (uint8_t)((u >> 8) & 0xff);
    p[2] = (uint8_t)((u >> 16) & 0xff);
    p[3] = (uint8_t)(u >> 24);
}

static int half_is_finite(uint16_t h)
{
    return (h & 0x7c00u) != 0x7c00u;
}

/* rows, cols >= 1 and rows * cols addressable as one host array (int8 weights). */
static trit_status check_dense_shape(const char *who, int64_t rows, int64_t cols,
                                     uint64_t *out_count)
{
    if (rows < 1 || cols < 1)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "%s: shape %" PRId64 " x %" PRId64 " must have rows and cols >= 1", who,
                         rows, cols);
    uint64_t n;
    if (!mul_u64((uint64_t)rows, (uint64_t)cols, &n) || n > SIZE_MAX)
        return trit_fail(TRIT_ERROR_OVERFLOW,
                         "%s: %" PRId64 " x %" PRId64 " weights overflow the host address space",
                         who, rows, cols);
    *out_count = n;
    return TRIT_OK;
}

/* Bytes one row takes in a row-major format (I2_S rows are row-aligned too, since its groups of
 * 128 never straddle a row when cols % 128 == 0). Requires the format's column constraint. */
static uint64_t row_bytes_of(trit_weight_format format, int64_t cols)
{
    uint64_t c = (uint64_t)cols;
    switch (format) {
    case TRIT_WEIGHTS_I8: return c;
    case TRIT_WEIGHTS_PACKED2: return c / 4 + (c % 4 != 0);
    case TRIT_WEIGHTS_BASE3: return c / 5 + (c % 5 != 0);
    case TRIT_WEIGHTS_TQ2_0: return c / TQ_BLOCK * TRIT_TQ2_0_BLOCK_BYTES;
    case TRIT_WEIGHTS_TQ1_0: return c / TQ_BLOCK * TRIT_TQ1_0_BLOCK_BYTES;
    case TRIT_WEIGHTS_I2_S: return c / 4;
    }
    return 0;
}

static trit_status format_bytes(const char *who, trit_weight_format format, int64_t rows,
                                int64_t cols, uint64_t *out_bytes)
{
    if (!format_known(format))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: unknown weight format %d", who,
                         (int)format);
    if (rows < 1 || cols < 1)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "%s: %s shape %" PRId64 " x %" PRId64 " must have rows and cols >= 1", who,
                         format_name(format), rows, cols);
    if ((format == TRIT_WEIGHTS_TQ2_0 || format == TRIT_WEIGHTS_TQ1_0) && cols % TQ_BLOCK != 0)
        return trit_fail(TRIT_ERROR_UNSUPPORTED,
                         "%s: %s needs cols to be a multiple of %d, got %" PRId64, who,
                         format_name(format), TQ_BLOCK, cols);
    if (format == TRIT_WEIGHTS_I2_S && cols % TRIT_I2S_GROUP != 0)
        return trit_fail(TRIT_ERROR_UNSUPPORTED,
                         "%s: I2_S needs cols to be a multiple of %d, got %" PRId64, who,
                         TRIT_I2S_GROUP, cols);
    uint64_t bytes = 0;
    if (!mul_u64((uint64_t)rows, row_bytes_of(format, cols), &bytes) ||
        (format == TRIT_WEIGHTS_I2_S && !add_u64(bytes, 4, &bytes)))
        return trit_fail(TRIT_ERROR_OVERFLOW,
                         "%s: %s %" PRId64 " x %" PRId64 " overflows: needs 2^64 bytes or more",
                         who, format_name(format), rows, cols);
    *out_bytes = bytes;
    return TRIT_OK;
}

trit_status trit_format_bytes(trit_weight_format format, int64_t rows, int64_t cols,
                              uint64_t *out_bytes)
{
    trit_clear_error();
    if (!out_bytes)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "trit_format_bytes: out_bytes is NULL");
    return format_bytes("trit_format_bytes", format, rows, cols, out_bytes);
}

static trit_status scale_count(const char *who, trit_scale_kind kind, int64_t rows, int64_t cols,
                               uint64_t *out_count)
{
    if (rows < 1 || cols < 1)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "%s: shape %" PRId64 " x %" PRId64 " must have rows and cols >= 1", who,
                         rows, cols);
    switch (kind) {
    case TRIT_SCALE_TENSOR: *out_count = 1; return TRIT_OK;
    case TRIT_SCALE_ROW: *out_count = (uint64_t)rows; return TRIT_OK;
    case TRIT_SCALE_BLOCK: {
        uint64_t nb =
            (uint64_t)cols / TRIT_SCALE_BLOCK_K + ((uint64_t)cols % TRIT_SCALE_BLOCK_K != 0);
        if (!mul_u64((uint64_t)rows, nb, out_count))
            return trit_fail(TRIT_ERROR_OVERFLOW,
                             "%s: %" PRId64 " rows x %" PRIu64 " blocks of scales overflow", who,
                             rows, nb);
        return TRIT_OK;
    }
    }
    return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: unknown scale kind %d", who, (int)kind);
}

trit_status trit_scale_count(trit_scale_kind kind, int64_t rows, int64_t cols, uint64_t *out_count)
{
    trit_clear_error();
    if (!out_count)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "trit_scale_count: out_count is NULL");
    return scale_count("trit_scale_count", kind, rows, cols, out_count);
}

/* ---------------------------------------------------------------------------------------------
 * Row codecs. Decoders take `dst` == NULL to only validate. Each reports the first bad byte of
 * the row through trit_fail, prefixed with `who`, and returns its status.
 * ------------------------------------------------------------------------------------------- */

/* int8 weights: every value must be -1, 0 or +1. */
static trit_status check_row_i8(const char *who, int64_t row, const int8_t *w, int64_t cols)
{
    unsigned bad = 0; /* branch-free scan (vectorizes); locate the culprit only on failure */
    for (int64_t c = 0; c < cols; c++)
        bad |= (uint8_t)(w[c] + 1) > 2;
    if (!bad)
        return TRIT_OK;
    for (int64_t c = 0; c < cols; c++)
        if (w[c] < -1 || w[c] > 1)
            return trit_fail(TRIT_ERROR_BAD_FORMAT,
                             "%s: row %" PRId64 " column %" PRId64 ": weight %d is not -1, 0 or +1",
                             who, row, c, (int)w[c]);
    return TRIT_OK;
}

static void encode_row_packed2(const int8_t *w, int64_t cols, uint8_t *dst)
{
    int64_t full = cols / 4;
    for (int64_t j = 0; j < full; j++) {
        const int8_t *q = w + 4 * j;
        dst[j] = (uint8_t)((q[0] + 1) | ((q[1] + 1) << 2) | ((q[2] + 1) << 4) | ((q[3] + 1) << 6));
    }
    if (cols % 4) {
        uint8_t b = 0x55; /* four padding codes of 1 (w = 0) */
        for (int64_t c = 4 * full; c < cols; c++) {
            int s = 2 * (int)(c % 4);
            b = (uint8_t)((b & ~(3u << s)) | ((unsigned)(w[c] + 1) << s));
        }
        dst[full] = b;
    }
}

static trit_status decode_row_packed2(const char *who, int64_t row, const uint8_t *src,
                                      int64_t cols, int8_t *dst)
{
    uint64_t nbytes = row_bytes_of(TRIT_WEIGHTS_PACKED2, cols);
    for (uint64_t j = 0; j < nbytes; j++) {
        unsigned b = src[j];
        if (b & (b >> 1) & 0x55u) { /* some 2-bit field is 0b11 */
            int k = 0;
            while (((b >> (2 * k)) & 3u) != 3u)
                k++;
            return trit_fail(TRIT_ERROR_BAD_FORMAT,
                             "%s: PACKED2 row %" PRId64 " byte %" PRIu64
                             " = 0x%02x: invalid code 3 for column %" PRIu64,
                             who, row, j, b, 4 * j + (uint64_t)k);
        }
    }
    if (cols % 4) {
        unsigned b = src[nbytes - 1];
        for (int64_t c = cols; c % 4; c++) {
            unsigned code = (b >> (2 * (c % 4))) & 3u;
            if (code != 1)
                return trit_fail(TRIT_ERROR_BAD_FORMAT,
                                 "%s: PACKED2 row %" PRId64 " byte %" PRIu64
                                 " = 0x%02x: padding position %" PRId64
                                 " past the last column holds code %u, must be 1 (w = 0)",
                                 who, row, nbytes - 1, b, c, code);
        }
    }
    if (dst)
        for (int64_t c = 0; c < cols; c++)
            dst[c] = (int8_t)((int)((src[c / 4] >> (2 * (c % 4))) & 3u) - 1);
    return TRIT_OK;
}

static void encode_row_base3(const int8_t *w, int64_t cols, uint8_t *dst)
{
    uint64_t nbytes = row_bytes_of(TRIT_WEIGHTS_BASE3, cols);
    for (uint64_t j = 0; j < nbytes; j++) {
        unsigned v = 0;
        for (int i = 4; i >= 0; i--) { /* Horner: trit 0 ends up least significant */
            int64_t c = (int64_t)(5 * j) + i;
            v = 3 * v + (c < cols ? (unsigned)(w[c] + 1) : 1u);
        }
        dst[j] = (uint8_t)v;
    }
}

static trit_status decode_row_base3(const char *who, int64_t row, const uint8_t *src, int64_t cols,
                                    int8_t *dst)
{
    uint64_t nbytes = row_bytes_of(TRIT_WEIGHTS_BASE3, cols);
    uint64_t full = (uint64_t)cols / 5;
    for (uint64_t j = 0; j < nbytes; j++) {
        unsigned v = src[j];
        if (v <= 242 && j < full) { /* all five trits are weights */
            if (dst) {
                int8_t *o = dst + 5 * j;
                o[0] = (int8_t)((int)(v % 3) - 1);
                o[1] = (int8_t)((int)(v / 3 % 3) - 1);
                o[2] = (int8_t)((int)(v / 9 % 3) - 1);
                o[3] = (int8_t)((int)(v / 27 % 3) - 1);
                o[4] = (int8_t)((int)(v / 81) - 1);
            }
            continue;
        }
        if (v > 242)
            return trit_fail(TRIT_ERROR_BAD_FORMAT,
                             "%s: BASE3 row %" PRId64 " byte %" PRIu64
                             " = %u exceeds 242 (3^5 - 1)",
                             who, row, j, v);
        for (int i = 0; i < 5; i++, v /= 3) {
            int64_t c = (int64_t)(5 * j) + i;
            if (c < cols) {
                if (dst)
                    dst[c] = (int8_t)((int)(v % 3) - 1);
            } else if (v % 3 != 1) {
                return trit_fail(TRIT_ERROR_BAD_FORMAT,
                                 "%s: BASE3 row %" PRId64 " byte %" PRIu64
                                 " = %u: padding trit %d past the last column is %u, must be 1 "
                                 "(w = 0)",
                                 who, row, j, src[j], i, v % 3);
            }
        }
    }
    return TRIT_OK;
}

/* TQ2_0 block: weight i in qs[32 * (i / 128) + i % 32] at shift 2 * ((i % 128) / 32). */
static void encode_block_tq2_0(const int8_t *w, uint16_t d, uint8_t *blk)
{
    for (int half = 0; half < 2; half++)
        for (int m = 0; m < 32; m++) {
            const int8_t *q = w + 128 * half + m;
            blk[32 * half + m] = (uint8_t)((q[0] + 1) | ((q[32] + 1) << 2) | ((q[64] + 1) << 4) |
                                           ((q[96] + 1) << 6));
        }
    store_u16le(blk + TQ2_QS_BYTES, d);
}

static trit_status decode_row_tq2_0(const char *who, int64_t row, const uint8_t *src, int64_t cols,
                                    int8_t *dst, float *scales)
{
    int64_t nblocks = cols / TQ_BLOCK;
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = src + b * TRIT_TQ2_0_BLOCK_BYTES;
        uint16_t d = load_u16le(blk + TQ2_QS_BYTES);
        if (!half_is_finite(d))
            return trit_fail(TRIT_ERROR_BAD_FORMAT,
                             "%s: TQ2_0 row %" PRId64 " block %" PRId64
                             ": scale d = 0x%04x is not finite",
                             who, row, b, d);
        for (int j = 0; j < TQ2_QS_BYTES; j++) {
            unsigned v = blk[j];
            if (v & (v >> 1) & 0x55u) {
                int k = 0;
                while (((v >> (2 * k)) & 3u) != 3u)
                    k++;
                return trit_fail(TRIT_ERROR_BAD_FORMAT,
                                 "%s: TQ2_0 row %" PRId64 " block %" PRId64 " qs byte %d = 0x%02x: "
                                 "invalid code 3 for weight %d of the block",
                                 who, row, b, j, v, 128 * (j / 32) + 32 * k + j % 32);
            }
        }
        if (scales)
            scales[b] = trit_half_to_float(d);
        if (dst) {
            int8_t *o = dst + b * TQ_BLOCK;
            for (int half = 0; half < 2; half++)
                for (int l = 0; l < 4; l++)
                    for (int m = 0; m < 32; m++)
                        o[128 * half + 32 * l + m] =
                            (int8_t)((int)((blk[32 * half + m] >> (2 * l)) & 3u) - 1);
        }
    }
    return TRIT_OK;
}

/* TQ1_0 (ggml): 5 trits c0..c4 (c0 most significant) as v = sum c_n 3^(4-n) are stored as
 * q = ceil(v * 256 / 243). q / 256 then lies in [v / 243, (v + 1) / 243), so its base-3
 * expansion starts with the trits of v, and trit n is read back as floor(3 * frac(q 3^n / 256)),
 * i.e. ((uint8_t)(q * 3^n) * 3) >> 8. That reading yields a digit 0..2 for every byte value:
 * no byte is invalid. The 13 byte values no encoder produces read as their neighbour's trits. */
static const uint8_t tq1_pow3[5] = {1, 3, 9, 27, 81};

static uint8_t tq1_encode5(const int8_t *w, int stride, int ntrits)
{
    unsigned v = 0;
    for (int n = 0; n < 5; n++)
        v = 3 * v + (n < ntrits ? (unsigned)(w[n * stride] + 1) : 0u);
    return (uint8_t)((v * 256 + 242) / 243);
}

static int tq1_trit(uint8_t q, int n)
{
    return (int)(((unsigned)(uint8_t)(q * tq1_pow3[n]) * 3u) >> 8);
}

static void encode_block_tq1_0(const int8_t *w, uint16_t d, uint8_t *blk)
{
    for (int m = 0; m < 32; m++) /* qs[0..31]: weights m + 32 n */
        blk[m] = tq1_encode5(w + m, 32, 5);
    for (int m = 0; m < 16; m++) /* qs[32..47]: weights 160 + m + 16 n */
        blk[32 + m] = tq1_encode5(w + 160 + m, 16, 5);
    for (int j = 0; j < TQ1_QH_BYTES; j++) /* qh: weights 240 + j + 4 n, fifth trit 0 */
        blk[TQ1_QS_BYTES + j] = tq1_encode5(w + 240 + j, 4, 4);
    store_u16le(blk + TQ1_QS_BYTES + TQ1_QH_BYTES, d);
}

static trit_status decode_row_tq1_0(const char *who, int64_t row, const uint8_t *src, int64_t cols,
                                    int8_t *dst, float *scales)
{
    int64_t nblocks = cols / TQ_BLOCK;
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = src + b * TRIT_TQ1_0_BLOCK_BYTES;
        uint16_t d = load_u16le(blk + TQ1_QS_BYTES + TQ1_QH_BYTES);
        if (!half_is_finite(d))
            return trit_fail(TRIT_ERROR_BAD_FORMAT,
                             "%s: TQ1_0 row %" PRId64 " block %" PRId64
                             ": scale d = 0x%04x is not finite",
                             who, row, b, d);
        if (scales)
            scales[b] = trit_half_to_float(d);
        if (!dst)
            continue;
        int8_t *o = dst + b * TQ_BLOCK;
        for (int n = 0; n < 5; n++) {
            for (int m = 0; m < 32; m++)
                o[m + 32 * n] = (int8_t)(tq1_trit(blk[m], n) - 1);
            for (int m = 0; m < 16; m++)
                o[160 + m + 16 * n] = (int8_t)(tq1_trit(blk[32 + m], n) - 1);
        }
        for (int n = 0; n < 4; n++)
            for (int j = 0; j < TQ1_QH_BYTES; j++)
                o[240 + j + 4 * n] = (int8_t)(tq1_trit(blk[TQ1_QS_BYTES + j], n) - 1);
    }
    return TRIT_OK;
}

/* I2_S (BitNet, x86): weight j of a 128-group in byte j % 32 at shift 6 - 2 (j / 32). */
static void encode_row_i2_s(const int8_t *w, int64_t cols, uint8_t *dst)
{
    for (int64_t g = 0; g < cols / TRIT_I2S_GROUP; g++) {
        const int8_t *q = w + g * TRIT_I2S_GROUP;
        for (int p = 0; p < I2S_GROUP_BYTES; p++)
            dst[g * I2S_GROUP_BYTES + p] = (uint8_t)(((q[p] + 1) << 6) | ((q[32 + p] + 1) << 4) |
                                                     ((q[64 + p] + 1) << 2) | (q[96 + p] + 1));
    }
}

static trit_status decode_row_i2_s(const char *who, int64_t row, const uint8_t *src, int64_t cols,
                                   int8_t *dst)
{
    uint64_t nbytes = row_bytes_of(TRIT_WEIGHTS_I2_S, cols);
    for (uint64_t j = 0; j < nbytes; j++) {
        unsigned v = src[j];
        if (v & (v >> 1) & 0x55u) {
            int k = 0; /* field k at shift 2k holds weight 32 (3 - k) of the group */
            while (((v >> (2 * k)) & 3u) != 3u)
                k++;
            return trit_fail(TRIT_ERROR_BAD_FORMAT,
                             "%s: I2_S row %" PRId64 " byte %" PRIu64
                             " = 0x%02x: invalid code 3 for column %" PRIu64,
                             who, row, j, v,
                             (j / I2S_GROUP_BYTES) * TRIT_I2S_GROUP + 32 * (uint64_t)(3 - k) +
                                 j % I2S_GROUP_BYTES);
        }
    }
    if (dst)
        for (int64_t g = 0; g < cols / TRIT_I2S_GROUP; g++) {
            const uint8_t *q = src + g * I2S_GROUP_BYTES;
            int8_t *o = dst + g * TRIT_I2S_GROUP;
            for (int l = 0; l < 4; l++)
                for (int p = 0; p < I2S_GROUP_BYTES; p++)
                    o[32 * l + p] = (int8_t)((int)((q[p] >> (6 - 2 * l)) & 3u) - 1);
        }
    return TRIT_OK;
}

/* A scale to be stored as fp16 d: finite, not rounding to infinity, and not a nonzero value that
 * would flush to zero (which would silently erase the block). */
static trit_status half_scale(const char *who, const char *fmt_name, int64_t row, int64_t block,
                              float s, uint16_t *out)
{
    uint16_t h = trit_float_to_half(s);
    if (!isfinite(s) || !half_is_finite(h))
        return trit_fail(TRIT_ERROR_BAD_FORMAT,
                         "%s: %s row %" PRId64 " block %" PRId64
                         ": scale %g is not representable in fp16 (finite, |d| <= %d)",
                         who, fmt_name, row, block, (double)s, HALF_MAX_FINITE);
    if (s != 0.0f && (h & 0x7fffu) == 0)
        return trit_fail(TRIT_ERROR_BAD_FORMAT,
                         "%s: %s row %" PRId64 " block %" PRId64
                         ": scale %g underflows to 0 in fp16 (smallest is 2^-24)",
                         who, fmt_name, row, block, (double)s);
    *out = h;
    return TRIT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Public pack / unpack
 * ------------------------------------------------------------------------------------------- */

/* Shared argument checks for pack: pointers, shape, output capacity; then every weight. */
static trit_status pack_prologue(const char *who, trit_weight_format format, const int8_t *w,
                                 int64_t rows, int64_t cols, const uint8_t *out, uint64_t out_bytes)
{
    trit_clear_error();
    if (!w || !out)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", who, !w ? "w" : "out");
    uint64_t need = 0, n = 0;
    trit_status st = format_bytes(who, format, rows, cols, &need);
    if (st != TRIT_OK)
        return st;
    if ((st = check_dense_shape(who, rows, cols, &n)) != TRIT_OK)
        return st;
    if (out_bytes < need)
        return trit_fail(TRIT_ERROR_OUT_OF_BOUNDS,
                         "%s: %s %" PRId64 " x %" PRId64 " needs %" PRIu64
                         " bytes but out holds %" PRIu64,
                         who, format_name(format), rows, cols, need, out_bytes);
    for (int64_t r = 0; r < rows; r++)
        if ((st = check_row_i8(who, r, w + r * cols, cols)) != TRIT_OK)
            return st;
    return TRIT_OK;
}

/* Shared argument checks for unpack: pointers, shape, input size. */
static trit_status unpack_prologue(const char *who, trit_weight_format format, const uint8_t *in,
                                   uint64_t in_bytes, int64_t rows, int64_t cols,
                                   const int8_t *out_w, const void *out_scales,
                                   const char *scales_name)
{
    trit_clear_error();
    if (!in || !out_w || (scales_name && !out_scales))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", who,
                         !in      ? "in"
                         : !out_w ? "out_w"
                                  : scales_name);
    uint64_t need = 0, n = 0;
    trit_status st = format_bytes(who, format, rows, cols, &need);
    if (st != TRIT_OK)
        return st;
    if ((st = check_dense_shape(who, rows, cols, &n)) != TRIT_OK)
        return st;
    if (in_bytes < need)
        return trit_fail(TRIT_ERROR_BAD_FORMAT,
                         "%s: %s %" PRId64 " x %" PRId64 " needs %" PRIu64
                         " bytes but the input has %" PRIu64,
                         who, format_name(format), rows, cols, need, in_bytes);
    return TRIT_OK;
}

trit_status trit_pack_packed2(const int8_t *w, int64_t rows, int64_t cols, uint8_t *out,
                              uint64_t out_bytes)
{
    const char *who = "trit_pack_packed2";
    trit_status st = pack_prologue(who, TRIT_WEIGHTS_PACKED2, w, rows, cols, out, out_bytes);
    if (st != TRIT_OK)
        return st;
    uint64_t rb = row_bytes_of(TRIT_WEIGHTS_PACKED2, cols);
    for (int64_t r = 0; r < rows; r++)
        encode_row_packed2(w + r * cols, cols, out + r * rb);
    return TRIT_OK;
}

trit_status trit_unpack_packed2(const uint8_t *in, uint64_t in_bytes, int64_t rows, int64_t cols,
                                int8_t *out_w)
{
    const char *who = "trit_unpack_packed2";
    trit_status st =
        unpack_prologue(who, TRIT_WEIGHTS_PACKED2, in, in_bytes, rows, cols, out_w, NULL, NULL);
    if (st != TRIT_OK)
        return st;
    uint64_t rb = row_bytes_of(TRIT_WEIGHTS_PACKED2, cols);
    for (int64_t r = 0; r < rows; r++)
        if ((st = decode_row_packed2(who, r, in + r * rb, cols, NULL)) != TRIT_OK)
            return st;
    for (int64_t r = 0; r < rows; r++)
        decode_row_packed2(who, r, in + r * rb, cols, out_w + r * cols);
    return TRIT_OK;
}

trit_status trit_pack_base3(const int8_t *w, int64_t rows, int64_t cols, uint8_t *out,
                            uint64_t out_bytes)
{
    const char *who = "trit_pack_base3";
    trit_status st = pack_prologue(who, TRIT_WEIGHTS_BASE3, w, rows, cols, out, out_bytes);
    if (st != TRIT_OK)
        return st;
    uint64_t rb = row_bytes_of(TRIT_WEIGHTS_BASE3, cols);
    for (int64_t r = 0; r < rows; r++)
        encode_row_base3(w + r * cols, cols, out + r * rb);
    return TRIT_OK;
}

trit_status trit_unpack_base3(const uint8_t *in, uint64_t in_bytes, int64_t rows, int64_t cols,
                              int8_t *out_w)
{
    const char *who = "trit_unpack_base3";
    trit_status st =
        unpack_prologue(who, TRIT_WEIGHTS_BASE3, in, in_bytes, rows, cols, out_w, NULL, NULL);
    if (st != TRIT_OK)
        return st;
    uint64_t rb = row_bytes_of(TRIT_WEIGHTS_BASE3, cols);
    for (int64_t r = 0; r < rows; r++)
        if ((st = decode_row_base3(who, r, in + r * rb, cols, NULL)) != TRIT_OK)
            return st;
    for (int64_t r = 0; r < rows; r++)
        decode_row_base3(who, r, in + r * rb, cols, out_w + r * cols);
    return TRIT_OK;
}

/* TQ pack: check pointers, shape, capacity and every weight, then every scale, then write. */
static trit_status pack_tq(const char *who, trit_weight_format format, const int8_t *w,
                           const float *block_scales, int64_t rows, int64_t cols, uint8_t *out,
                           uint64_t out_bytes)
{
    if (!block_scales) {
        trit_clear_error();
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: block_scales is NULL", who);
    }
    trit_status st = pack_prologue(who, format, w, rows, cols, out, out_bytes);
    if (st != TRIT_OK)
        return st;
    int64_t nb = cols / TQ_BLOCK;
    uint16_t d;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < nb; b++)
            if ((st = half_scale(who, format_name(format), r, b, block_scales[r * nb + b], &d)) !=
                TRIT_OK)
                return st;
    size_t blk_bytes =
        format == TRIT_WEIGHTS_TQ2_0 ? TRIT_TQ2_0_BLOCK_BYTES : TRIT_TQ1_0_BLOCK_BYTES;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < nb; b++) {
            const int8_t *src = w + r * cols + b * TQ_BLOCK;
            uint8_t *blk = out + (r * nb + b) * (int64_t)blk_bytes;
            d = trit_float_to_half(block_scales[r * nb + b]); /* checked above */
            if (format == TRIT_WEIGHTS_TQ2_0)
                encode_block_tq2_0(src, d, blk);
            else
                encode_block_tq1_0(src, d, blk);
        }
    return TRIT_OK;
}

trit_status trit_pack_tq2_0(const int8_t *w, const float *block_scales, int64_t rows, int64_t cols,
                            uint8_t *out, uint64_t out_bytes)
{
    return pack_tq("trit_pack_tq2_0", TRIT_WEIGHTS_TQ2_0, w, block_scales, rows, cols, out,
                   out_bytes);
}

trit_status trit_pack_tq1_0(const int8_t *w, const float *block_scales, int64_t rows, int64_t cols,
                            uint8_t *out, uint64_t out_bytes)
{
    return pack_tq("trit_pack_tq1_0", TRIT_WEIGHTS_TQ1_0, w, block_scales, rows, cols, out,
                   out_bytes);
}

static trit_status unpack_tq(const char *who, trit_weight_format format, const uint8_t *in,
                             uint64_t in_bytes, int64_t rows, int64_t cols, int8_t *out_w,
                             float *out_block_scales)
{
    trit_status st = unpack_prologue(who, format, in, in_bytes, rows, cols, out_w, out_block_scales,
                                     "out_block_scales");
    if (st != TRIT_OK)
        return st;
    uint64_t rb = row_bytes_of(format, cols);
    int64_t nb = cols / TQ_BLOCK;
    for (int pass = 0; pass < 2; pass++) /* validate everything, then write */
        for (int64_t r = 0; r < rows; r++) {
            int8_t *dst = pass ? out_w + r * cols : NULL;
            float *sc = pass ? out_block_scales + r * nb : NULL;
            st = format == TRIT_WEIGHTS_TQ2_0
                     ? decode_row_tq2_0(who, r, in + r * rb, cols, dst, sc)
                     : decode_row_tq1_0(who, r, in + r * rb, cols, dst, sc);
            if (st != TRIT_OK)
                return st;
        }
    return TRIT_OK;
}

trit_status trit_unpack_tq2_0(const uint8_t *in, uint64_t in_bytes, int64_t rows, int64_t cols,
                              int8_t *out_w, float *out_block_scales)
{
    return unpack_tq("trit_unpack_tq2_0", TRIT_WEIGHTS_TQ2_0, in, in_bytes, rows, cols, out_w,
                     out_block_scales);
}

trit_status trit_unpack_tq1_0(const uint8_t *in, uint64_t in_bytes, int64_t rows, int64_t cols,
                              int8_t *out_w, float *out_block_scales)
{
    return unpack_tq("trit_unpack_tq1_0", TRIT_WEIGHTS_TQ1_0, in, in_bytes, rows, cols, out_w,
                     out_block_scales);
}

trit_status trit_pack_i2_s(const int8_t *w, float scale, int64_t rows, int64_t cols, uint8_t *out,
                           uint64_t out_bytes)
{
    const char *who = "trit_pack_i2_s";
    trit_status st = pack_prologue(who, TRIT_WEIGHTS_I2_S, w, rows, cols, out, out_bytes);
    if (st != TRIT_OK)
        return st;
    if (!isfinite(scale))
        return trit_fail(TRIT_ERROR_BAD_FORMAT, "%s: scale %g is not finite", who, (double)scale);
    uint64_t rb = row_bytes_of(TRIT_WEIGHTS_I2_S, cols);
    for (int64_t r = 0; r < rows; r++)
        encode_row_i2_s(w + r * cols, cols, out + r * rb);
    store_f32le(out + (uint64_t)rows * rb, scale);
    return TRIT_OK;
}

trit_status trit_unpack_i2_s(const uint8_t *in, uint64_t in_bytes, int64_t rows, int64_t cols,
                             int8_t *out_w, float *out_scale)
{
    const char *who = "trit_unpack_i2_s";
    trit_status st = unpack_prologue(who, TRIT_WEIGHTS_I2_S, in, in_bytes, rows, cols, out_w,
                                     out_scale, "out_scale");
    if (st != TRIT_OK)
        return st;
    uint64_t rb = row_bytes_of(TRIT_WEIGHTS_I2_S, cols);
    float scale = load_f32le(in + (uint64_t)rows * rb);
    if (!isfinite(scale))
        return trit_fail(TRIT_ERROR_BAD_FORMAT,
                         "%s: the tensor scale at byte %" PRIu64 " is %g, not finite", who,
                         (uint64_t)rows * rb, (double)scale);
    for (int64_t r = 0; r < rows; r++)
        if ((st = decode_row_i2_s(who, r, in + r * rb, cols, NULL)) != TRIT_OK)
            return st;
    for (int64_t r = 0; r < rows; r++)
        decode_row_i2_s(who, r, in + r * rb, cols, out_w + r * cols);
    *out_scale = scale;
    return TRIT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Canonical host form
 * ------------------------------------------------------------------------------------------- */

typedef struct host_mem {
    trit_allocator a; /* both members set, or both NULL for malloc/free */
} host_mem;

static void *mem_alloc(const host_mem *m, size_t bytes)
{
    return m->a.alloc ? m->a.alloc(m->a.user, bytes) : malloc(bytes);
}

static void mem_free(const host_mem *m, void *p)
{
    if (!p)
        return;
    if (m->a.free)
        m->a.free(m->a.user, p);
    else
        free(p);
}

trit_status trit_ternary_host_from_desc(const trit_ternary_desc *desc,
                                        const trit_allocator *allocator,
                                        trit_ternary_host *out_host)
{
    const char *who = "ternary";
    trit_clear_error();
    if (!desc || !out_host)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", who,
                         !desc ? "desc" : "out_host");
    /* Members past desc->size are treated as absent (an older caller): they default to "no
     * scales". Everything up to data_bytes is required. */
    if (desc->size < offsetof(trit_ternary_desc, data_bytes) + sizeof(desc->data_bytes))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "%s: desc->size %zu is too small (sizeof(trit_ternary_desc) is %zu)", who,
                         desc->size, sizeof(trit_ternary_desc));
    int has_scale_members =
        desc->size >= offsetof(trit_ternary_desc, scales) + sizeof(desc->scales);
    const float *user_scales = has_scale_members ? desc->scales : NULL;
    trit_scale_kind user_kind = has_scale_members ? desc->scale_kind : TRIT_SCALE_TENSOR;

    const int64_t rows = desc->rows, cols = desc->cols;
    const trit_weight_format format = desc->format;
    uint64_t need = 0, dense = 0;
    trit_status st = format_bytes(who, format, rows, cols, &need);
    if (st != TRIT_OK)
        return st;
    if ((st = check_dense_shape(who, rows, cols, &dense)) != TRIT_OK)
        return st;
    if (!desc->data)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: desc->data is NULL", who);
    if (desc->data_bytes < need)
        return trit_fail(TRIT_ERROR_BAD_FORMAT,
                         "%s: %s data of %" PRIu64 " bytes is too short: %" PRId64 " x %" PRId64
                         " needs %" PRIu64,
                         who, format_name(format), desc->data_bytes, rows, cols, need);

    /* Scales: the GGUF / BitNet formats carry their own; the others take the caller's. */
    trit_scale_kind kind;
    int gguf = format == TRIT_WEIGHTS_TQ2_0 || format == TRIT_WEIGHTS_TQ1_0;
    if (gguf)
        kind = TRIT_SCALE_BLOCK;
    else if (format == TRIT_WEIGHTS_I2_S || !user_scales)
        kind = TRIT_SCALE_TENSOR;
    else
        kind = user_kind;
    uint64_t nscales = 0, scale_bytes = 0, row_bytes = row_bytes_of(TRIT_WEIGHTS_PACKED2, cols);
    uint64_t code_bytes = 0;
    if ((st = scale_count(who, kind, rows, cols, &nscales)) != TRIT_OK)
        return st;
    if (!mul_u64(nscales, sizeof(float), &scale_bytes) || scale_bytes > SIZE_MAX ||
        !mul_u64((uint64_t)rows, row_bytes, &code_bytes) || code_bytes > SIZE_MAX)
        return trit_fail(TRIT_ERROR_OVERFLOW,
                         "%s: %" PRId64 " x %" PRId64 " does not fit in host memory", who, rows,
                         cols);
    if (!gguf && format != TRIT_WEIGHTS_I2_S && user_scales)
        for (uint64_t i = 0; i < nscales; i++)
            if (!isfinite(user_scales[i]))
                return trit_fail(TRIT_ERROR_BAD_FORMAT, "%s: scale %" PRIu64 " is %g, not finite",
                                 who, i, (double)user_scales[i]);

    const uint8_t *data = (const uint8_t *)desc->data;
    if (format == TRIT_WEIGHTS_I2_S) {
        float s = load_f32le(data + need - 4);
        if (!isfinite(s))
            return trit_fail(TRIT_ERROR_BAD_FORMAT,
                             "%s: I2_S tensor scale at byte %" PRIu64 " is %g, not finite", who,
                             need - 4, (double)s);
    }

    host_mem mem = {{0}};
    if (allocator && allocator->alloc && allocator->free)
        mem.a = *allocator;
    uint8_t *codes = mem_alloc(&mem, (size_t)code_bytes);
    float *scales = mem_alloc(&mem, (size_t)scale_bytes);
    /* A scratch row of int8 weights for the formats that are not already packed2 or int8. */
    int needs_scratch = format != TRIT_WEIGHTS_PACKED2 && format != TRIT_WEIGHTS_I8;
    int8_t *scratch = needs_scratch ? mem_alloc(&mem, (size_t)cols) : NULL;
    if (!codes || !scales || (needs_scratch && !scratch)) {
        mem_free(&mem, codes);
        mem_free(&mem, scales);
        mem_free(&mem, scratch);
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY,
                         "%s: cannot allocate %" PRIu64 " bytes of codes and %" PRIu64
                         " bytes of scales",
                         who, code_bytes, scale_bytes);
    }

    uint64_t src_row_bytes = row_bytes_of(format, cols);
    int64_t nb = cols / TQ_BLOCK;
    for (int64_t r = 0; r < rows && st == TRIT_OK; r++) {
        const uint8_t *src = data + (uint64_t)r * src_row_bytes;
        uint8_t *dst = codes + (uint64_t)r * row_bytes;
        switch (format) {
        case TRIT_WEIGHTS_I8:
            st = check_row_i8(who, r, (const int8_t *)src, cols);
            if (st == TRIT_OK)
                encode_row_packed2((const int8_t *)src, cols, dst);
            break;
        case TRIT_WEIGHTS_PACKED2: /* already canonical once every byte is checked */
            st = decode_row_packed2(who, r, src, cols, NULL);
            if (st == TRIT_OK)
                memcpy(dst, src, (size_t)row_bytes);
            break;
        case TRIT_WEIGHTS_BASE3: st = decode_row_base3(who, r, src, cols, scratch); break;
        case TRIT_WEIGHTS_TQ2_0:
            st = decode_row_tq2_0(who, r, src, cols, scratch, scales + r * nb);
            break;
        case TRIT_WEIGHTS_TQ1_0:
            st = decode_row_tq1_0(who, r, src, cols, scratch, scales + r * nb);
            break;
        case TRIT_WEIGHTS_I2_S: st = decode_row_i2_s(who, r, src, cols, scratch); break;
        }
        if (st == TRIT_OK && needs_scratch)
            encode_row_packed2(scratch, cols, dst);
    }
    mem_free(&mem, scratch);
    if (st != TRIT_OK) {
        mem_free(&mem, codes);
        mem_free(&mem, scales);
        return st;
    }

    if (format == TRIT_WEIGHTS_I2_S)
        scales[0] = load_f32le(data + need - 4);
    else if (!gguf && !user_scales)
        scales[0] = 1.0f;
    else if (!gguf)
        memcpy(scales, user_scales, (size_t)scale_bytes);

    trit_ternary_host h;
    memset(&h, 0, sizeof(h));
    h.size = sizeof(h);
    h.rows = rows;
    h.cols = cols;
    h.row_bytes = row_bytes;
    h.codes = codes;
    h.scale_kind = kind;
    h.scale_count = nscales;
    h.scales = scales;
    h.allocator = mem.a;
    *out_host = h;
    return TRIT_OK;
}

void trit_ternary_host_release(trit_ternary_host *host)
{
    if (!host)
        return;
    host_mem mem = {{0}};
    if (host->allocator.alloc && host->allocator.free)
        mem.a = host->allocator;
    mem_free(&mem, host->codes);
    mem_free(&mem, host->scales);
    memset(host, 0, sizeof(*host));
}
