/*
 * pipeline.c — compute pipelines from the embedded SPIR-V, and the on-disk pipeline cache.
 *
 * A pipeline is identified by (shader name, specialization constants, bindings, push bytes,
 * required subgroup size); the first request builds it (through the device's VkPipelineCache)
 * and later ones find it in the device's list.
 *
 * The cache file, <cache_dir>/vulkan-<vendor>-<device>-<pipelineCacheUUID>.bin, is our header
 * (magic, format version, vendor/device IDs, driver version, the UUID, data size, FNV-1a 64
 * checksum of the data) followed by the driver's cache blob. On load, every header field, the
 * size, the checksum, and the driver's own header inside the blob (length, version, IDs, UUID)
 * must match, or the file is ignored with a warning in the log (a driver handed a corrupt blob may
 * crash). It is written at device close to a temporary file and renamed, so a crash never
 * leaves half a file. cache_dir: option vulkan.cache_dir / TRIT_VULKAN_CACHE_DIR, default
 * $XDG_CACHE_HOME/trit or $HOME/.cache/trit; "off" keeps the cache in memory only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vk.h"

#define CACHE_MAGIC "TRITVKPC"
enum { CACHE_FORMAT = 1 };

typedef struct cache_header {
    char magic[8];
    uint32_t format;
    uint32_t vendor_id;
    uint32_t device_id;
    uint32_t driver_version;
    uint8_t uuid[VK_UUID_SIZE];
    uint64_t data_bytes;
    uint64_t checksum;
} cache_header;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void make_header(const vk_device *dev, cache_header *h)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, CACHE_MAGIC, 8);
    h->format = CACHE_FORMAT;
    h->vendor_id = dev->props.vendorID;
    h->device_id = dev->props.deviceID;
    h->driver_version = dev->props.driverVersion;
    memcpy(h->uuid, dev->props.pipelineCacheUUID, VK_UUID_SIZE);
}

/* mkdir -p for the cache directory (best effort). */
static int make_dirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Returns the validated blob (malloc'ed) or NULL with `why` set. */
static void *read_cache(const vk_device *dev, const char *path, size_t *out_bytes, const char **why)
{
    *why = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL; /* no file yet: not an error */
    cache_header want, got;
    make_header(dev, &want);
    void *data = NULL;
    if (fread(&got, sizeof(got), 1, f) != 1) {
        *why = "shorter than its header";
    } else if (memcmp(got.magic, want.magic, 8) != 0 || got.format != want.format) {
        *why = "not a trit pipeline cache of this format";
    } else if (got.vendor_id != want.vendor_id || got.device_id != want.device_id ||
               got.driver_version != want.driver_version ||
               memcmp(got.uuid, want.uuid, VK_UUID_SIZE) != 0) {
        *why = "written for another device or driver";
    } else if (got.data_bytes < 16 + VK_UUID_SIZE || got.data_bytes > (256u << 20)) {
        *why = "its size is implausible";
    } else if (!(data = malloc((size_t)got.data_bytes))) {
        *why = "out of host memory";
    } else if (fread(data, 1, (size_t)got.data_bytes, f) != got.data_bytes) {
        *why = "truncated";
    } else if (fgetc(f) != EOF) {
        *why = "longer than its header says";
    } else if (fnv1a(data, (size_t)got.data_bytes) != got.checksum) {
        *why = "its checksum does not match (corrupt)";
    } else {
        /* The driver's own header: length, version (1 = ONE), vendor, device, UUID. */
        const uint8_t *d = data;
        uint32_t len, ver, vid, did;
        memcpy(&len, d, 4);
        memcpy(&ver, d + 4, 4);
        memcpy(&vid, d + 8, 4);
        memcpy(&did, d + 12, 4);
        if (len < 16 + VK_UUID_SIZE || len > got.data_bytes ||
            ver != VK_PIPELINE_CACHE_HEADER_VERSION_ONE || vid != want.vendor_id ||
            did != want.device_id || memcmp(d + 16, want.uuid, VK_UUID_SIZE) != 0)
            *why = "the driver's cache header inside does not match this device";
    }
    fclose(f);
    if (*why) {
        free(data);
        return NULL;
    }
    *out_bytes = (size_t)got.data_bytes;
    return data;
}

void vk_pipeline_cache_open(vk_device *dev)
{
    const char *dir = vk_option(dev->host, "cache_dir");
    char buf[1024];
    dev->cache_path[0] = '\0';
    if (dir && strcmp(dir, "off") == 0) {
        dir = NULL;
    } else if (!dir || !*dir) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg == '/')
            snprintf(buf, sizeof(buf), "%s/trit", xdg);
        else if (home && *home)
            snprintf(buf, sizeof(buf), "%s/.cache/trit", home);
        else
            buf[0] = '\0';
        dir = buf[0] ? buf : NULL;
    }
    if (dir) {
        char uuid[2 * VK_UUID_SIZE + 1];
        for (unsigned i = 0; i < VK_UUID_SIZE; i++)
            snprintf(uuid + 2 * i, 3, "%02x", dev->props.pipelineCacheUUID[i]);
        int n = snprintf(dev->cache_path, sizeof(dev->cache_path), "%s/vulkan-%04x-%04x-%s.bin",
                         dir, dev->props.vendorID, dev->props.deviceID, uuid);
        if (n < 0 || (size_t)n >= sizeof(dev->cache_path))
            dev->cache_path[0] = '\0';
    }

    size_t bytes = 0;
    void *data = NULL;
    if (dev->cache_path[0]) {
        const char *why;
        data = read_cache(dev, dev->cache_path, &bytes, &why);
        if (why)
            vk_log(dev, TRIT_LOG_WARNING, "vulkan: pipeline cache %s ignored: %s", dev->cache_path,
                   why);
    }
    VkPipelineCacheCreateInfo ci;
    memset(&ci, 0, sizeof(ci));
    ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO;
    ci.initialDataSize = data ? bytes : 0;
    ci.pInitialData = data;
    VkResult r = dev->fn->CreatePipelineCache(dev->dev, &ci, NULL, &dev->cache);
    if (r != VK_SUCCESS && data) {
        vk_log(dev, TRIT_LOG_WARNING, "vulkan: pipeline cache %s rejected by the driver (%s)",
               dev->cache_path, vk_result_name(r));
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        data = (free(data), NULL);
        r = dev->fn->CreatePipelineCache(dev->dev, &ci, NULL, &dev->cache);
    }
    if (r != VK_SUCCESS)
        dev->cache = VK_NULL_HANDLE; /* pipelines are then built without a cache */
    if (data && dev->cache) {
        dev->cache_loaded_bytes = bytes;
        vk_log(dev, TRIT_LOG_INFO, "vulkan: pipeline cache %s loaded (%llu bytes)", dev->cache_path,
               (unsigned long long)bytes);
    }
    free(data);
}

static void save_cache(vk_device *dev)
{
    if (!dev->cache || !dev->cache_path[0])
        return;
    size_t bytes = 0;
    if (dev->fn->GetPipelineCacheData(dev->dev, dev->cache, &bytes, NULL) != VK_SUCCESS ||
        bytes == 0)
        return;
    void *data = malloc(bytes);
    if (!data)
        return;
    if (dev->fn->GetPipelineCacheData(dev->dev, dev->cache, &bytes, data) != VK_SUCCESS) {
        free(data);
        return;
    }
    cache_header h;
    make_header(dev, &h);
    h.data_bytes = bytes;
    h.checksum = fnv1a(data, bytes);
    char dir[1024], tmp[1100];
    snprintf(dir, sizeof(dir), "%s", dev->cache_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", dev->cache_path, (long)getpid());
    int ok = make_dirs(dir) == 0;
    FILE *f = ok ? fopen(tmp, "wb") : NULL;
    ok = f && fwrite(&h, sizeof(h), 1, f) == 1 && fwrite(data, 1, bytes, f) == bytes;
    if (f && fclose(f) != 0)
        ok = 0;
    if (ok && rename(tmp, dev->cache_path) == 0) {
        vk_log(dev, TRIT_LOG_DEBUG, "vulkan: pipeline cache saved to %s (%llu bytes)",
               dev->cache_path, (unsigned long long)bytes);
    } else {
        if (f)
            remove(tmp);
        vk_log(dev, TRIT_LOG_WARNING, "vulkan: cannot write the pipeline cache %s",
               dev->cache_path);
    }
    free(data);
}

void vk_pipelines_destroy(vk_device *dev)
{
    save_cache(dev);
    vk_pipeline *p = dev->pipelines;
    while (p) {
        vk_pipeline *next = p->next;
        dev->fn->DestroyPipeline(dev->dev, p->pipeline, NULL);
        dev->fn->DestroyPipelineLayout(dev->dev, p->layout, NULL);
        dev->fn->DestroyDescriptorSetLayout(dev->dev, p->set_layout, NULL);
        free((char *)p->desc.shader);
        free(p);
        p = next;
    }
    dev->pipelines = NULL;
    if (dev->cache)
        dev->fn->DestroyPipelineCache(dev->dev, dev->cache, NULL);
    dev->cache = VK_NULL_HANDLE;
}

static int same_desc(const vk_pipeline_desc *a, const vk_pipeline_desc *b)
{
    return strcmp(a->shader, b->shader) == 0 && a->n_spec == b->n_spec &&
           a->n_bindings == b->n_bindings && a->push_bytes == b->push_bytes &&
           a->subgroup_size == b->subgroup_size && a->refuse_build == b->refuse_build &&
           memcmp(a->spec, b->spec, a->n_spec * sizeof(uint32_t)) == 0;
}

/* vk_check that also keeps the sentence in why[size] (when why is not NULL). */
static trit_status check_why(vk_device *dev, VkResult r, const char *what, char *why, size_t size)
{
    if (r != VK_SUCCESS && why)
        snprintf(why, size, "%s: %s", what, vk_result_name(r));
    return vk_check(dev, r, what);
}

static trit_status build(vk_device *dev, const vk_pipeline_desc *desc, vk_pipeline *p, char *why,
                         size_t why_size)
{
    const vk_fns *fn = dev->fn;
    size_t bytes;
    const uint32_t *code = vk_shader_spirv(desc->shader, &bytes);
    if (!code) {
        if (why)
            snprintf(why, why_size, "no embedded shader named \"%s\"", desc->shader);
        vk_set_error(dev, "no embedded shader named \"%s\"", desc->shader);
        return TRIT_ERROR_INTERNAL;
    }
    VkDescriptorSetLayoutBinding lb[VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < desc->n_bindings; i++) {
        memset(&lb[i], 0, sizeof(lb[i]));
        lb[i].binding = i;
        lb[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        lb[i].descriptorCount = 1;
        lb[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    VkDescriptorSetLayoutCreateInfo dl;
    memset(&dl, 0, sizeof(dl));
    dl.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    dl.bindingCount = desc->n_bindings;
    dl.pBindings = lb;
    trit_status st =
        check_why(dev, fn->CreateDescriptorSetLayout(dev->dev, &dl, NULL, &p->set_layout),
                  "vkCreateDescriptorSetLayout", why, why_size);
    if (st != TRIT_OK)
        return st;
    VkPushConstantRange pr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, desc->push_bytes};
    VkPipelineLayoutCreateInfo pl;
    memset(&pl, 0, sizeof(pl));
    pl.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    pl.setLayoutCount = 1;
    pl.pSetLayouts = &p->set_layout;
    pl.pushConstantRangeCount = desc->push_bytes ? 1 : 0;
    pl.pPushConstantRanges = &pr;
    st = check_why(dev, fn->CreatePipelineLayout(dev->dev, &pl, NULL, &p->layout),
                   "vkCreatePipelineLayout", why, why_size);
    if (st != TRIT_OK)
        return st;
    VkShaderModuleCreateInfo mi;
    memset(&mi, 0, sizeof(mi));
    mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    mi.codeSize = bytes;
    mi.pCode = code;
    VkShaderModule module;
    st = check_why(dev, fn->CreateShaderModule(dev->dev, &mi, NULL, &module),
                   "vkCreateShaderModule", why, why_size);
    if (st != TRIT_OK)
        return st;
    VkSpecializationMapEntry me[VK_MAX_SPEC];
    for (uint32_t i = 0; i < desc->n_spec; i++) {
        me[i].constantID = i;
        me[i].offset = i * 4;
        me[i].size = 4;
    }
    VkSpecializationInfo si = {desc->n_spec, me, desc->n_spec * 4u, desc->spec};
    VkPipelineShaderStageRequiredSubgroupSizeCreateInfo rs;
    memset(&rs, 0, sizeof(rs));
    rs.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO;
    rs.requiredSubgroupSize = desc->subgroup_size;
    VkComputePipelineCreateInfo ci;
    memset(&ci, 0, sizeof(ci));
    ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    ci.stage.module = module;
    ci.stage.pName = "main";
    ci.stage.pSpecializationInfo = desc->n_spec ? &si : NULL;
    if (desc->subgroup_size && dev->f.subgroups) {
        ci.stage.pNext = &rs;
        ci.stage.flags = VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT;
    }
    if (desc->refuse_build)
        ci.flags |= VK_PIPELINE_CREATE_FAIL_ON_PIPELINE_COMPILE_REQUIRED_BIT;
    ci.layout = p->layout;
    char what[160];
    snprintf(what, sizeof(what), "building pipeline %s", desc->shader);
    /* VK_PIPELINE_COMPILE_REQUIRED (refuse_build) is a success code without a pipeline: an
     * error here like any other. */
    st =
        check_why(dev, fn->CreateComputePipelines(dev->dev, dev->cache, 1, &ci, NULL, &p->pipeline),
                  what, why, why_size);
    fn->DestroyShaderModule(dev->dev, module, NULL);
    return st;
}

trit_status vk_pipeline_get(vk_device *dev, const vk_pipeline_desc *desc,
                            const vk_pipeline **out_pipeline)
{
    return vk_pipeline_get_why(dev, desc, out_pipeline, NULL, 0);
}

trit_status vk_pipeline_get_why(vk_device *dev, const vk_pipeline_desc *desc,
                                const vk_pipeline **out_pipeline, char *why, size_t why_size)
{
    if (desc->n_spec > VK_MAX_SPEC || desc->n_bindings > VK_MAX_BINDINGS ||
        desc->push_bytes > VK_MAX_PUSH || desc->push_bytes % 4) {
        if (why)
            snprintf(why, why_size, "pipeline %s: bad description", desc->shader);
        vk_set_error(dev, "pipeline %s: bad description", desc->shader);
        return TRIT_ERROR_INTERNAL;
    }
    pthread_mutex_lock(&dev->pipe_lock);
    for (vk_pipeline *p = dev->pipelines; p; p = p->next)
        if (same_desc(&p->desc, desc)) {
            pthread_mutex_unlock(&dev->pipe_lock);
            *out_pipeline = p;
            return TRIT_OK;
        }
    vk_pipeline *p = calloc(1, sizeof(*p));
    char *name = p ? strdup(desc->shader) : NULL;
    if (!name) {
        free(p);
        pthread_mutex_unlock(&dev->pipe_lock);
        vk_set_error(dev, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    p->desc = *desc;
    p->desc.shader = name;
    trit_status st = build(dev, desc, p, why, why_size);
    if (st != TRIT_OK) {
        if (p->pipeline)
            dev->fn->DestroyPipeline(dev->dev, p->pipeline, NULL);
        if (p->layout)
            dev->fn->DestroyPipelineLayout(dev->dev, p->layout, NULL);
        if (p->set_layout)
            dev->fn->DestroyDescriptorSetLayout(dev->dev, p->set_layout, NULL);
        free(name);
        free(p);
        pthread_mutex_unlock(&dev->pipe_lock);
        return st;
    }
    p->next = dev->pipelines;
    dev->pipelines = p;
    pthread_mutex_unlock(&dev->pipe_lock);
    *out_pipeline = p;
    return TRIT_OK;
}
