/*
 * trit_formats.h — host-side ternary weight formats: byte layouts, sizes, converters.
 *
 * Layouts (w in {-1, 0, +1}; "code" = w + 1 in {0, 1, 2}; code 3 is invalid):
 *
 *  TRIT_WEIGHTS_I8       int8 w, row-major, `cols` bytes per row.
 *  TRIT_WEIGHTS_PACKED2  2-bit codes, row-major, ceil(cols/4) bytes per row; weight k of a row is
 *                        bits [2*(k%4), 2*(k%4)+1] of byte k/4. Padding codes are 1 (w = 0).
 *                        This is also the canonical form handed to plugins (trit_ternary_host).
 *  TRIT_WEIGHTS_BASE3    5 trits per byte, row-major, ceil(cols/5) bytes per row; byte j of a row
 *                        is sum_{i<5} code(5j+i) * 3^i (<= 242). Padding trits are code 1.
 *  TRIT_WEIGHTS_TQ2_0    GGUF / ggml block_tq2_0, cols % 256 == 0, cols/256 blocks per row, each
 *                        66 bytes: qs[64] then d (fp16). Weight i of a block (0..255) is in byte
 *                        qs[32*(i/128) + i%32] at bit shift 2*((i%128)/32). Value = (code-1) * d.
 *  TRIT_WEIGHTS_TQ1_0    GGUF / ggml block_tq1_0, cols % 256 == 0, 54 bytes per block: qs[48],
 *                        qh[4], d (fp16). Trits are stored base-3, most significant first, as
 *                        bytes q = ceil(v * 256 / 243) (v the 5-trit value), and read back as
 *                        trit n = ((uint8_t)(q * 3^n) * 3) >> 8. qs[0..31] hold weights
 *                        m + 32n (n = 0..4, m = 0..31) i.e. weights 0..159; qs[32..47] hold
 *                        160 + m + 16n (m < 16); qh[0..3] hold 240 + j + 4n for n = 0..3 in the
 *                        top four trits (the fifth, least significant, is 0).
 *  TRIT_WEIGHTS_I2_S     BitNet I2_S (x86 layout): the whole rows*cols tensor as one sequence in
 *                        groups of 128 weights / 32 bytes; weight j of a group is in byte j%32 at
 *                        bit shift 6 - 2*(j/32). Then one f32 scale (the per-tensor scale), at
 *                        byte offset rows*cols/4. Requires cols % 128 == 0. data_bytes must cover
 *                        rows*cols/4 + 4 (files pad further to 32 bytes; the pad is ignored).
 *
 * Scales: per tensor (1 value), per row (rows values), per block (rows * ceil(cols/256) values,
 * row-major: scales[r * nblocks + b] applies to columns [256 b, 256 b + 256)).
 */
#ifndef TRIT_TRIT_FORMATS_H
#define TRIT_TRIT_FORMATS_H

#include "trit.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TRIT_TQ2_0_BLOCK_BYTES 66
#define TRIT_TQ1_0_BLOCK_BYTES 54
#define TRIT_I2S_GROUP 128

/* Bytes that `rows` x `cols` weights occupy in `format` (for I2_S: codes + the 4-byte scale).
 * Fails with TRIT_ERROR_INVALID_ARGUMENT for rows/cols < 1, TRIT_ERROR_UNSUPPORTED for a cols
 * the format cannot represent (TQ*: % 256, I2_S: % 128), TRIT_ERROR_OVERFLOW if it does not fit. */
TRIT_API trit_status trit_format_bytes(trit_weight_format format, int64_t rows, int64_t cols,
                                       uint64_t *out_bytes);

/* Number of scale values for a scale kind (1, rows, rows * ceil(cols / 256)). */
TRIT_API trit_status trit_scale_count(trit_scale_kind kind, int64_t rows, int64_t cols,
                                      uint64_t *out_count);

/* The canonical host form: packed 2-bit codes plus f32 scales, owned by the struct. */
typedef struct trit_ternary_host {
    uint32_t size; /* sizeof(trit_ternary_host) */
    int64_t rows;
    int64_t cols;
    uint64_t row_bytes; /* ceil(cols / 4) */
    uint8_t *codes;     /* rows * row_bytes bytes, TRIT_WEIGHTS_PACKED2 layout */
    trit_scale_kind scale_kind;
    uint64_t scale_count;
    float *scales;            /* scale_count values */
    trit_allocator allocator; /* what `codes` and `scales` were allocated with */
} trit_ternary_host;

/* Converts a descriptor in any format into the canonical host form, checking every byte:
 * data_bytes too small, an invalid 2-bit code (3), a base-3 byte > 242, row padding that is not
 * w = 0, or a non-finite scale are TRIT_ERROR_BAD_FORMAT with the offending row and byte in the
 * message. (Every TQ1_0 byte decodes to valid trits, as in ggml, so TQ1_0 bytes are accepted.)
 * I8/PACKED2/BASE3 with scales == NULL get one per-tensor scale of 1; TQ formats give per-block
 * scales, I2_S a per-tensor scale. `allocator` may be NULL (malloc). Nothing is written to
 * `out_host` on failure. Release with trit_ternary_host_release. */
TRIT_API trit_status trit_ternary_host_from_desc(const trit_ternary_desc *desc,
                                                 const trit_allocator *allocator,
                                                 trit_ternary_host *out_host);
TRIT_API void trit_ternary_host_release(trit_ternary_host *host);

/* Dense int8 <-> packed formats. `w` is rows x cols int8 in {-1,0,1} (anything else is
 * TRIT_ERROR_BAD_FORMAT). `out_bytes` is the capacity of `out`; too small is
 * TRIT_ERROR_OUT_OF_BOUNDS. Scales: for TQ formats `block_scales` (rows * cols/256 values,
 * stored as fp16 d; they must be finite and representable), for I2_S one `scale`. */
TRIT_API trit_status trit_pack_packed2(const int8_t *w, int64_t rows, int64_t cols, uint8_t *out,
                                       uint64_t out_bytes);
TRIT_API trit_status trit_unpack_packed2(const uint8_t *in, uint64_t in_bytes, int64_t rows,
                                         int64_t cols, int8_t *out_w);
TRIT_API trit_status trit_pack_base3(const int8_t *w, int64_t rows, int64_t cols, uint8_t *out,
                                     uint64_t out_bytes);
TRIT_API trit_status trit_unpack_base3(const uint8_t *in, uint64_t in_bytes, int64_t rows,
                                       int64_t cols, int8_t *out_w);
TRIT_API trit_status trit_pack_tq2_0(const int8_t *w, const float *block_scales, int64_t rows,
                                     int64_t cols, uint8_t *out, uint64_t out_bytes);
TRIT_API trit_status trit_unpack_tq2_0(const uint8_t *in, uint64_t in_bytes, int64_t rows,
                                       int64_t cols, int8_t *out_w, float *out_block_scales);
TRIT_API trit_status trit_pack_tq1_0(const int8_t *w, const float *block_scales, int64_t rows,
                                     int64_t cols, uint8_t *out, uint64_t out_bytes);
TRIT_API trit_status trit_unpack_tq1_0(const uint8_t *in, uint64_t in_bytes, int64_t rows,
                                       int64_t cols, int8_t *out_w, float *out_block_scales);
TRIT_API trit_status trit_pack_i2_s(const int8_t *w, float scale, int64_t rows, int64_t cols,
                                    uint8_t *out, uint64_t out_bytes);
TRIT_API trit_status trit_unpack_i2_s(const uint8_t *in, uint64_t in_bytes, int64_t rows,
                                      int64_t cols, int8_t *out_w, float *out_scale);

/* ----------------------------------------------------------------------------------------------
 * GGUF reader. Parses the header, the key/value metadata and the tensor infos of a GGUF file
 * (versions 2 and 3) held in memory, treating every byte as hostile: counts, lengths, dims,
 * types, offsets and alignment are all checked against the buffer before use. A malformed file
 * is TRIT_ERROR_BAD_FORMAT with the byte offset in the sentence. The reader does not copy tensor
 * data: `data` must stay valid (e.g. mmap'ed) until trit_gguf_close.
 * -------------------------------------------------------------------------------------------- */

typedef struct trit_gguf trit_gguf;

/* GGUF value types, numbered as in the file format. */
typedef enum trit_gguf_type {
    TRIT_GGUF_U8 = 0,
    TRIT_GGUF_I8 = 1,
    TRIT_GGUF_U16 = 2,
    TRIT_GGUF_I16 = 3,
    TRIT_GGUF_U32 = 4,
    TRIT_GGUF_I32 = 5,
    TRIT_GGUF_F32 = 6,
    TRIT_GGUF_BOOL = 7,
    TRIT_GGUF_STRING = 8,
    TRIT_GGUF_ARRAY = 9,
    TRIT_GGUF_U64 = 10,
    TRIT_GGUF_I64 = 11,
    TRIT_GGUF_F64 = 12,
} trit_gguf_type;

/* ggml tensor type numbers for the ternary formats (BitNet's fork numbers I2_S 36). */
#define TRIT_GGML_TYPE_TQ1_0 34
#define TRIT_GGML_TYPE_TQ2_0 35
#define TRIT_GGML_TYPE_I2_S 36

#define TRIT_GGUF_MAX_DIMS 4

typedef struct trit_gguf_tensor_info {
    size_t size;      /* sizeof(trit_gguf_tensor_info), set by the caller */
    const char *name; /* NUL-terminated, owned by the reader */
    uint32_t n_dims;
    uint64_t dims[TRIT_GGUF_MAX_DIMS]; /* ggml order: dims[0] is the innermost (K) */
    uint32_t ggml_type;
    uint64_t offset;  /* from the start of the file */
    uint64_t bytes;   /* 0 when the type's size is not known to trit */
    const void *data; /* NULL when bytes is 0 */
} trit_gguf_tensor_info;

TRIT_API trit_status trit_gguf_open(const void *data, uint64_t bytes,
                                    const trit_allocator *allocator, trit_gguf **out_gguf);
TRIT_API void trit_gguf_close(trit_gguf *gguf); /* NULL is a no-op */
TRIT_API uint32_t trit_gguf_version(const trit_gguf *gguf);
TRIT_API uint64_t trit_gguf_kv_count(const trit_gguf *gguf);
TRIT_API uint64_t trit_gguf_tensor_count(const trit_gguf *gguf);

/* Key/value metadata. Keys and string values are NUL-terminated copies owned by the reader. */
TRIT_API trit_status trit_gguf_kv_find(const trit_gguf *gguf, const char *key, uint64_t *out_index);
TRIT_API trit_status trit_gguf_kv_key(const trit_gguf *gguf, uint64_t index, const char **out_key,
                                      trit_gguf_type *out_type);
/* Integer values (any integer or bool type) widened; TRIT_ERROR_BAD_FORMAT for other types or a
 * negative value asked for as unsigned. */
TRIT_API trit_status trit_gguf_kv_u64(const trit_gguf *gguf, uint64_t index, uint64_t *out_value);
TRIT_API trit_status trit_gguf_kv_i64(const trit_gguf *gguf, uint64_t index, int64_t *out_value);
TRIT_API trit_status trit_gguf_kv_f64(const trit_gguf *gguf, uint64_t index, double *out_value);
TRIT_API trit_status trit_gguf_kv_string(const trit_gguf *gguf, uint64_t index,
                                         const char **out_str);
/* Arrays: element type and count; numeric elements are little-endian at `out_data` (NULL for
 * string arrays; read those with trit_gguf_kv_array_string). */
TRIT_API trit_status trit_gguf_kv_array(const trit_gguf *gguf, uint64_t index,
                                        trit_gguf_type *out_elem_type, uint64_t *out_count,
                                        const void **out_data);
TRIT_API trit_status trit_gguf_kv_array_string(const trit_gguf *gguf, uint64_t index, uint64_t elem,
                                               const char **out_str, uint64_t *out_len);

TRIT_API trit_status trit_gguf_tensor_find(const trit_gguf *gguf, const char *name,
                                           uint64_t *out_index);
TRIT_API trit_status trit_gguf_tensor_get(const trit_gguf *gguf, uint64_t index,
                                          trit_gguf_tensor_info *out_info);
/* A ternary tensor (TQ1_0, TQ2_0, I2_S) as a descriptor ready for trit_ternary_upload:
 * rows = dims[1] * dims[2] * dims[3], cols = dims[0]. Other types: TRIT_ERROR_UNSUPPORTED. */
TRIT_API trit_status trit_gguf_ternary_desc(const trit_gguf *gguf, uint64_t index,
                                            trit_ternary_desc *out_desc);

/* IEEE half <-> float, round to nearest even; used by formats and tests. */
TRIT_API float trit_half_to_float(uint16_t h);
TRIT_API uint16_t trit_float_to_half(float f);
TRIT_API float trit_bf16_to_float(uint16_t h);
TRIT_API uint16_t trit_float_to_bf16(float f);

#ifdef __cplusplus
}
#endif

#endif /* TRIT_TRIT_FORMATS_H */
