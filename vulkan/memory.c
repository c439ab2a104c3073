/*
 * memory.c — Vulkan buffers, streams and transfers.
 *
 * Buffers are device-local VkBuffers with their own allocation (trit buffers are few and large;
 * a sub-allocator would save little). A buffer above maxMemoryAllocationSize is refused with a
 * sentence; ternary matrices are split into parts by gemv.c so that none is refused.
 *
 * A stream records into one of two batches (command buffer + the staging memory, scratch
 * buffers, descriptor pools and pending downloads its commands use). Flushing submits the
 * current batch, signalling the stream's timeline semaphore, and switches to the other one,
 * first waiting for it to retire: so the host can record one batch while the device runs the
 * other. Uploads copy host memory into host-visible staging at enqueue (the caller's memory is
 * free at once) and record a copy; downloads record a copy into staging and land in the caller's
 * memory when the batch retires (at the latest at stream sync).
 *
 * Freed buffers (and other objects work may reference) are destroyed only once no recorded work
 * can still use them: each stream publishes the timeline value that completes everything recorded
 * on it so far (`pending`), and vk_device_defer keeps an object, with those values, until the
 * streams' timelines reach them. When every stream is idle, as after a sync, it costs one atomic
 * load per stream.
 */
#include <stdlib.h>
#include <string.h>

#include "vk.h"

enum {
    STAGING_MIN = 4u << 20,    /* smallest staging buffer */
    STAGING_PIECE = 16u << 20, /* transfers are split into pieces of at most this */
    BATCH_STAGING = 64u << 20, /* staging a batch may hold before it is submitted */
    SCRATCH_MIN = 1u << 20,    /* smallest scratch buffer */
    POOL_SETS = 128,           /* descriptor sets per pool */
    MAX_WAITS = 16,            /* event waits pending on a stream */
};

typedef struct staging {
    VkBuffer buffer;
    VkDeviceMemory memory;
    char *map;
    uint64_t size, used;
} staging;

typedef struct download {
    void *dst;
    const char *src;
    uint64_t bytes;
} download;

typedef struct batch {
    VkCommandBuffer cmd;
    int open;          /* begun, not yet submitted */
    uint32_t commands; /* recorded since begin */
    int has_download;
    uint64_t value; /* timeline value that marks it complete; 0: idle */
    int lent;       /* submitted early for staging space while an op was being recorded: the
                       next batch may use its scratch, so it is reused only after that one */
    staging *stg;
    uint32_t n_stg, cap_stg;
    uint64_t stg_used; /* bytes taken this round */
    vk_buffer **scratch;
    uint64_t *scratch_used;
    uint32_t n_scratch, cap_scratch;
    VkDescriptorPool *pools;
    uint32_t n_pools, cap_pools, cur_pool, sets_left;
    download *dl;
    uint32_t n_dl, cap_dl;
} batch;

struct vk_stream {
    vk_device *dev;
    VkCommandPool pool;
    VkSemaphore timeline;
    uint64_t submitted; /* last value signalled */
    batch b[2];
    int cur;
    VkSemaphore wait_sem[MAX_WAITS];
    uint64_t wait_val[MAX_WAITS];
    uint32_t n_wait;
    uint64_t seen_validation;
    trit_status error; /* first failure of asynchronous work, reported at sync */
    /* Read by other threads (atomic): the timeline value that completes all work recorded so far,
     * submitted or not, and the highest value known complete. */
    uint64_t pending, done;
    vk_stream *next_live; /* dev->streams list */
};

/* An object waiting for the timeline values its streams had when it was freed. */
typedef struct garbage_wait {
    vk_stream *s; /* NULL once satisfied (the stream was destroyed, after waiting for its work) */
    uint64_t value;
} garbage_wait;

struct vk_garbage {
    struct vk_garbage *next;
    void (*destroy)(vk_device *, void *);
    void *object;
    uint32_t n;
    garbage_wait w[];
};

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    uint32_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, (size_t)n * elem);
    if (!p)
        return 0;
    *arr = p;
    *cap = n;
    return 1;
}

static int find_memory(const vk_device *dev, uint32_t bits, VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < dev->mem_props.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (dev->mem_props.memoryTypes[i].propertyFlags & want) == want)
            return (int)i;
    return -1;
}

/* A buffer with its own memory: device-local (want = mem_device) or staging (mapped). */
static trit_status make_buffer(vk_device *dev, uint64_t bytes, VkMemoryPropertyFlags want,
                               VkMemoryPropertyFlags fallback, VkBuffer *out_buf,
                               VkDeviceMemory *out_mem)
{
    const vk_fns *fn = dev->fn;
    VkBufferCreateInfo bi;
    memset(&bi, 0, sizeof(bi));
    bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bi.size = bytes;
    bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
               VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkBuffer buf;
    trit_status st = vk_check(dev, fn->CreateBuffer(dev->dev, &bi, NULL, &buf), "vkCreateBuffer");
    if (st != TRIT_OK)
        return st;
    VkMemoryRequirements req;
    fn->GetBufferMemoryRequirements(dev->dev, buf, &req);
    int type = find_memory(dev, req.memoryTypeBits, want);
    if (type < 0)
        type = find_memory(dev, req.memoryTypeBits, fallback);
    if (type < 0) {
        fn->DestroyBuffer(dev->dev, buf, NULL);
        vk_set_error(dev, "no memory type for a buffer of %llu bytes", (unsigned long long)bytes);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    VkMemoryAllocateInfo ai;
    memset(&ai, 0, sizeof(ai));
    ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = (uint32_t)type;
    VkDeviceMemory mem;
    VkResult r = fn->AllocateMemory(dev->dev, &ai, NULL, &mem);
    if (r != VK_SUCCESS) {
        fn->DestroyBuffer(dev->dev, buf, NULL);
        vk_set_error(dev, "cannot allocate %llu bytes of device memory: %s",
                     (unsigned long long)bytes, vk_result_name(r));
        return r == VK_ERROR_DEVICE_LOST ? TRIT_ERROR_DEVICE_LOST : TRIT_ERROR_OUT_OF_MEMORY;
    }
    st = vk_check(dev, fn->BindBufferMemory(dev->dev, buf, mem, 0), "vkBindBufferMemory");
    if (st != TRIT_OK) {
        fn->DestroyBuffer(dev->dev, buf, NULL);
        fn->FreeMemory(dev->dev, mem, NULL);
        return st;
    }
    *out_buf = buf;
    *out_mem = mem;
    return TRIT_OK;
}

trit_status vk_buffer_create(vk_device *dev, uint64_t bytes, vk_buffer **out_buffer)
{
    vk_device_collect(dev, 0); /* give memory freed while work was pending back first */
    if (bytes == 0)
        bytes = 4;
    if (bytes > dev->max_alloc) {
        vk_set_error(dev, "buffer of %llu bytes exceeds maxMemoryAllocationSize (%llu bytes)",
                     (unsigned long long)bytes, (unsigned long long)dev->max_alloc);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    vk_buffer *b = calloc(1, sizeof(*b));
    if (!b) {
        vk_set_error(dev, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    /* Round to 4 bytes: fills and shader word access work on whole words. */
    const uint64_t size = (bytes + 3) & ~(uint64_t)3;
    trit_status st = make_buffer(dev, size, dev->mem_device, 0, &b->buffer, &b->memory);
    if (st != TRIT_OK) {
        free(b);
        return st;
    }
    b->bytes = bytes;
    *out_buffer = b;
    return TRIT_OK;
}

static void buffer_free_now(vk_device *dev, void *object)
{
    vk_buffer *b = object;
    dev->fn->DestroyBuffer(dev->dev, b->buffer, NULL);
    dev->fn->FreeMemory(dev->dev, b->memory, NULL);
    free(b);
}

void vk_buffer_destroy(vk_device *dev, vk_buffer *b)
{
    if (b)
        vk_device_defer(dev, buffer_free_now, b);
}

vk_binding vk_buffer_binding(const vk_buffer *b, uint64_t offset, uint64_t bytes)
{
    vk_binding r;
    r.buffer = b->buffer;
    r.offset = offset;
    r.range = bytes ? bytes : VK_WHOLE_SIZE;
    return r;
}

trit_status vk_tensor_binding(vk_device *dev, const trit_plugin_tensor *t, vk_binding *out,
                              uint32_t *out_first)
{
    const vk_buffer *b = t->buffer;
    const uint64_t es = trit_dtype_size(t->dtype);
    uint64_t last = 0; /* element index of the last element */
    for (uint32_t d = 0; d < t->rank; d++)
        last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->strides[d];
    const uint64_t begin = t->offset - t->offset % dev->offset_align;
    uint64_t end = t->offset + (last + 1) * es;
    end = (end + 3) & ~(uint64_t)3;
    const uint64_t cap = (b->bytes + 3) & ~(uint64_t)3;
    if (end > cap)
        end = cap;
    if ((t->offset - begin) % es) {
        vk_set_error(dev, "a tensor at byte offset %llu is not aligned to its %llu-byte elements",
                     (unsigned long long)t->offset, (unsigned long long)es);
        return TRIT_ERROR_UNSUPPORTED;
    }
    if (end - begin > dev->max_range) {
        vk_set_error(dev, "a tensor view of %llu bytes exceeds maxStorageBufferRange (%llu bytes)",
                     (unsigned long long)(end - begin), (unsigned long long)dev->max_range);
        return TRIT_ERROR_UNSUPPORTED;
    }
    out->buffer = b->buffer;
    out->offset = begin;
    out->range = end - begin;
    *out_first = (uint32_t)((t->offset - begin) / es);
    return TRIT_OK;
}

/* --- streams ---------------------------------------------------------------------------------- */

vk_device *vk_stream_device(const vk_stream *s)
{
    return s->dev;
}

static void fail(vk_stream *s, trit_status st)
{
    if (s->error == TRIT_OK)
        s->error = st;
}

/* --- deferred destruction -----------------------------------------------------------------------
 */

static void note_done(vk_stream *s, uint64_t value)
{
    uint64_t cur = __atomic_load_n(&s->done, __ATOMIC_RELAXED);
    while (cur < value && !__atomic_compare_exchange_n(&s->done, &cur, value, 1, __ATOMIC_RELEASE,
                                                       __ATOMIC_RELAXED)) {
    }
}

/* Whether the stream's timeline has reached `value` (vkGetSemaphoreCounterValue needs no external
 * synchronization, so any thread may ask). A lost device runs nothing more: that counts as done. */
static int reached(vk_stream *s, uint64_t value)
{
    if (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) >= value)
        return 1;
    uint64_t v = 0;
    if (s->dev->fn->GetSemaphoreCounterValue(s->dev->dev, s->timeline, &v) != VK_SUCCESS)
        return 1;
    note_done(s, v);
    return v >= value;
}

void vk_device_defer(vk_device *dev, void (*destroy)(vk_device *, void *), void *object)
{
    pthread_mutex_lock(&dev->life_lock);
    uint32_t busy = 0;
    for (vk_stream *s = dev->streams; s; s = s->next_live)
        busy += !reached(s, __atomic_load_n(&s->pending, __ATOMIC_ACQUIRE));
    if (busy == 0) {
        pthread_mutex_unlock(&dev->life_lock);
        destroy(dev, object);
        return;
    }
    struct vk_garbage *g = malloc(sizeof(*g) + busy * sizeof(garbage_wait));
    if (!g) {
        pthread_mutex_unlock(&dev->life_lock);
        /* Cannot track it: leaking is the only choice that cannot corrupt memory. */
        vk_log(dev, TRIT_LOG_ERROR,
               "vulkan: out of host memory; an object freed while work was "
               "pending is leaked");
        return;
    }
    g->destroy = destroy;
    g->object = object;
    g->n = 0;
    for (vk_stream *s = dev->streams; s && g->n < busy; s = s->next_live) {
        const uint64_t p = __atomic_load_n(&s->pending, __ATOMIC_ACQUIRE);
        if (!reached(s, p)) {
            g->w[g->n].s = s;
            g->w[g->n].value = p;
            g->n++;
        }
    }
    g->next = dev->garbage;
    __atomic_store_n(&dev->garbage, g, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&dev->life_lock);
}

void vk_device_collect(vk_device *dev, int all)
{
    if (!__atomic_load_n(&dev->garbage, __ATOMIC_ACQUIRE))
        return;
    struct vk_garbage *ready = NULL;
    pthread_mutex_lock(&dev->life_lock);
    struct vk_garbage **pp = &dev->garbage;
    while (*pp) {
        struct vk_garbage *g = *pp;
        int done = 1;
        for (uint32_t i = 0; i < g->n && done && !all; i++)
            done = !g->w[i].s || reached(g->w[i].s, g->w[i].value);
        if (done) {
            __atomic_store_n(pp, g->next, __ATOMIC_RELEASE);
            g->next = ready;
            ready = g;
        } else {
            pp = &g->next;
        }
    }
    pthread_mutex_unlock(&dev->life_lock);
    while (ready) {
        struct vk_garbage *g = ready;
        ready = g->next;
        g->destroy(dev, g->object);
        free(g);
    }
}

/* Waits for a batch, lands its downloads and makes its resources reusable. */
static trit_status retire(vk_stream *s, batch *b)
{
    vk_device *dev = s->dev;
    trit_status st = TRIT_OK;
    if (b->value) {
        VkSemaphoreWaitInfo wi;
        memset(&wi, 0, sizeof(wi));
        wi.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
        wi.semaphoreCount = 1;
        wi.pSemaphores = &s->timeline;
        wi.pValues = &b->value;
        st = vk_check(dev, dev->fn->WaitSemaphores(dev->dev, &wi, UINT64_MAX), "stream wait");
        if (st == TRIT_OK) {
            note_done(s, b->value);
            for (uint32_t i = 0; i < b->n_dl; i++)
                memcpy(b->dl[i].dst, b->dl[i].src, (size_t)b->dl[i].bytes);
        }
        b->value = 0;
    }
    b->lent = 0;
    b->n_dl = 0;
    for (uint32_t i = 0; i < b->n_stg; i++)
        b->stg[i].used = 0;
    b->stg_used = 0;
    for (uint32_t i = 0; i < b->n_scratch; i++)
        b->scratch_used[i] = 0;
    for (uint32_t i = 0; i < b->n_pools; i++)
        dev->fn->ResetDescriptorPool(dev->dev, b->pools[i], 0);
    b->cur_pool = 0;
    b->sets_left = b->n_pools ? POOL_SETS : 0;
    b->commands = 0;
    b->has_download = 0;
    return st;
}

/* The batch being recorded, begun. */
static trit_status open_batch(vk_stream *s, batch **out)
{
    batch *b = &s->b[s->cur];
    if (!b->open) {
        VkCommandBufferBeginInfo bi;
        memset(&bi, 0, sizeof(bi));
        bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
        bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
        trit_status st =
            vk_check(s->dev, s->dev->fn->BeginCommandBuffer(b->cmd, &bi), "vkBeginCommandBuffer");
        if (st != TRIT_OK)
            return st;
        b->open = 1;
        /* What is recorded from now on completes with the next submit. */
        __atomic_store_n(&s->pending, s->submitted + 1, __ATOMIC_RELEASE);
    }
    *out = b;
    return TRIT_OK;
}

static void barrier(vk_stream *s, batch *b, VkPipelineStageFlags dst_stage,
                    VkAccessFlags dst_access)
{
    if (b->commands++ == 0)
        return; /* submission order already orders it after earlier batches */
    VkMemoryBarrier mb;
    memset(&mb, 0, sizeof(mb));
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = dst_access;
    s->dev->fn->CmdPipelineBarrier(
        b->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, dst_stage, 0,
        1, &mb, 0, NULL, 0, NULL);
}

static trit_status submit(vk_stream *s, VkSemaphore extra_sem, uint64_t extra_value)
{
    vk_device *dev = s->dev;
    batch *b = &s->b[s->cur];
    trit_status st;
    if (!b->open && !extra_sem && s->n_wait == 0)
        return TRIT_OK; /* nothing to submit */
    if (!b->open && (st = open_batch(s, &b)) != TRIT_OK)
        return st;
    if (b->has_download) {
        /* Make the copies into staging visible to the host reads at retire. */
        VkMemoryBarrier mb;
        memset(&mb, 0, sizeof(mb));
        mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
        mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
        mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
        dev->fn->CmdPipelineBarrier(b->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                    VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    }
    b->open = 0;
    st = vk_check(dev, dev->fn->EndCommandBuffer(b->cmd), "vkEndCommandBuffer");
    if (st != TRIT_OK)
        return st;
    const uint64_t value = s->submitted + 1;
    VkSemaphore sig[2] = {s->timeline, extra_sem};
    uint64_t sig_val[2] = {value, extra_value};
    VkPipelineStageFlags wait_stage[MAX_WAITS];
    for (uint32_t i = 0; i < s->n_wait; i++)
        wait_stage[i] = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    VkTimelineSemaphoreSubmitInfo ti;
    memset(&ti, 0, sizeof(ti));
    ti.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
    ti.waitSemaphoreValueCount = s->n_wait;
    ti.pWaitSemaphoreValues = s->wait_val;
    ti.signalSemaphoreValueCount = extra_sem ? 2 : 1;
    ti.pSignalSemaphoreValues = sig_val;
    VkSubmitInfo si;
    memset(&si, 0, sizeof(si));
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.pNext = &ti;
    si.waitSemaphoreCount = s->n_wait;
    si.pWaitSemaphores = s->wait_sem;
    si.pWaitDstStageMask = wait_stage;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &b->cmd;
    si.signalSemaphoreCount = extra_sem ? 2 : 1;
    si.pSignalSemaphores = sig;
    pthread_mutex_lock(&dev->queue_lock);
    VkResult r = dev->fn->QueueSubmit(dev->queue, 1, &si, VK_NULL_HANDLE);
    pthread_mutex_unlock(&dev->queue_lock);
    if ((st = vk_check(dev, r, "vkQueueSubmit")) != TRIT_OK)
        return st;
    s->n_wait = 0;
    s->submitted = value;
    b->value = value;
    /* Switch to the other batch; it must be complete before it is recorded again, and when it
     * lent scratch to the batch just submitted, so must that one be. */
    s->cur ^= 1;
    batch *next = &s->b[s->cur];
    const int lent = next->lent;
    st = retire(s, next);
    if (st == TRIT_OK && lent) {
        VkSemaphoreWaitInfo wi;
        memset(&wi, 0, sizeof(wi));
        wi.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
        wi.semaphoreCount = 1;
        wi.pSemaphores = &s->timeline;
        wi.pValues = &value;
        st = vk_check(dev, dev->fn->WaitSemaphores(dev->dev, &wi, UINT64_MAX), "stream wait");
    }
    if (st == TRIT_OK)
        st = vk_check(dev, dev->fn->ResetCommandBuffer(next->cmd, 0), "vkResetCommandBuffer");
    vk_device_collect(dev, 0);
    return st;
}

static trit_status check_validation(vk_stream *s)
{
    char first[256];
    uint64_t n = vk_validation_messages(s->dev, first, sizeof(first));
    if (n == s->seen_validation)
        return TRIT_OK;
    vk_set_error(s->dev, "the validation layer reported %llu message(s); the first: %s",
                 (unsigned long long)(n - s->seen_validation), first);
    s->seen_validation = n;
    return TRIT_ERROR_BACKEND;
}

trit_status vk_stream_create(vk_device *dev, vk_stream **out_stream)
{
    vk_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        vk_set_error(dev, "out of host memory for a stream");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    s->dev = dev;
    const vk_fns *fn = dev->fn;
    VkCommandPoolCreateInfo pci;
    memset(&pci, 0, sizeof(pci));
    pci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pci.queueFamilyIndex = dev->queue_family;
    trit_status st =
        vk_check(dev, fn->CreateCommandPool(dev->dev, &pci, NULL, &s->pool), "vkCreateCommandPool");
    if (st == TRIT_OK) {
        VkCommandBufferAllocateInfo ai;
        memset(&ai, 0, sizeof(ai));
        ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
        ai.commandPool = s->pool;
        ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
        ai.commandBufferCount = 1;
        for (int i = 0; i < 2 && st == TRIT_OK; i++)
            st = vk_check(dev, fn->AllocateCommandBuffers(dev->dev, &ai, &s->b[i].cmd),
                          "vkAllocateCommandBuffers");
    }
    if (st == TRIT_OK) {
        VkSemaphoreTypeCreateInfo tci;
        memset(&tci, 0, sizeof(tci));
        tci.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
        tci.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
        VkSemaphoreCreateInfo sci;
        memset(&sci, 0, sizeof(sci));
        sci.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
        sci.pNext = &tci;
        st = vk_check(dev, fn->CreateSemaphore(dev->dev, &sci, NULL, &s->timeline),
                      "vkCreateSemaphore");
    }
    s->seen_validation = vk_validation_messages(dev, NULL, 0);
    if (st != TRIT_OK) {
        vk_stream_destroy(s);
        return st;
    }
    pthread_mutex_lock(&dev->life_lock);
    s->next_live = dev->streams;
    dev->streams = s;
    pthread_mutex_unlock(&dev->life_lock);
    *out_stream = s;
    return TRIT_OK;
}

void vk_stream_destroy(vk_stream *s)
{
    if (!s)
        return;
    vk_device *dev = s->dev;
    const vk_fns *fn = dev->fn;
    if (s->timeline) {
        submit(s, VK_NULL_HANDLE, 0);
        for (int i = 0; i < 2; i++)
            retire(s, &s->b[i]);
    }
    /* Its work is complete: nothing deferred waits for it any more. */
    pthread_mutex_lock(&dev->life_lock);
    for (vk_stream **pp = &dev->streams; *pp; pp = &(*pp)->next_live)
        if (*pp == s) {
            *pp = s->next_live;
            break;
        }
    for (struct vk_garbage *g = dev->garbage; g; g = g->next)
        for (uint32_t i = 0; i < g->n; i++)
            if (g->w[i].s == s)
                g->w[i].s = NULL;
    pthread_mutex_unlock(&dev->life_lock);
    for (int i = 0; i < 2; i++) {
        batch *b = &s->b[i];
        for (uint32_t j = 0; j < b->n_stg; j++) {
            fn->DestroyBuffer(dev->dev, b->stg[j].buffer, NULL);
            fn->FreeMemory(dev->dev, b->stg[j].memory, NULL);
        }
        for (uint32_t j = 0; j < b->n_scratch; j++)
            buffer_free_now(dev, b->scratch[j]);
        for (uint32_t j = 0; j < b->n_pools; j++)
            fn->DestroyDescriptorPool(dev->dev, b->pools[j], NULL);
        free(b->stg);
        free(b->scratch);
        free(b->scratch_used);
        free(b->pools);
        free(b->dl);
    }
    if (s->timeline)
        fn->DestroySemaphore(dev->dev, s->timeline, NULL);
    if (s->pool)
        fn->DestroyCommandPool(dev->dev, s->pool, NULL); /* frees the command buffers */
    free(s);
    vk_device_collect(dev, 0);
}

trit_status vk_stream_flush(vk_stream *s)
{
    trit_status st = submit(s, VK_NULL_HANDLE, 0);
    if (st != TRIT_OK)
        fail(s, st);
    return st;
}

trit_status vk_stream_sync(vk_stream *s)
{
    trit_status st = submit(s, VK_NULL_HANDLE, 0);
    for (int i = 0; i < 2; i++) {
        trit_status r = retire(s, &s->b[i]);
        if (st == TRIT_OK)
            st = r;
    }
    if (st == TRIT_OK && s->error != TRIT_OK) {
        st = s->error;
        vk_set_error(s->dev, "an earlier enqueued operation on this stream failed (%s)",
                     trit_status_string(st));
    }
    s->error = TRIT_OK;
    if (st == TRIT_OK)
        st = check_validation(s);
    vk_device_collect(s->dev, 0);
    return st;
}

trit_status vk_stream_signal(vk_stream *s, VkSemaphore sem, uint64_t value)
{
    trit_status st = submit(s, sem, value);
    if (st == TRIT_OK)
        st = check_validation(s);
    return st;
}

trit_status vk_stream_wait(vk_stream *s, VkSemaphore sem, uint64_t value)
{
    for (uint32_t i = 0; i < s->n_wait; i++)
        if (s->wait_sem[i] == sem) {
            if (s->wait_val[i] < value)
                s->wait_val[i] = value;
            return TRIT_OK;
        }
    if (s->n_wait == MAX_WAITS) {
        trit_status st = submit(s, VK_NULL_HANDLE, 0); /* takes the waits along */
        if (st != TRIT_OK)
            return st;
    }
    /* A batch already being recorded must not run before the wait: submit it first. */
    if (s->b[s->cur].open) {
        trit_status st = submit(s, VK_NULL_HANDLE, 0);
        if (st != TRIT_OK)
            return st;
    }
    s->wait_sem[s->n_wait] = sem;
    s->wait_val[s->n_wait] = value;
    s->n_wait++;
    /* The next submit waits for `sem`: the event must outlive it (see plugin_event_destroy). */
    __atomic_store_n(&s->pending, s->submitted + 1, __ATOMIC_RELEASE);
    return TRIT_OK;
}

/* Staging space of `bytes` in the recording batch, at an offset that is a multiple of `align`
 * (a power of two, at least 16). */
static trit_status take_staging(vk_stream *s, uint64_t bytes, uint64_t align, batch **out_b,
                                staging **out_stg, uint64_t *out_off)
{
    vk_device *dev = s->dev;
    trit_status st;
    batch *b = &s->b[s->cur];
    if (b->stg_used + bytes > BATCH_STAGING && b->open) {
        /* Scratch taken for an op being recorded may be used by the next batch. */
        b->lent = 1;
        if ((st = submit(s, VK_NULL_HANDLE, 0)) != TRIT_OK)
            return st;
        b = &s->b[s->cur];
    }
    if ((st = open_batch(s, &b)) != TRIT_OK)
        return st;
    const uint64_t need = (bytes + 15) & ~(uint64_t)15;
    for (uint32_t i = 0; i < b->n_stg; i++) {
        const uint64_t off = (b->stg[i].used + align - 1) & ~(align - 1);
        if (off <= b->stg[i].size && b->stg[i].size - off >= need) {
            *out_b = b;
            *out_stg = &b->stg[i];
            *out_off = off;
            b->stg_used += off + need - b->stg[i].used;
            b->stg[i].used = off + need;
            return TRIT_OK;
        }
    }
    if (!grow((void **)&b->stg, &b->cap_stg, b->n_stg + 1, sizeof(staging))) {
        vk_set_error(dev, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    staging *g = &b->stg[b->n_stg];
    memset(g, 0, sizeof(*g));
    g->size = need > STAGING_MIN ? need : STAGING_MIN;
    st = make_buffer(dev, g->size, dev->mem_staging,
                     VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                     &g->buffer, &g->memory);
    if (st != TRIT_OK)
        return st;
    void *map;
    st = vk_check(dev, dev->fn->MapMemory(dev->dev, g->memory, 0, VK_WHOLE_SIZE, 0, &map),
                  "vkMapMemory");
    if (st != TRIT_OK) {
        dev->fn->DestroyBuffer(dev->dev, g->buffer, NULL);
        dev->fn->FreeMemory(dev->dev, g->memory, NULL);
        return st;
    }
    g->map = map;
    b->n_stg++;
    g->used = need;
    b->stg_used += need;
    *out_b = b;
    *out_stg = g;
    *out_off = 0;
    return TRIT_OK;
}

trit_status vk_stream_upload(vk_stream *s, vk_buffer *dst, uint64_t offset, const void *src,
                             uint64_t bytes)
{
    const char *p = src;
    while (bytes) {
        const uint64_t piece = bytes < STAGING_PIECE ? bytes : STAGING_PIECE;
        batch *b;
        staging *g;
        uint64_t off;
        trit_status st = take_staging(s, piece, 16, &b, &g, &off);
        if (st != TRIT_OK)
            return st;
        memcpy(g->map + off, p, (size_t)piece);
        barrier(s, b, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
        VkBufferCopy c = {off, offset, piece};
        s->dev->fn->CmdCopyBuffer(b->cmd, g->buffer, dst->buffer, 1, &c);
        p += piece;
        offset += piece;
        bytes -= piece;
    }
    return TRIT_OK;
}

trit_status vk_stream_download(vk_stream *s, vk_buffer *src, uint64_t offset, void *dst,
                               uint64_t bytes)
{
    char *p = dst;
    while (bytes) {
        const uint64_t piece = bytes < STAGING_PIECE ? bytes : STAGING_PIECE;
        batch *b;
        staging *g;
        uint64_t off;
        trit_status st = take_staging(s, piece, 16, &b, &g, &off);
        if (st != TRIT_OK)
            return st;
        if (!grow((void **)&b->dl, &b->cap_dl, b->n_dl + 1, sizeof(download))) {
            vk_set_error(s->dev, "out of host memory");
            return TRIT_ERROR_OUT_OF_MEMORY;
        }
        barrier(s, b, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
        VkBufferCopy c = {offset, off, piece};
        s->dev->fn->CmdCopyBuffer(b->cmd, src->buffer, g->buffer, 1, &c);
        b->dl[b->n_dl].dst = p;
        b->dl[b->n_dl].src = g->map + off;
        b->dl[b->n_dl].bytes = piece;
        b->n_dl++;
        b->has_download = 1;
        p += piece;
        offset += piece;
        bytes -= piece;
    }
    return TRIT_OK;
}

trit_status vk_stream_copy(vk_stream *s, vk_buffer *src, uint64_t src_offset, vk_buffer *dst,
                           uint64_t dst_offset, uint64_t bytes)
{
    batch *b;
    trit_status st = open_batch(s, &b);
    if (st != TRIT_OK)
        return st;
    barrier(s, b, VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    VkBufferCopy c = {src_offset, dst_offset, bytes};
    s->dev->fn->CmdCopyBuffer(b->cmd, src->buffer, dst->buffer, 1, &c);
    return TRIT_OK;
}

trit_status vk_stream_fill(vk_stream *s, vk_buffer *dst, uint64_t offset, uint8_t value,
                           uint64_t bytes)
{
    /* vkCmdFillBuffer writes whole aligned words: fill the aligned middle with it, and the
     * unaligned ends (and small fills) through staging uploads. */
    uint8_t head[8];
    memset(head, value, sizeof(head));
    const uint64_t a0 = (offset + 3) & ~(uint64_t)3;
    const uint64_t end = offset + bytes;
    const uint64_t a1 = end & ~(uint64_t)3;
    if (a1 <= a0 || bytes < 16) {
        while (bytes) {
            const uint64_t n = bytes < sizeof(head) ? bytes : sizeof(head);
            trit_status st = vk_stream_upload(s, dst, offset, head, n);
            if (st != TRIT_OK)
                return st;
            offset += n;
            bytes -= n;
        }
        return TRIT_OK;
    }
    trit_status st;
    if (a0 > offset && (st = vk_stream_upload(s, dst, offset, head, a0 - offset)) != TRIT_OK)
        return st;
    if (end > a1 && (st = vk_stream_upload(s, dst, a1, head, end - a1)) != TRIT_OK)
        return st;
    batch *b;
    if ((st = open_batch(s, &b)) != TRIT_OK)
        return st;
    barrier(s, b, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    const uint32_t word = 0x01010101u * value;
    s->dev->fn->CmdFillBuffer(b->cmd, dst->buffer, a0, a1 - a0, word);
    return TRIT_OK;
}

trit_status vk_stream_scratch(vk_stream *s, uint64_t bytes, vk_binding *out)
{
    vk_device *dev = s->dev;
    batch *b;
    trit_status st = open_batch(s, &b);
    if (st != TRIT_OK)
        return st;
    const uint64_t align = dev->offset_align > 16 ? dev->offset_align : 16;
    const uint64_t need = (bytes + align - 1) & ~(align - 1);
    if (need > dev->max_range) {
        vk_set_error(dev, "scratch of %llu bytes exceeds maxStorageBufferRange",
                     (unsigned long long)bytes);
        return TRIT_ERROR_UNSUPPORTED;
    }
    for (uint32_t i = 0; i < b->n_scratch; i++)
        if (b->scratch[i]->bytes - b->scratch_used[i] >= need) {
            *out = vk_buffer_binding(b->scratch[i], b->scratch_used[i], need);
            b->scratch_used[i] += need;
            return TRIT_OK;
        }
    uint32_t cap = b->cap_scratch;
    if (!grow((void **)&b->scratch, &cap, b->n_scratch + 1, sizeof(vk_buffer *))) {
        vk_set_error(dev, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    uint32_t cap2 = b->cap_scratch;
    if (!grow((void **)&b->scratch_used, &cap2, b->n_scratch + 1, sizeof(uint64_t))) {
        vk_set_error(dev, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    b->cap_scratch = cap < cap2 ? cap : cap2;
    vk_buffer *nb;
    st = vk_buffer_create(dev, need > SCRATCH_MIN ? need : SCRATCH_MIN, &nb);
    if (st != TRIT_OK)
        return st;
    b->scratch[b->n_scratch] = nb;
    b->scratch_used[b->n_scratch] = need;
    b->n_scratch++;
    *out = vk_buffer_binding(nb, 0, need);
    return TRIT_OK;
}

trit_status vk_stream_upload_scratch(vk_stream *s, const void *src, uint64_t bytes, vk_binding *out)
{
    vk_device *dev = s->dev;
    const uint64_t need = (bytes + 15) & ~(uint64_t)15;
    if (need > dev->max_range) {
        vk_set_error(dev, "a per-call table of %llu bytes exceeds maxStorageBufferRange",
                     (unsigned long long)bytes);
        return TRIT_ERROR_UNSUPPORTED;
    }
    /* Staging is host-visible and coherent, and the batch's submit makes host writes visible to
     * the device: the dispatch reads the table in place, with no copy to record. Taken from the
     * batch the dispatch will be recorded in (nothing submits between this and the dispatch), so
     * a staging flush cannot separate the table from its reader. */
    const uint64_t align = dev->offset_align > 16 ? dev->offset_align : 16;
    batch *b;
    staging *g;
    uint64_t off;
    trit_status st = take_staging(s, need, align, &b, &g, &off);
    if (st != TRIT_OK)
        return st;
    memcpy(g->map + off, src, (size_t)bytes);
    memset(g->map + off + bytes, 0, (size_t)(need - bytes));
    out->buffer = g->buffer;
    out->offset = off;
    out->range = need;
    return TRIT_OK;
}

/* --- dispatch --------------------------------------------------------------------------------- */

static trit_status alloc_set(vk_stream *s, batch *b, VkDescriptorSetLayout layout,
                             VkDescriptorSet *out)
{
    vk_device *dev = s->dev;
    if (b->sets_left == 0) {
        if (b->cur_pool + 1 < b->n_pools && b->n_pools) {
            b->cur_pool++;
        } else {
            if (!grow((void **)&b->pools, &b->cap_pools, b->n_pools + 1,
                      sizeof(VkDescriptorPool))) {
                vk_set_error(dev, "out of host memory");
                return TRIT_ERROR_OUT_OF_MEMORY;
            }
            VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       POOL_SETS * VK_MAX_BINDINGS};
            VkDescriptorPoolCreateInfo pci;
            memset(&pci, 0, sizeof(pci));
            pci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
            pci.maxSets = POOL_SETS;
            pci.poolSizeCount = 1;
            pci.pPoolSizes = &ps;
            trit_status st = vk_check(
                dev, dev->fn->CreateDescriptorPool(dev->dev, &pci, NULL, &b->pools[b->n_pools]),
                "vkCreateDescriptorPool");
            if (st != TRIT_OK)
                return st;
            b->cur_pool = b->n_pools++;
        }
        b->sets_left = POOL_SETS;
    }
    VkDescriptorSetAllocateInfo ai;
    memset(&ai, 0, sizeof(ai));
    ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    ai.descriptorPool = b->pools[b->cur_pool];
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &layout;
    trit_status st =
        vk_check(dev, dev->fn->AllocateDescriptorSets(dev->dev, &ai, out), "descriptor set");
    if (st == TRIT_OK)
        b->sets_left--;
    return st;
}

trit_status vk_dispatch(vk_stream *s, const vk_pipeline *pipe, const vk_binding *bindings,
                        const void *push, uint32_t gx, uint32_t gy, uint32_t gz)
{
    vk_device *dev = s->dev;
    if (gx == 0 || gy == 0 || gz == 0)
        return TRIT_OK;
    if (gx > dev->max_wg_count[0] || gy > dev->max_wg_count[1] || gz > dev->max_wg_count[2]) {
        vk_set_error(dev, "%s: %u x %u x %u workgroups exceed the device's limit",
                     pipe->desc.shader, gx, gy, gz);
        return TRIT_ERROR_UNSUPPORTED;
    }
    batch *b;
    trit_status st = open_batch(s, &b);
    if (st != TRIT_OK)
        return st;
    VkDescriptorSet set;
    if ((st = alloc_set(s, b, pipe->set_layout, &set)) != TRIT_OK)
        return st;
    VkDescriptorBufferInfo info[VK_MAX_BINDINGS];
    VkWriteDescriptorSet w[VK_MAX_BINDINGS];
    const uint32_t n = pipe->desc.n_bindings;
    for (uint32_t i = 0; i < n; i++) {
        info[i].buffer = bindings[i].buffer;
        info[i].offset = bindings[i].offset;
        info[i].range = bindings[i].range;
        memset(&w[i], 0, sizeof(w[i]));
        w[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
        w[i].dstSet = set;
        w[i].dstBinding = i;
        w[i].descriptorCount = 1;
        w[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        w[i].pBufferInfo = &info[i];
    }
    dev->fn->UpdateDescriptorSets(dev->dev, n, w, 0, NULL);
    barrier(s, b, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    dev->fn->CmdBindPipeline(b->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe->pipeline);
    dev->fn->CmdBindDescriptorSets(b->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe->layout, 0, 1, &set,
                                   0, NULL);
    if (pipe->desc.push_bytes)
        dev->fn->CmdPushConstants(b->cmd, pipe->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                                  pipe->desc.push_bytes, push);
    dev->fn->CmdDispatch(b->cmd, gx, gy, gz);
    return TRIT_OK;
}
