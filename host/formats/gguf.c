/*
 * gguf.c — a GGUF reader that trusts nothing: every count, length and offset read from the file
 * is checked against the bytes that remain before it is used, counts are bounded by what the
 * remaining bytes could possibly hold before anything is allocated, and all size arithmetic is
 * overflow-checked. Layout (little-endian): magic "GGUF", u32 version, u64 tensor count, u64 kv
 * count, the KVs (string key, u32 type, value), the tensor infos (string name, u32 n_dims,
 * u64 dims[n_dims], u32 type, u64 offset relative to the data section), padding to the
 * alignment (general.alignment, default 32), the data section.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "trit/trit_formats.h"

enum { GGUF_DEFAULT_ALIGNMENT = 32, GGUF_MAX_ARRAY_DEPTH = 4 };

typedef struct gguf_kv {
    char *key;
    trit_gguf_type type;
    union {
        uint64_t u;
        int64_t i;
        double f;
    } value;
    char *str;            /* STRING */
    trit_gguf_type elem;  /* ARRAY */
    uint64_t count;       /* ARRAY */
    uint64_t data_offset; /* ARRAY: first element's byte offset in the file */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    uint32_t n_dims;
    uint64_t dims[TRIT_GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t offset; /* absolute */
    uint64_t bytes;
} gguf_tensor;

struct trit_gguf {
    trit_allocator allocator;
    const uint8_t *data;
    uint64_t bytes;
    uint32_t version;
    uint64_t kv_count;
    gguf_kv *kvs;
    uint64_t tensor_count;
    gguf_tensor *tensors;
};

typedef struct reader {
    const uint8_t *data;
    uint64_t size;
    uint64_t pos;
} reader;

static void *g_alloc(const trit_gguf *g, size_t n)
{
    if (g->allocator.alloc)
        return g->allocator.alloc(g->allocator.user, n ? n : 1);
    return malloc(n ? n : 1);
}

static void g_free(const trit_gguf *g, void *p)
{
    if (!p)
        return;
    if (g->allocator.alloc)
        g->allocator.free(g->allocator.user, p);
    else
        free(p);
}

static trit_status bad(const reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static trit_status bad(const reader *r, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return trit_fail(TRIT_ERROR_BAD_FORMAT, "gguf: byte %llu: %s", (unsigned long long)r->pos, msg);
}

static int need(const reader *r, uint64_t n)
{
    return n <= r->size - r->pos;
}

static trit_status rd_bytes(reader *r, void *out, uint64_t n, const char *what)
{
    if (!need(r, n))
        return bad(r, "file ends inside %s (%llu bytes needed, %llu left)", what,
                   (unsigned long long)n, (unsigned long long)(r->size - r->pos));
    memcpy(out, r->data + r->pos, (size_t)n);
    r->pos += n;
    return TRIT_OK;
}

static uint64_t le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static trit_status rd_u32(reader *r, uint32_t *out, const char *what)
{
    uint8_t b[4] = {0};
    trit_status st = rd_bytes(r, b, 4, what);
    if (st == TRIT_OK)
        *out = (uint32_t)le(b, 4);
    return st;
}

static trit_status rd_u64(reader *r, uint64_t *out, const char *what)
{
    uint8_t b[8] = {0};
    trit_status st = rd_bytes(r, b, 8, what);
    if (st == TRIT_OK)
        *out = le(b, 8);
    return st;
}

/* A GGUF string: u64 length then bytes. Copied NUL-terminated when `out` is non-NULL. */
static trit_status rd_string(trit_gguf *g, reader *r, char **out, const char *what)
{
    uint64_t len;
    trit_status st = rd_u64(r, &len, what);
    if (st != TRIT_OK)
        return st;
    if (!need(r, len))
        return bad(r, "%s of %llu bytes runs past the end of the file", what,
                   (unsigned long long)len);
    if (out) {
        if (len > SIZE_MAX - 1)
            return bad(r, "%s too long", what);
        char *s = g_alloc(g, (size_t)len + 1);
        if (!s)
            return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "gguf: out of memory for %s", what);
        memcpy(s, r->data + r->pos, (size_t)len);
        s[len] = '\0';
        if (memchr(s, '\0', (size_t)len)) {
            g_free(g, s);
            return bad(r, "%s contains a NUL byte", what);
        }
        *out = s;
    }
    r->pos += len;
    return TRIT_OK;
}

static uint64_t scalar_size(uint32_t type)
{
    switch (type) {
    case TRIT_GGUF_U8:
    case TRIT_GGUF_I8:
    case TRIT_GGUF_BOOL: return 1;
    case TRIT_GGUF_U16:
    case TRIT_GGUF_I16: return 2;
    case TRIT_GGUF_U32:
    case TRIT_GGUF_I32:
    case TRIT_GGUF_F32: return 4;
    case TRIT_GGUF_U64:
    case TRIT_GGUF_I64:
    case TRIT_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Skips (validating) `count` values of `type`, recursing into nested arrays up to a depth. */
static trit_status skip_values(trit_gguf *g, reader *r, uint32_t type, uint64_t count, int depth)
{
    uint64_t es = scalar_size(type);
    if (es) {
        uint64_t total;
        if (__builtin_mul_overflow(count, es, &total) || !need(r, total))
            return bad(r, "array of %llu elements runs past the end of the file",
                       (unsigned long long)count);
        r->pos += total;
        return TRIT_OK;
    }
    if (type == TRIT_GGUF_STRING) {
        if (count > (r->size - r->pos) / 8)
            return bad(r, "array of %llu strings cannot fit in the file",
                       (unsigned long long)count);
        for (uint64_t i = 0; i < count; i++) {
            trit_status st = rd_string(g, r, NULL, "array string");
            if (st != TRIT_OK)
                return st;
        }
        return TRIT_OK;
    }
    if (type == TRIT_GGUF_ARRAY) {
        if (depth >= GGUF_MAX_ARRAY_DEPTH)
            return bad(r, "arrays nested deeper than %d", GGUF_MAX_ARRAY_DEPTH);
        if (count > (r->size - r->pos) / 12)
            return bad(r, "array of %llu arrays cannot fit in the file", (unsigned long long)count);
        for (uint64_t i = 0; i < count; i++) {
            uint32_t et;
            uint64_t n;
            trit_status st = rd_u32(r, &et, "nested array type");
            if (st == TRIT_OK)
                st = rd_u64(r, &n, "nested array count");
            if (st == TRIT_OK)
                st = skip_values(g, r, et, n, depth + 1);
            if (st != TRIT_OK)
                return st;
        }
        return TRIT_OK;
    }
    return bad(r, "unknown value type %u", type);
}

static trit_status read_kv(trit_gguf *g, reader *r, gguf_kv *kv)
{
    trit_status st = rd_string(g, r, &kv->key, "key");
    uint32_t type;
    if (st == TRIT_OK)
        st = rd_u32(r, &type, "value type");
    if (st != TRIT_OK)
        return st;
    kv->type = (trit_gguf_type)type;
    uint64_t es = scalar_size(type);
    if (es) {
        uint8_t b[8] = {0};
        if ((st = rd_bytes(r, b, es, "value")) != TRIT_OK)
            return st;
        uint64_t raw = le(b, (unsigned)es);
        switch (type) {
        case TRIT_GGUF_I8: kv->value.i = (int8_t)raw; break;
        case TRIT_GGUF_I16: kv->value.i = (int16_t)raw; break;
        case TRIT_GGUF_I32: kv->value.i = (int32_t)raw; break;
        case TRIT_GGUF_I64: kv->value.i = (int64_t)raw; break;
        case TRIT_GGUF_F32: {
            uint32_t u = (uint32_t)raw;
            float f;
            memcpy(&f, &u, 4);
            kv->value.f = f;
            break;
        }
        case TRIT_GGUF_F64: memcpy(&kv->value.f, &raw, 8); break;
        case TRIT_GGUF_BOOL:
            if (raw > 1)
                return bad(r, "bool value %llu for key %s", (unsigned long long)raw, kv->key);
            kv->value.u = raw;
            break;
        default: kv->value.u = raw; break;
        }
        return TRIT_OK;
    }
    if (type == TRIT_GGUF_STRING)
        return rd_string(g, r, &kv->str, "string value");
    if (type == TRIT_GGUF_ARRAY) {
        uint32_t et;
        if ((st = rd_u32(r, &et, "array type")) != TRIT_OK ||
            (st = rd_u64(r, &kv->count, "array count")) != TRIT_OK)
            return st;
        kv->elem = (trit_gguf_type)et;
        kv->data_offset = r->pos;
        return skip_values(g, r, et, kv->count, 1);
    }
    return bad(r, "key %s has unknown value type %u", kv->key, type);
}

/* Bytes of a ggml tensor of `n` elements with `k` innermost, for the types trit knows. */
static int ggml_type_bytes(uint32_t type, uint64_t n, uint64_t k, uint64_t *out)
{
    uint64_t block = 1, bytes_per_block = 0;
    switch (type) {
    case 0: bytes_per_block = 4; break;                 /* F32 */
    case 1: bytes_per_block = 2; break;                 /* F16 */
    case 2: block = 32, bytes_per_block = 18; break;    /* Q4_0 */
    case 3: block = 32, bytes_per_block = 20; break;    /* Q4_1 */
    case 6: block = 32, bytes_per_block = 22; break;    /* Q5_0 */
    case 7: block = 32, bytes_per_block = 24; break;    /* Q5_1 */
    case 8: block = 32, bytes_per_block = 34; break;    /* Q8_0 */
    case 10: block = 256, bytes_per_block = 84; break;  /* Q2_K */
    case 11: block = 256, bytes_per_block = 110; break; /* Q3_K */
    case 12: block = 256, bytes_per_block = 144; break; /* Q4_K */
    case 13: block = 256, bytes_per_block = 176; break; /* Q5_K */
    case 14: block = 256, bytes_per_block = 210; break; /* Q6_K */
    case 24: bytes_per_block = 1; break;                /* I8 */
    case 25: bytes_per_block = 2; break;                /* I16 */
    case 26: bytes_per_block = 4; break;                /* I32 */
    case 27: bytes_per_block = 8; break;                /* I64 */
    case 28: bytes_per_block = 8; break;                /* F64 */
    case 30: bytes_per_block = 2; break;                /* BF16 */
    case TRIT_GGML_TYPE_TQ1_0: block = 256, bytes_per_block = TRIT_TQ1_0_BLOCK_BYTES; break;
    case TRIT_GGML_TYPE_TQ2_0: block = 256, bytes_per_block = TRIT_TQ2_0_BLOCK_BYTES; break;
    case TRIT_GGML_TYPE_I2_S:
        /* 2-bit codes, then one f32 scale; files pad the tensor to 32 bytes. */
        if (n % 4)
            return -1;
        *out = n / 4 + 32;
        return 1;
    default: return 0;
    }
    if (k % block)
        return -1;
    uint64_t blocks = n / block;
    return __builtin_mul_overflow(blocks, bytes_per_block, out) ? -1 : 1;
}

static void gguf_free_all(trit_gguf *g)
{
    for (uint64_t i = 0; g->kvs && i < g->kv_count; i++) {
        g_free(g, g->kvs[i].key);
        g_free(g, g->kvs[i].str);
    }
    for (uint64_t i = 0; g->tensors && i < g->tensor_count; i++)
        g_free(g, g->tensors[i].name);
    g_free(g, g->kvs);
    g_free(g, g->tensors);
    trit_allocator a = g->allocator;
    if (a.alloc)
        a.free(a.user, g);
    else
        free(g);
}

static trit_status gguf_parse(trit_gguf *g)
{
    reader r = {g->data, g->bytes, 0};
    uint8_t magic[4] = {0};
    trit_status st = rd_bytes(&r, magic, 4, "magic");
    if (st != TRIT_OK)
        return st;
    if (memcmp(magic, "GGUF", 4) != 0)
        return trit_fail(TRIT_ERROR_BAD_FORMAT, "gguf: not a GGUF file (magic %02x %02x %02x %02x)",
                         magic[0], magic[1], magic[2], magic[3]);
    uint64_t nt, nkv;
    if ((st = rd_u32(&r, &g->version, "version")) != TRIT_OK ||
        (st = rd_u64(&r, &nt, "tensor count")) != TRIT_OK ||
        (st = rd_u64(&r, &nkv, "kv count")) != TRIT_OK)
        return st;
    if (g->version < 2 || g->version > 3)
        return trit_fail(TRIT_ERROR_UNSUPPORTED, "gguf: version %u (2 and 3 are supported)",
                         g->version);
    /* Every KV takes >= 13 bytes and every tensor info >= 24: bound counts before allocating. */
    uint64_t left = r.size - r.pos;
    if (nkv > left / 13)
        return bad(&r, "%llu key/values cannot fit in the %llu bytes left", (unsigned long long)nkv,
                   (unsigned long long)left);
    if (nt > left / 24)
        return bad(&r, "%llu tensors cannot fit in the %llu bytes left", (unsigned long long)nt,
                   (unsigned long long)left);
    g->kvs = g_alloc(g, (size_t)(nkv ? nkv : 1) * sizeof(gguf_kv));
    g->tensors = g_alloc(g, (size_t)(nt ? nt : 1) * sizeof(gguf_tensor));
    if (!g->kvs || !g->tensors)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "gguf: out of memory for the metadata");
    memset(g->kvs, 0, (size_t)(nkv ? nkv : 1) * sizeof(gguf_kv));
    memset(g->tensors, 0, (size_t)(nt ? nt : 1) * sizeof(gguf_tensor));

    uint64_t alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < nkv; i++) {
        g->kv_count = i + 1;
        if ((st = read_kv(g, &r, &g->kvs[i])) != TRIT_OK)
            return st;
        if (strcmp(g->kvs[i].key, "general.alignment") == 0) {
            if (g->kvs[i].type != TRIT_GGUF_U32 || g->kvs[i].value.u == 0 ||
                (g->kvs[i].value.u & (g->kvs[i].value.u - 1)) != 0)
                return bad(&r, "general.alignment must be a u32 power of two");
            alignment = g->kvs[i].value.u;
        }
    }
    for (uint64_t i = 0; i < nt; i++) {
        g->tensor_count = i + 1;
        gguf_tensor *t = &g->tensors[i];
        if ((st = rd_string(g, &r, &t->name, "tensor name")) != TRIT_OK ||
            (st = rd_u32(&r, &t->n_dims, "n_dims")) != TRIT_OK)
            return st;
        if (t->n_dims < 1 || t->n_dims > TRIT_GGUF_MAX_DIMS)
            return bad(&r, "tensor %s has %u dims (1..%d)", t->name, t->n_dims, TRIT_GGUF_MAX_DIMS);
        uint64_t n = 1;
        for (uint32_t d = 0; d < TRIT_GGUF_MAX_DIMS; d++)
            t->dims[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if ((st = rd_u64(&r, &t->dims[d], "dim")) != TRIT_OK)
                return st;
            if (t->dims[d] == 0 || t->dims[d] > (uint64_t)INT64_MAX ||
                __builtin_mul_overflow(n, t->dims[d], &n) || n > (uint64_t)INT64_MAX)
                return bad(&r, "tensor %s has dims that are zero or overflow", t->name);
        }
        uint64_t rel;
        if ((st = rd_u32(&r, &t->type, "tensor type")) != TRIT_OK ||
            (st = rd_u64(&r, &rel, "tensor offset")) != TRIT_OK)
            return st;
        if (rel % alignment)
            return bad(&r, "tensor %s offset %llu is not a multiple of the alignment %llu", t->name,
                       (unsigned long long)rel, (unsigned long long)alignment);
        t->offset = rel; /* made absolute below, once the data section is known */
        int known = ggml_type_bytes(t->type, n, t->dims[0], &t->bytes);
        if (known < 0)
            return bad(&r, "tensor %s: %llu elements do not fill whole blocks of type %u", t->name,
                       (unsigned long long)n, t->type);
        if (!known)
            t->bytes = 0;
    }
    uint64_t data_start = r.pos;
    if (data_start % alignment) {
        if (__builtin_add_overflow(data_start, alignment - data_start % alignment, &data_start))
            return bad(&r, "data section start overflows");
    }
    for (uint64_t i = 0; i < nt; i++) {
        gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        if (__builtin_add_overflow(t->offset, data_start, &t->offset) ||
            __builtin_add_overflow(t->offset, t->bytes, &end) || end > g->bytes)
            return trit_fail(TRIT_ERROR_BAD_FORMAT,
                             "gguf: tensor %s (%llu bytes at data offset %llu) runs past the end "
                             "of the %llu-byte file",
                             t->name, (unsigned long long)t->bytes,
                             (unsigned long long)(t->offset - data_start),
                             (unsigned long long)g->bytes);
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->tensors[j].name, t->name) == 0)
                return trit_fail(TRIT_ERROR_BAD_FORMAT, "gguf: tensor name %s appears twice",
                                 t->name);
    }
    return TRIT_OK;
}

trit_status trit_gguf_open(const void *data, uint64_t bytes, const trit_allocator *allocator,
                           trit_gguf **out_gguf)
{
    trit_clear_error();
    if (!out_gguf || (!data && bytes))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: data or out_gguf is NULL");
    *out_gguf = NULL;
    if (allocator && ((allocator->alloc == NULL) != (allocator->free == NULL)))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: allocator needs alloc and free");
    trit_allocator a = {0};
    if (allocator && allocator->alloc)
        a = *allocator;
    trit_gguf *g = a.alloc ? a.alloc(a.user, sizeof(*g)) : malloc(sizeof(*g));
    if (!g)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "gguf: out of memory");
    memset(g, 0, sizeof(*g));
    g->allocator = a;
    g->data = data;
    g->bytes = bytes;
    trit_status st = gguf_parse(g);
    if (st != TRIT_OK) {
        gguf_free_all(g);
        return st;
    }
    *out_gguf = g;
    return TRIT_OK;
}

void trit_gguf_close(trit_gguf *g)
{
    if (g)
        gguf_free_all(g);
}

uint32_t trit_gguf_version(const trit_gguf *g)
{
    return g ? g->version : 0;
}

uint64_t trit_gguf_kv_count(const trit_gguf *g)
{
    return g ? g->kv_count : 0;
}

uint64_t trit_gguf_tensor_count(const trit_gguf *g)
{
    return g ? g->tensor_count : 0;
}

static trit_status kv_at(const trit_gguf *g, uint64_t index, const gguf_kv **out)
{
    trit_clear_error();
    if (!g)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: reader is NULL");
    if (index >= g->kv_count)
        return trit_fail(TRIT_ERROR_NOT_FOUND, "gguf: key/value %llu of %llu",
                         (unsigned long long)index, (unsigned long long)g->kv_count);
    *out = &g->kvs[index];
    return TRIT_OK;
}

trit_status trit_gguf_kv_find(const trit_gguf *g, const char *key, uint64_t *out_index)
{
    trit_clear_error();
    if (!g || !key || !out_index)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: reader, key or out_index is NULL");
    for (uint64_t i = 0; i < g->kv_count; i++)
        if (strcmp(g->kvs[i].key, key) == 0) {
            *out_index = i;
            return TRIT_OK;
        }
    return trit_fail(TRIT_ERROR_NOT_FOUND, "gguf: no key %s", key);
}

trit_status trit_gguf_kv_key(const trit_gguf *g, uint64_t index, const char **out_key,
                             trit_gguf_type *out_type)
{
    const gguf_kv *kv = NULL;
    trit_status st = kv_at(g, index, &kv);
    if (st != TRIT_OK)
        return st;
    if (out_key)
        *out_key = kv->key;
    if (out_type)
        *out_type = kv->type;
    return TRIT_OK;
}

static int is_int_type(trit_gguf_type t)
{
    return scalar_size(t) && t != TRIT_GGUF_F32 && t != TRIT_GGUF_F64;
}

static int is_signed_type(trit_gguf_type t)
{
    return t == TRIT_GGUF_I8 || t == TRIT_GGUF_I16 || t == TRIT_GGUF_I32 || t == TRIT_GGUF_I64;
}

trit_status trit_gguf_kv_u64(const trit_gguf *g, uint64_t index, uint64_t *out_value)
{
    const gguf_kv *kv = NULL;
    trit_status st = kv_at(g, index, &kv);
    if (st != TRIT_OK)
        return st;
    if (!out_value || !is_int_type(kv->type))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: %s is not an integer", kv->key);
    if (is_signed_type(kv->type) && kv->value.i < 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: %s is negative", kv->key);
    *out_value = kv->value.u;
    return TRIT_OK;
}

trit_status trit_gguf_kv_i64(const trit_gguf *g, uint64_t index, int64_t *out_value)
{
    const gguf_kv *kv = NULL;
    trit_status st = kv_at(g, index, &kv);
    if (st != TRIT_OK)
        return st;
    if (!out_value || !is_int_type(kv->type))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: %s is not an integer", kv->key);
    if (!is_signed_type(kv->type) && kv->value.u > (uint64_t)INT64_MAX)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: %s does not fit in int64", kv->key);
    *out_value = kv->value.i;
    return TRIT_OK;
}

trit_status trit_gguf_kv_f64(const trit_gguf *g, uint64_t index, double *out_value)
{
    const gguf_kv *kv = NULL;
    trit_status st = kv_at(g, index, &kv);
    if (st != TRIT_OK)
        return st;
    if (!out_value || (kv->type != TRIT_GGUF_F32 && kv->type != TRIT_GGUF_F64))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: %s is not a float", kv->key);
    *out_value = kv->value.f;
    return TRIT_OK;
}

trit_status trit_gguf_kv_string(const trit_gguf *g, uint64_t index, const char **out_str)
{
    const gguf_kv *kv = NULL;
    trit_status st = kv_at(g, index, &kv);
    if (st != TRIT_OK)
        return st;
    if (!out_str || kv->type != TRIT_GGUF_STRING)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: %s is not a string", kv->key);
    *out_str = kv->str;
    return TRIT_OK;
}

trit_status trit_gguf_kv_array(const trit_gguf *g, uint64_t index, trit_gguf_type *out_elem_type,
                               uint64_t *out_count, const void **out_data)
{
    const gguf_kv *kv = NULL;
    trit_status st = kv_at(g, index, &kv);
    if (st != TRIT_OK)
        return st;
    if (kv->type != TRIT_GGUF_ARRAY)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: %s is not an array", kv->key);
    if (out_elem_type)
        *out_elem_type = kv->elem;
    if (out_count)
        *out_count = kv->count;
    if (out_data)
        *out_data = scalar_size(kv->elem) ? g->data + kv->data_offset : NULL;
    return TRIT_OK;
}

trit_status trit_gguf_kv_array_string(const trit_gguf *g, uint64_t index, uint64_t elem,
                                      const char **out_str, uint64_t *out_len)
{
    const gguf_kv *kv = NULL;
    trit_status st = kv_at(g, index, &kv);
    if (st != TRIT_OK)
        return st;
    if (kv->type != TRIT_GGUF_ARRAY || kv->elem != TRIT_GGUF_STRING || !out_str || !out_len)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: %s is not an array of strings",
                         kv->key);
    if (elem >= kv->count)
        return trit_fail(TRIT_ERROR_NOT_FOUND, "gguf: %s has %llu strings, not %llu", kv->key,
                         (unsigned long long)kv->count, (unsigned long long)elem + 1);
    /* Validated at open: walking the lengths stays inside the file. */
    uint64_t pos = kv->data_offset;
    for (uint64_t i = 0;; i++) {
        uint64_t len = le(g->data + pos, 8);
        if (i == elem) {
            *out_str = (const char *)g->data + pos + 8;
            *out_len = len;
            return TRIT_OK;
        }
        pos += 8 + len;
    }
}

trit_status trit_gguf_tensor_find(const trit_gguf *g, const char *name, uint64_t *out_index)
{
    trit_clear_error();
    if (!g || !name || !out_index)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: reader, name or out_index is NULL");
    for (uint64_t i = 0; i < g->tensor_count; i++)
        if (strcmp(g->tensors[i].name, name) == 0) {
            *out_index = i;
            return TRIT_OK;
        }
    return trit_fail(TRIT_ERROR_NOT_FOUND, "gguf: no tensor %s", name);
}

trit_status trit_gguf_tensor_get(const trit_gguf *g, uint64_t index, trit_gguf_tensor_info *out)
{
    trit_clear_error();
    if (!g || !out)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: reader or out_info is NULL");
    if (out->size == 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "gguf: out_info->size is 0; set it to sizeof(trit_gguf_tensor_info)");
    if (index >= g->tensor_count)
        return trit_fail(TRIT_ERROR_NOT_FOUND, "gguf: tensor %llu of %llu",
                         (unsigned long long)index, (unsigned long long)g->tensor_count);
    const gguf_tensor *t = &g->tensors[index];
    trit_gguf_tensor_info info;
    memset(&info, 0, sizeof(info));
    info.size = out->size;
    info.name = t->name;
    info.n_dims = t->n_dims;
    memcpy(info.dims, t->dims, sizeof(info.dims));
    info.ggml_type = t->type;
    info.offset = t->offset;
    info.bytes = t->bytes;
    info.data = t->bytes ? g->data + t->offset : NULL;
    memcpy(out, &info, out->size < sizeof(info) ? out->size : sizeof(info));
    return TRIT_OK;
}

trit_status trit_gguf_ternary_desc(const trit_gguf *g, uint64_t index, trit_ternary_desc *out)
{
    trit_gguf_tensor_info info;
    memset(&info, 0, sizeof(info));
    info.size = sizeof(info);
    trit_status st = trit_gguf_tensor_get(g, index, &info);
    if (st != TRIT_OK)
        return st;
    if (!out)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gguf: out_desc is NULL");
    trit_weight_format format;
    switch (info.ggml_type) {
    case TRIT_GGML_TYPE_TQ1_0: format = TRIT_WEIGHTS_TQ1_0; break;
    case TRIT_GGML_TYPE_TQ2_0: format = TRIT_WEIGHTS_TQ2_0; break;
    case TRIT_GGML_TYPE_I2_S: format = TRIT_WEIGHTS_I2_S; break;
    default:
        return trit_fail(TRIT_ERROR_UNSUPPORTED,
                         "gguf: tensor %s has ggml type %u, not a ternary type (TQ1_0, TQ2_0, "
                         "I2_S)",
                         info.name, info.ggml_type);
    }
    uint64_t rows = info.dims[1] * info.dims[2] * info.dims[3]; /* product checked at open */
    memset(out, 0, sizeof(*out));
    out->size = sizeof(*out);
    out->rows = (int64_t)rows;
    out->cols = (int64_t)info.dims[0];
    out->format = format;
    out->data = info.data;
    out->data_bytes = info.bytes;
    out->scale_kind = TRIT_SCALE_TENSOR;
    out->scales = NULL;
    return TRIT_OK;
}
