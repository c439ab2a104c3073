/*
 * program.c — OpenCL programs: built lazily per device from the sources embedded at build time,
 * with options chosen from the device's capabilities, and cached on disk as driver binaries.
 *
 * Why a disk cache: a driver compiles OpenCL C at run time, which costs 0.1-2 s per program
 * (PoCL runs all of LLVM); a process that runs one op would otherwise pay that every start.
 *
 * Cache entries live in <dir>/<program>-<key hash>.clbin, where <dir> is option
 * opencl.cache_dir / TRIT_OPENCL_CACHE_DIR, else $XDG_CACHE_HOME/trit, else ~/.cache/trit
 * ("off" or "" disables it). The key is the text "device name | device version | driver version
 * | platform | build options | source hash"; an entry stores the full key and a checksum of its
 * binary, so a stale entry (different key, hash collision included) or a corrupt one (truncated,
 * flipped bytes, or a binary the driver refuses) is detected, logged, and rebuilt from source.
 * Entries are written to a temporary file and renamed, so concurrent processes never see a
 * half-written one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ocl.h"

typedef struct ocl_kernel_entry {
    char name[64];
    cl_kernel kernel;
} ocl_kernel_entry;

struct ocl_program {
    ocl_program *next;
    char name[32];
    char *extra; /* caller's extra options ("" for none) */
    cl_program program;
    ocl_kernel_entry *kernels;
    size_t kernel_count;
};

static const char CACHE_MAGIC[8] = {'T', 'R', 'I', 'T', 'C', 'L', 'B', '1'};

/* FNV-1a, 64-bit: a checksum and key hash, not a defence against a hostile cache directory
 * (whoever can write there can also replace the library). */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_SEED 0xcbf29ce484222325ull

void ocl_device_build_options(ocl_device *dev)
{
    snprintf(dev->build_options, sizeof(dev->build_options),
             "-DTRIT_HAS_FP16=%d -DTRIT_HAS_SUBGROUPS=%d -DTRIT_SUBGROUP_SIZE=%u "
             "-DTRIT_HAS_INT_DOT=%d -DTRIT_HAS_FP64=%d -DTRIT_CORRECT_DIV=%d%s",
             dev->has_fp16, dev->has_subgroups, dev->subgroup_size, dev->has_int_dot, dev->has_fp64,
             dev->correct_div_sqrt,
             dev->correct_div_sqrt ? " -cl-fp32-correctly-rounded-divide-sqrt" : "");
}

static const char *find_source(const char *name)
{
    for (const ocl_source *s = ocl_sources; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s->text;
    return NULL;
}

/* The first line of the build log that reports an error (else its first non-empty line),
 * trimmed to fit `out`. */
static void first_error_line(const char *log, char *out, size_t size)
{
    out[0] = '\0';
    const char *pick = NULL;
    for (const char *line = log; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (!pick && len > 0)
            pick = line;
        const char *e = strstr(line, "error");
        if (e && (size_t)(e - line) < len) {
            pick = line;
            break;
        }
        line = end ? end + 1 : NULL;
    }
    if (!pick) {
        snprintf(out, size, "(the driver gave no build log)");
        return;
    }
    size_t len = strcspn(pick, "\n");
    if (len >= size)
        len = size - 1;
    memcpy(out, pick, len);
    out[len] = '\0';
}

static char *build_log(ocl_device *dev, cl_program prog)
{
    size_t n = 0;
    if (clGetProgramBuildInfo(prog, dev->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) != CL_SUCCESS)
        return NULL;
    char *log = malloc(n + 1);
    if (!log)
        return NULL;
    if (clGetProgramBuildInfo(prog, dev->id, CL_PROGRAM_BUILD_LOG, n, log, NULL) != CL_SUCCESS)
        n = 0;
    log[n] = '\0';
    return log;
}

/* --- disk cache ------------------------------------------------------------------------------ */

static int mkdir_p(const char *path)
{
    char tmp[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static void cache_key(const ocl_device *dev, const char *options, const char *source, char *key,
                      size_t size)
{
    uint64_t src_hash = fnv1a(FNV_SEED, source, strlen(source));
    snprintf(key, size, "%s | %s | %s | %s | %s | %016llx", dev->name, dev->version, dev->driver,
             dev->platform_name, options, (unsigned long long)src_hash);
}

static int cache_path(const ocl_device *dev, const char *program, const char *key, char *path,
                      size_t size)
{
    if (!dev->cache_dir || !dev->cache_dir[0])
        return 0;
    uint64_t h = fnv1a(FNV_SEED, key, strlen(key));
    int n =
        snprintf(path, size, "%s/%s-%016llx.clbin", dev->cache_dir, program, (unsigned long long)h);
    return n > 0 && (size_t)n < size;
}

/* Reads an entry; returns the binary (malloc'ed) when it is intact and has exactly `key`. */
static unsigned char *cache_read(const ocl_device *dev, const char *path, const char *key,
                                 size_t *out_bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *bin = NULL;
    char magic[8];
    uint64_t key_len = 0, bin_len = 0, sum = 0;
    const char *why = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, CACHE_MAGIC, 8) != 0 ||
        fread(&key_len, sizeof(key_len), 1, f) != 1 ||
        fread(&bin_len, sizeof(bin_len), 1, f) != 1 || fread(&sum, sizeof(sum), 1, f) != 1 ||
        key_len > 4096 || bin_len == 0 || bin_len > (1ull << 30)) {
        why = "bad header";
        goto done;
    }
    char stored_key[4097];
    if (fread(stored_key, 1, (size_t)key_len, f) != key_len) {
        why = "truncated key";
        goto done;
    }
    stored_key[key_len] = '\0';
    if (strcmp(stored_key, key) != 0) {
        why = "stale (built for another device, driver, option set or source)";
        goto done;
    }
    bin = malloc((size_t)bin_len);
    if (!bin)
        goto done;
    if (fread(bin, 1, (size_t)bin_len, f) != bin_len || fgetc(f) != EOF) {
        why = "wrong length";
        goto done;
    }
    if (fnv1a(FNV_SEED, bin, (size_t)bin_len) != sum) {
        why = "checksum mismatch";
        goto done;
    }
    *out_bytes = (size_t)bin_len;
    fclose(f);
    return bin;
done:
    fclose(f);
    free(bin);
    if (why)
        ocl_log(dev, TRIT_LOG_WARNING, "kernel cache entry %s is corrupt or stale (%s); rebuilding",
                path, why);
    return NULL;
}

static void cache_write(const ocl_device *dev, const char *path, const char *key,
                        const unsigned char *bin, size_t bytes)
{
    if (mkdir_p(dev->cache_dir) != 0) {
        ocl_log(dev, TRIT_LOG_WARNING, "cannot create kernel cache directory %s: %s",
                dev->cache_dir, strerror(errno));
        return;
    }
    char tmp[1300];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        ocl_log(dev, TRIT_LOG_WARNING, "cannot write kernel cache entry %s: %s", tmp,
                strerror(errno));
        return;
    }
    uint64_t key_len = strlen(key), bin_len = bytes, sum = fnv1a(FNV_SEED, bin, bytes);
    int ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&key_len, sizeof(key_len), 1, f) == 1 &&
             fwrite(&bin_len, sizeof(bin_len), 1, f) == 1 && fwrite(&sum, sizeof(sum), 1, f) == 1 &&
             fwrite(key, 1, (size_t)key_len, f) == key_len && fwrite(bin, 1, bytes, f) == bytes;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        ocl_log(dev, TRIT_LOG_WARNING, "cannot write kernel cache entry %s", path);
        remove(tmp);
        return;
    }
    ocl_log(dev, TRIT_LOG_DEBUG, "kernel cache: stored %s (%zu bytes)", path, bytes);
}

/* --- building -------------------------------------------------------------------------------- */

static trit_status build_failure(ocl_device *dev, cl_program prog, cl_int err, const char *name)
{
    char *log = build_log(dev, prog);
    char first[320];
    first_error_line(log ? log : "", first, sizeof(first));
    if (log && log[0])
        ocl_log(dev, TRIT_LOG_ERROR, "build log of OpenCL program %s:\n%s", name, log);
    free(log);
    ocl_set_error(dev, "building OpenCL program %s failed (%s): %s", name, ocl_error_name(err),
                  first);
    return TRIT_ERROR_BACKEND;
}

static trit_status program_build(ocl_device *dev, const char *name, const char *extra,
                                 cl_program *out)
{
    *out = NULL;
    const char *source = find_source(name);
    if (!source) {
        ocl_set_error(dev, "no embedded OpenCL program named %s", name);
        return TRIT_ERROR_INTERNAL;
    }
    char options[768];
    snprintf(options, sizeof(options), "%s%s%s", dev->build_options, extra[0] ? " " : "", extra);
    char key[2048], path[1200];
    cache_key(dev, options, source, key, sizeof(key));
    int cached = cache_path(dev, name, key, path, sizeof(path));

    cl_int err;
    if (cached) {
        size_t bytes = 0;
        unsigned char *bin = cache_read(dev, path, key, &bytes);
        if (bin) {
            const unsigned char *bins[1] = {bin};
            cl_int bin_status = CL_SUCCESS;
            cl_program prog = clCreateProgramWithBinary(dev->context, 1, &dev->id, &bytes, bins,
                                                        &bin_status, &err);
            free(bin);
            if (prog && err == CL_SUCCESS && bin_status == CL_SUCCESS &&
                clBuildProgram(prog, 1, &dev->id, options, NULL, NULL) == CL_SUCCESS) {
                ocl_log(dev, TRIT_LOG_DEBUG, "kernel cache: loaded %s from %s", name, path);
                *out = prog;
                return TRIT_OK;
            }
            if (prog)
                clReleaseProgram(prog);
            ocl_log(dev, TRIT_LOG_WARNING,
                    "kernel cache entry %s was refused by the driver; rebuilding", path);
        }
    }

    size_t len = strlen(source);
    cl_program prog = clCreateProgramWithSource(dev->context, 1, &source, &len, &err);
    if (!prog || err != CL_SUCCESS)
        return ocl_fail(dev, err, "creating OpenCL program %s", name);
    err = clBuildProgram(prog, 1, &dev->id, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        trit_status st = build_failure(dev, prog, err, name);
        clReleaseProgram(prog);
        return st;
    }
    ocl_log(dev, TRIT_LOG_DEBUG, "built OpenCL program %s with \"%s\"", name, options);
    if (cached) {
        size_t bytes = 0;
        if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof(bytes), &bytes, NULL) ==
                CL_SUCCESS &&
            bytes > 0) {
            unsigned char *bin = malloc(bytes);
            unsigned char *bins[1] = {bin};
            if (bin &&
                clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof(bins), bins, NULL) == CL_SUCCESS)
                cache_write(dev, path, key, bin, bytes);
            free(bin);
        }
    }
    *out = prog;
    return TRIT_OK;
}

trit_status ocl_kernel_get(ocl_device *dev, const char *program, const char *extra_options,
                           const char *kernel, cl_kernel *out_kernel)
{
    *out_kernel = NULL;
    const char *extra = extra_options ? extra_options : "";
    trit_status st = TRIT_OK;
    pthread_mutex_lock(&dev->lock);
    ocl_program *p = dev->programs;
    while (p && (strcmp(p->name, program) != 0 || strcmp(p->extra, extra) != 0))
        p = p->next;
    if (!p) {
        cl_program prog;
        st = program_build(dev, program, extra, &prog);
        if (st != TRIT_OK)
            goto out;
        p = calloc(1, sizeof(*p));
        char *extra_copy = malloc(strlen(extra) + 1);
        if (!p || !extra_copy) {
            free(p);
            free(extra_copy);
            clReleaseProgram(prog);
            ocl_set_error(dev, "out of host memory for an OpenCL program");
            st = TRIT_ERROR_OUT_OF_MEMORY;
            goto out;
        }
        snprintf(p->name, sizeof(p->name), "%s", program);
        memcpy(extra_copy, extra, strlen(extra) + 1);
        p->extra = extra_copy;
        p->program = prog;
        p->next = dev->programs;
        dev->programs = p;
    }
    for (size_t i = 0; i < p->kernel_count; i++)
        if (strcmp(p->kernels[i].name, kernel) == 0) {
            *out_kernel = p->kernels[i].kernel;
            goto out;
        }
    cl_int err;
    cl_kernel k = clCreateKernel(p->program, kernel, &err);
    if (!k || err != CL_SUCCESS) {
        st = ocl_fail(dev, err, "kernel %s of OpenCL program %s", kernel, program);
        if (err == CL_INVALID_KERNEL_NAME)
            st = TRIT_ERROR_INTERNAL;
        goto out;
    }
    ocl_kernel_entry *grown = realloc(p->kernels, (p->kernel_count + 1) * sizeof(*grown));
    if (!grown) {
        clReleaseKernel(k);
        ocl_set_error(dev, "out of host memory for an OpenCL kernel");
        st = TRIT_ERROR_OUT_OF_MEMORY;
        goto out;
    }
    p->kernels = grown;
    snprintf(grown[p->kernel_count].name, sizeof(grown[p->kernel_count].name), "%s", kernel);
    grown[p->kernel_count].kernel = k;
    p->kernel_count++;
    *out_kernel = k;
out:
    pthread_mutex_unlock(&dev->lock);
    return st;
}

void ocl_programs_release(ocl_device *dev)
{
    ocl_program *p = dev->programs;
    while (p) {
        ocl_program *next = p->next;
        for (size_t i = 0; i < p->kernel_count; i++)
            clReleaseKernel(p->kernels[i].kernel);
        free(p->kernels);
        clReleaseProgram(p->program);
        free(p->extra);
        free(p);
        p = next;
    }
    dev->programs = NULL;
}

trit_status ocl_enqueue(ocl_stream *s, const char *what, cl_kernel kernel, cl_uint dims,
                        const size_t *global, const size_t *local, const ocl_arg *args,
                        cl_uint nargs)
{
    ocl_device *dev = s->dev;
    cl_int err = CL_SUCCESS;
    cl_uint failed_arg = nargs;
    pthread_mutex_lock(&dev->enqueue_lock);
    for (cl_uint i = 0; i < nargs && err == CL_SUCCESS; i++)
        if ((err = clSetKernelArg(kernel, i, args[i].size, args[i].value)) != CL_SUCCESS)
            failed_arg = i;
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(s->queue, kernel, dims, NULL, global, local, 0, NULL, NULL);
    pthread_mutex_unlock(&dev->enqueue_lock);
    if (err == CL_SUCCESS)
        return TRIT_OK;
    if (failed_arg < nargs)
        return ocl_fail(dev, err, "%s: setting kernel argument %u", what, failed_arg);
    return ocl_fail(dev, err, "%s: enqueueing a kernel", what);
}

trit_status ocl_stream_scratch(ocl_stream *s, uint64_t bytes, cl_mem *out_mem)
{
    if (bytes == 0)
        bytes = 1;
    if (!s->scratch || s->scratch_bytes < bytes) {
        uint64_t want = bytes + bytes / 4; /* grow with room, not once per size */
        if (want > s->dev->max_alloc)
            want = bytes;
        if (want > s->dev->max_alloc) {
            ocl_set_error(s->dev,
                          "scratch of %llu bytes exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu bytes)",
                          (unsigned long long)bytes, (unsigned long long)s->dev->max_alloc);
            return TRIT_ERROR_OUT_OF_MEMORY;
        }
        cl_int err;
        cl_mem mem = clCreateBuffer(s->dev->context, CL_MEM_READ_WRITE, (size_t)want, NULL, &err);
        if (!mem || err != CL_SUCCESS)
            return ocl_fail(s->dev, err == CL_SUCCESS ? CL_MEM_OBJECT_ALLOCATION_FAILURE : err,
                            "cannot allocate %llu bytes of scratch", (unsigned long long)want);
        /* Released objects stay alive until the queued commands that use them complete. */
        if (s->scratch)
            clReleaseMemObject(s->scratch);
        s->scratch = mem;
        s->scratch_bytes = want;
    }
    *out_mem = s->scratch;
    return TRIT_OK;
}
