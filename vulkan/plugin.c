/*
 * plugin.c — the Vulkan plugin's entry point: ABI query, start-up (the loader is dlopen'ed, so a
 * machine without Vulkan skips the plugin with a reason), a headless instance (no surface or
 * window extension), one trit device per physical device with a compute queue, feature
 * selection, streams and events, and the op slots.
 *
 * Options (trit_context_options.backend_options "vulkan.<key>=<value>", or TRIT_VULKAN_<KEY>):
 *   validation=on|off      enable VK_LAYER_KHRONOS_validation and a debug messenger; every
 *                          validation error or warning is logged and makes the next stream sync
 *                          (or blocking call) fail with TRIT_ERROR_BACKEND. Init fails when the
 *                          layer is not installed.
 *   fp16, int8, subgroups, int_dot, coop_matrix, fp64 = off   force a device feature off (its
 *                          shaders fall back to the variants that do without)
 *   coop_matrix=emulate[-16x8|-16x16][-f16acc][-reject]   testing: run attention_coop.comp's
 *                          tiling and softmax on a device without cooperative matrices, its
 *                          fragment products as scalar loops, as if the device offered that one
 *                          shape (default 16x16, f32 accumulators). -reject: the driver is asked
 *                          to refuse that pipeline (VK_PIPELINE_CREATE_FAIL_ON_PIPELINE_COMPILE_
 *                          REQUIRED_BIT; needs Vulkan 1.3's pipelineCreationCacheControl), and
 *                          the refusal is handled as for the real kernel: a warning, the path off
 *                          for the device, attention.comp instead
 *   max_buffer_range=<bytes>  lower maxStorageBufferRange (>= 65536), to test splitting
 *   cache_dir=<dir>        where the pipeline cache is kept (default $XDG_CACHE_HOME/trit, else
 *                          $HOME/.cache/trit); "off" disables it
 *
 * Sanitizers: under AddressSanitizer the loader and lavapipe are pinned in memory
 * (RTLD_NODELETE), so LeakSanitizer can name them in its reports at exit (tests/sanitizer/
 * lsan.supp suppresses the driver's own process-lifetime allocations by library name); without
 * the pin, allocations made by an unloaded lavapipe show as <unknown module>.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vk.h"

#if defined(__SANITIZE_ADDRESS__)
#define VK_PIN_LIBRARIES 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VK_PIN_LIBRARIES 1
#endif
#endif

struct vk_plugin {
    const trit_plugin_host *host;
    void *loader;
    vk_fns fn;
    VkInstance instance;
    uint32_t api_version;
    VkDebugUtilsMessengerEXT messenger;
    int validation;
    pthread_mutex_t msg_lock;
    uint64_t messages;
    char first_message[512];
    uint32_t n_phys;
    VkPhysicalDevice *phys;
};

typedef struct vk_event {
    vk_device *dev;
    VkSemaphore sem;
    uint64_t value; /* the value the last record signals; 0: never recorded */
} vk_event;

/* --- errors, logging, options ---------------------------------------------------------------- */

void vk_set_error(const vk_device *dev, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (dev && dev->host && dev->host->set_error)
        dev->host->set_error(dev->host->user, msg);
}

static void host_log(const trit_plugin_host *host, trit_log_level level, const char *msg)
{
    if (host && host->log)
        host->log(host->user, level, msg);
}

void vk_log(const vk_device *dev, trit_log_level level, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    host_log(dev ? dev->host : NULL, level, msg);
}

const char *vk_result_name(VkResult r)
{
    switch (r) {
#define R(x)                                                                                       \
    case x: return #x;
        R(VK_SUCCESS)
        R(VK_NOT_READY)
        R(VK_TIMEOUT)
        R(VK_INCOMPLETE)
        R(VK_ERROR_OUT_OF_HOST_MEMORY)
        R(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        R(VK_ERROR_INITIALIZATION_FAILED)
        R(VK_ERROR_DEVICE_LOST)
        R(VK_ERROR_MEMORY_MAP_FAILED)
        R(VK_ERROR_LAYER_NOT_PRESENT)
        R(VK_ERROR_EXTENSION_NOT_PRESENT)
        R(VK_ERROR_FEATURE_NOT_PRESENT)
        R(VK_ERROR_INCOMPATIBLE_DRIVER)
        R(VK_ERROR_TOO_MANY_OBJECTS)
        R(VK_ERROR_FORMAT_NOT_SUPPORTED)
        R(VK_ERROR_FRAGMENTED_POOL)
        R(VK_ERROR_OUT_OF_POOL_MEMORY)
        R(VK_ERROR_INVALID_SHADER_NV)
        R(VK_PIPELINE_COMPILE_REQUIRED)
#undef R
    default: return "VK_ERROR_UNKNOWN";
    }
}

trit_status vk_status(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return TRIT_OK;
    case VK_ERROR_DEVICE_LOST: return TRIT_ERROR_DEVICE_LOST;
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
    case VK_ERROR_FRAGMENTED_POOL:
    case VK_ERROR_TOO_MANY_OBJECTS: return TRIT_ERROR_OUT_OF_MEMORY;
    default: return TRIT_ERROR_BACKEND;
    }
}

trit_status vk_check(const vk_device *dev, VkResult r, const char *what)
{
    if (r == VK_SUCCESS)
        return TRIT_OK;
    if (r == VK_ERROR_DEVICE_LOST)
        vk_set_error(dev, "%s: the device was lost (VK_ERROR_DEVICE_LOST)", what);
    else
        vk_set_error(dev, "%s: %s", what, vk_result_name(r));
    return vk_status(r);
}

const char *vk_option(const trit_plugin_host *host, const char *key)
{
    return host && host->get_option ? host->get_option(host->user, key) : NULL;
}

/* 1 for on/true/1/yes, 0 for off/false/0/no, -1 if unset, -2 if unrecognised. */
static int option_flag(const trit_plugin_host *host, const char *key)
{
    const char *v = vk_option(host, key);
    if (!v || !*v)
        return -1;
    if (!strcasecmp(v, "on") || !strcasecmp(v, "1") || !strcasecmp(v, "true") ||
        !strcasecmp(v, "yes"))
        return 1;
    if (!strcasecmp(v, "off") || !strcasecmp(v, "0") || !strcasecmp(v, "false") ||
        !strcasecmp(v, "no"))
        return 0;
    return -2;
}

static void plugin_error(const trit_plugin_host *host, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (host->set_error)
        host->set_error(host->user, msg);
}

uint64_t vk_validation_messages(const vk_device *dev, char *first, size_t size)
{
    vk_plugin *p = dev->plugin;
    if (!p->validation)
        return 0;
    pthread_mutex_lock(&p->msg_lock);
    uint64_t n = p->messages;
    if (first && size)
        snprintf(first, size, "%s", p->first_message);
    pthread_mutex_unlock(&p->msg_lock);
    return n;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                     VkDebugUtilsMessageTypeFlagsEXT type,
                                                     const VkDebugUtilsMessengerCallbackDataEXT *d,
                                                     void *user)
{
    vk_plugin *p = user;
    const char *msg = d && d->pMessage ? d->pMessage : "(no message)";
    const int counted = (type & (VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                                 VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT)) != 0;
    const int error = (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) != 0;
    char line[1024];
    snprintf(line, sizeof(line), "vulkan validation %s: %s", error ? "error" : "warning", msg);
    if (counted) {
        pthread_mutex_lock(&p->msg_lock);
        if (p->messages++ == 0)
            snprintf(p->first_message, sizeof(p->first_message), "%s", msg);
        pthread_mutex_unlock(&p->msg_lock);
        host_log(p->host, error ? TRIT_LOG_ERROR : TRIT_LOG_WARNING, line);
    } else {
        /* Loader and driver chatter (general type): worth seeing, not a bug of ours. */
        host_log(p->host, TRIT_LOG_DEBUG, line);
    }
    return VK_FALSE;
}

/* --- start-up -------------------------------------------------------------------------------- */

static int has_extension(const VkExtensionProperties *e, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(e[i].extensionName, name) == 0)
            return 1;
    return 0;
}

static trit_status load_loader(vk_plugin *p)
{
    const char *names[] = {"libvulkan.so.1", "libvulkan.so"};
    int flags = RTLD_NOW | RTLD_LOCAL;
#ifdef VK_PIN_LIBRARIES
    flags |= RTLD_NODELETE;
#endif
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !p->loader; i++)
        p->loader = dlopen(names[i], flags);
    if (!p->loader) {
        plugin_error(p->host, "no Vulkan loader (libvulkan.so.1): %s", dlerror());
        return TRIT_ERROR_NOT_FOUND;
    }
    void *sym = dlsym(p->loader, "vkGetInstanceProcAddr");
    if (!sym) {
        plugin_error(p->host, "the Vulkan loader has no vkGetInstanceProcAddr");
        return TRIT_ERROR_NOT_FOUND;
    }
    memcpy(&p->fn.GetInstanceProcAddr, &sym, sizeof(sym));
#define LOAD_GLOBAL(name)                                                                          \
    p->fn.name = (PFN_vk##name)p->fn.GetInstanceProcAddr(VK_NULL_HANDLE, "vk" #name);
    VK_GLOBAL_FUNCS(LOAD_GLOBAL)
#undef LOAD_GLOBAL
    if (!p->fn.CreateInstance || !p->fn.EnumerateInstanceExtensionProperties ||
        !p->fn.EnumerateInstanceLayerProperties) {
        plugin_error(p->host, "the Vulkan loader lacks vkCreateInstance");
        return TRIT_ERROR_NOT_FOUND;
    }
    return TRIT_OK;
}

static int layer_present(vk_plugin *p, const char *name)
{
    uint32_t n = 0;
    if (p->fn.EnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkLayerProperties *l = calloc(n, sizeof(*l));
    int found = 0;
    if (l && p->fn.EnumerateInstanceLayerProperties(&n, l) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(l[i].layerName, name) == 0;
    free(l);
    return found;
}

static trit_status create_instance(vk_plugin *p)
{
    uint32_t version = VK_API_VERSION_1_0;
    if (p->fn.EnumerateInstanceVersion)
        p->fn.EnumerateInstanceVersion(&version);
    if (version < VK_API_VERSION_1_2) {
        plugin_error(p->host, "the Vulkan loader speaks %u.%u; trit needs Vulkan 1.2",
                     VK_API_VERSION_MAJOR(version), VK_API_VERSION_MINOR(version));
        return TRIT_ERROR_UNSUPPORTED;
    }
    p->api_version = version >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : VK_API_VERSION_1_2;

    const char *layers[1];
    uint32_t n_layers = 0;
    const char *exts[2];
    uint32_t n_exts = 0;
    int flag = option_flag(p->host, "validation");
    if (flag == -2) {
        plugin_error(p->host, "option validation=\"%s\" is not on or off",
                     vk_option(p->host, "validation"));
        return TRIT_ERROR_INVALID_ARGUMENT;
    }
    p->validation = flag == 1;

    uint32_t n_avail = 0;
    VkExtensionProperties *avail = NULL;
    if (p->fn.EnumerateInstanceExtensionProperties(NULL, &n_avail, NULL) == VK_SUCCESS && n_avail) {
        avail = calloc(n_avail, sizeof(*avail));
        if (!avail ||
            p->fn.EnumerateInstanceExtensionProperties(NULL, &n_avail, avail) != VK_SUCCESS)
            n_avail = 0;
    }
    /* Lets the loader list portability (MoltenVK-style) drivers too. */
    VkInstanceCreateFlags flags = 0;
    if (has_extension(avail, n_avail, "VK_KHR_portability_enumeration")) {
        exts[n_exts++] = "VK_KHR_portability_enumeration";
        flags |= 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
    }
    free(avail);
    if (p->validation) {
        if (!layer_present(p, "VK_LAYER_KHRONOS_validation")) {
            plugin_error(p->host, "validation=on but VK_LAYER_KHRONOS_validation is not "
                                  "installed (Debian: vulkan-validationlayers)");
            return TRIT_ERROR_NOT_FOUND;
        }
        layers[n_layers++] = "VK_LAYER_KHRONOS_validation";
        exts[n_exts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    }

    VkDebugUtilsMessengerCreateInfoEXT dbg;
    memset(&dbg, 0, sizeof(dbg));
    dbg.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
    dbg.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                          VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    dbg.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                      VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                      VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    dbg.pfnUserCallback = debug_callback;
    dbg.pUserData = p;

    VkApplicationInfo app;
    memset(&app, 0, sizeof(app));
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "trit";
    app.pEngineName = "trit";
    app.engineVersion =
        VK_MAKE_API_VERSION(0, TRIT_VERSION_MAJOR, TRIT_VERSION_MINOR, TRIT_VERSION_PATCH);
    app.apiVersion = p->api_version;
    VkInstanceCreateInfo ci;
    memset(&ci, 0, sizeof(ci));
    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ci.pNext = p->validation ? &dbg : NULL; /* also covers instance creation itself */
    ci.flags = flags;
    ci.pApplicationInfo = &app;
    ci.enabledLayerCount = n_layers;
    ci.ppEnabledLayerNames = layers;
    ci.enabledExtensionCount = n_exts;
    ci.ppEnabledExtensionNames = exts;
    VkResult r = p->fn.CreateInstance(&ci, NULL, &p->instance);
    if (r != VK_SUCCESS) {
        plugin_error(p->host, "vkCreateInstance failed: %s%s", vk_result_name(r),
                     r == VK_ERROR_INCOMPATIBLE_DRIVER ? " (no Vulkan driver installed)" : "");
        p->instance = VK_NULL_HANDLE;
        return vk_status(r) == TRIT_ERROR_BACKEND ? TRIT_ERROR_NOT_FOUND : vk_status(r);
    }
#define LOAD_INSTANCE(name)                                                                        \
    p->fn.name = (PFN_vk##name)p->fn.GetInstanceProcAddr(p->instance, "vk" #name);
    VK_INSTANCE_FUNCS(LOAD_INSTANCE)
#undef LOAD_INSTANCE
    if (!p->fn.DestroyInstance || !p->fn.EnumeratePhysicalDevices || !p->fn.CreateDevice ||
        !p->fn.GetPhysicalDeviceFeatures2 || !p->fn.GetDeviceProcAddr) {
        plugin_error(p->host, "the Vulkan loader lacks Vulkan 1.1 instance functions");
        return TRIT_ERROR_UNSUPPORTED;
    }
    if (p->validation) {
        p->fn.CreateDebugUtilsMessengerEXT =
            (PFN_vkCreateDebugUtilsMessengerEXT)p->fn.GetInstanceProcAddr(
                p->instance, "vkCreateDebugUtilsMessengerEXT");
        p->fn.DestroyDebugUtilsMessengerEXT =
            (PFN_vkDestroyDebugUtilsMessengerEXT)p->fn.GetInstanceProcAddr(
                p->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (!p->fn.CreateDebugUtilsMessengerEXT || !p->fn.DestroyDebugUtilsMessengerEXT ||
            p->fn.CreateDebugUtilsMessengerEXT(p->instance, &dbg, NULL, &p->messenger) !=
                VK_SUCCESS) {
            plugin_error(p->host, "validation=on but the debug messenger cannot be created");
            return TRIT_ERROR_BACKEND;
        }
        host_log(p->host, TRIT_LOG_INFO, "vulkan: VK_LAYER_KHRONOS_validation enabled");
    }
    /* NULL unless some driver offers VK_NV_cooperative_matrix (checked per device). */
    p->fn.GetPhysicalDeviceCooperativeMatrixPropertiesNV =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)p->fn.GetInstanceProcAddr(
            p->instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
#ifdef VK_PIN_LIBRARIES
    /* The loader opened its drivers while creating the instance: pin lavapipe (see the top). */
    dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
#endif
    return TRIT_OK;
}

static int usable_device(vk_plugin *p, VkPhysicalDevice pd)
{
    VkPhysicalDeviceProperties props;
    p->fn.GetPhysicalDeviceProperties(pd, &props);
    if (props.apiVersion < VK_API_VERSION_1_2)
        return 0;
    VkPhysicalDeviceTimelineSemaphoreFeatures tl;
    memset(&tl, 0, sizeof(tl));
    tl.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES;
    VkPhysicalDeviceFeatures2 f2;
    memset(&f2, 0, sizeof(f2));
    f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    f2.pNext = &tl;
    p->fn.GetPhysicalDeviceFeatures2(pd, &f2);
    if (!tl.timelineSemaphore)
        return 0;
    uint32_t nq = 0;
    p->fn.GetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties *q = calloc(nq ? nq : 1, sizeof(*q));
    int ok = 0;
    if (q) {
        p->fn.GetPhysicalDeviceQueueFamilyProperties(pd, &nq, q);
        for (uint32_t i = 0; i < nq && !ok; i++)
            ok = (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
    }
    free(q);
    return ok;
}

static void plugin_shutdown(void *plugin);

static trit_status plugin_init(const trit_plugin_host *host, void **out_plugin)
{
    vk_plugin *p = calloc(1, sizeof(*p));
    if (!p) {
        if (host->set_error)
            host->set_error(host->user, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    p->host = host;
    pthread_mutex_init(&p->msg_lock, NULL);
    trit_status st = load_loader(p);
    if (st == TRIT_OK)
        st = create_instance(p);
    uint32_t n = 0;
    VkPhysicalDevice *all = NULL;
    if (st == TRIT_OK) {
        VkResult r = p->fn.EnumeratePhysicalDevices(p->instance, &n, NULL);
        if (r == VK_SUCCESS && n > 0) {
            all = calloc(n, sizeof(*all));
            p->phys = calloc(n, sizeof(*p->phys));
            if (!all || !p->phys)
                r = VK_ERROR_OUT_OF_HOST_MEMORY;
            else
                r = p->fn.EnumeratePhysicalDevices(p->instance, &n, all);
        }
        if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
            plugin_error(host, "vkEnumeratePhysicalDevices failed: %s", vk_result_name(r));
            st = vk_status(r);
        }
    }
    if (st == TRIT_OK) {
        for (uint32_t i = 0; i < n; i++)
            if (usable_device(p, all[i]))
                p->phys[p->n_phys++] = all[i];
        if (p->n_phys == 0) {
            plugin_error(host,
                         n ? "no Vulkan 1.2 device with a compute queue and timeline "
                             "semaphores (%u devices found)"
                           : "no Vulkan device found%.0u",
                         n);
            st = TRIT_ERROR_NOT_FOUND;
        }
    }
    free(all);
    if (st != TRIT_OK) {
        plugin_shutdown(p);
        return st;
    }
    *out_plugin = p;
    return TRIT_OK;
}

static void plugin_shutdown(void *plugin)
{
    vk_plugin *p = plugin;
    if (!p)
        return;
    if (p->messenger)
        p->fn.DestroyDebugUtilsMessengerEXT(p->instance, p->messenger, NULL);
    if (p->instance)
        p->fn.DestroyInstance(p->instance, NULL);
    /* The loader stays mapped under the sanitizers (RTLD_NODELETE makes dlclose a no-op). */
    if (p->loader)
        dlclose(p->loader);
    pthread_mutex_destroy(&p->msg_lock);
    free(p->phys);
    free(p);
}

static uint32_t plugin_device_count(void *plugin)
{
    return ((vk_plugin *)plugin)->n_phys;
}

/* --- device open: features, queue, limits ----------------------------------------------------- */

typedef struct feature_chain {
    VkPhysicalDeviceFeatures2 f2;
    VkPhysicalDevice16BitStorageFeatures s16;
    VkPhysicalDevice8BitStorageFeatures s8;
    VkPhysicalDeviceShaderFloat16Int8Features f16i8;
    VkPhysicalDeviceTimelineSemaphoreFeatures tl;
    VkPhysicalDeviceSubgroupSizeControlFeatures sgc;
    VkPhysicalDeviceShaderIntegerDotProductFeatures dot;
    VkPhysicalDeviceVulkanMemoryModelFeatures mm;
    VkPhysicalDeviceCooperativeMatrixFeaturesNV coop;
    VkPhysicalDevicePipelineCreationCacheControlFeatures pcc;
} feature_chain;

/* Links the structs the device knows (sgc/dot/coop/pcc only when present). */
static void chain_init(feature_chain *c, int sgc, int dot, int coop, int pcc)
{
    memset(c, 0, sizeof(*c));
    c->f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    c->s16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
    c->s8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES;
    c->f16i8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    c->tl.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES;
    c->sgc.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES;
    c->dot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
    c->mm.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES;
    c->coop.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
    c->pcc.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_CREATION_CACHE_CONTROL_FEATURES;
    void **next = &c->f2.pNext;
#define LINK(s)                                                                                    \
    do {                                                                                           \
        *next = &(s);                                                                              \
        next = &(s).pNext;                                                                         \
    } while (0)
    LINK(c->s16);
    LINK(c->s8);
    LINK(c->f16i8);
    LINK(c->tl);
    LINK(c->mm); /* core in 1.2, which every usable device speaks */
    if (sgc)
        LINK(c->sgc);
    if (dot)
        LINK(c->dot);
    if (coop)
        LINK(c->coop);
    if (pcc)
        LINK(c->pcc);
#undef LINK
}

static int feature_allowed(vk_device *dev, const char *key)
{
    int f = option_flag(dev->host, key);
    if (f == -2)
        vk_log(dev, TRIT_LOG_WARNING, "vulkan: option %s=\"%s\" is not on or off; ignored", key,
               vk_option(dev->host, key));
    return f != 0;
}

/* Gathers what vk_coop_decide (coop_matrix.h) needs and records its decision in dev->coop /
 * dev->coop_reason. Called after fp16 and subgroups are chosen. `listed`: the extension is in the
 * device's list (its properties are queried only then). */
static trit_status choose_coop(vk_plugin *p, vk_device *dev, int feature, int compute_stage,
                               int memory_model, int listed)
{
    vk_coop_device in;
    memset(&in, 0, sizeof(in));
    const char *opt = vk_option(dev->host, "coop_matrix");
    const int flag = option_flag(dev->host, "coop_matrix");
    /* emulate[-16x8][-f16acc][-reject]: a made-up device list with that one configuration. */
    VkCooperativeMatrixPropertiesNV fake;
    memset(&fake, 0, sizeof(fake));
    fake.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    if (opt && strncmp(opt, "emulate", 7) == 0) {
        const char *rest = opt + 7;
        int n = 16, acc16 = 0;
        while (*rest) {
            if (strncmp(rest, "-16x8", 5) == 0 && (rest[5] == '\0' || rest[5] == '-'))
                n = 8, rest += 5;
            else if (strncmp(rest, "-16x16", 6) == 0)
                n = 16, rest += 6;
            else if (strncmp(rest, "-f16acc", 7) == 0)
                acc16 = 1, rest += 7;
            else if (strncmp(rest, "-reject", 7) == 0)
                dev->coop_reject = 1, rest += 7;
            else
                break;
        }
        if (*rest) {
            vk_set_error(dev,
                         "option coop_matrix=\"%s\" is not on, off or "
                         "emulate[-16x8|-16x16][-f16acc][-reject]",
                         opt);
            return TRIT_ERROR_INVALID_ARGUMENT;
        }
        in.mode = VK_COOP_EMULATE;
        fake.MSize = 16;
        fake.NSize = (uint32_t)n;
        fake.KSize = 16;
        fake.AType = fake.BType = VK_COMPONENT_TYPE_FLOAT16_NV;
        fake.CType = fake.DType =
            acc16 ? VK_COMPONENT_TYPE_FLOAT16_NV : VK_COMPONENT_TYPE_FLOAT32_NV;
        fake.scope = VK_SCOPE_SUBGROUP_NV;
        in.props = &fake;
        in.n_props = 1;
    } else if (flag == -2) {
        vk_log(dev, TRIT_LOG_WARNING,
               "vulkan: option coop_matrix=\"%s\" is not on, off or "
               "emulate; ignored",
               opt);
    } else if (flag == 0) {
        in.mode = VK_COOP_OFF;
    }
    in.extension = listed;
    in.feature = feature;
    in.compute_stage = compute_stage;
    in.memory_model = memory_model;
    in.fp16 = dev->f.fp16;
    in.subgroup_size_control = dev->f.subgroups;
    in.subgroup_size = dev->subgroup_size;
    in.properties = p->fn.GetPhysicalDeviceCooperativeMatrixPropertiesNV != NULL;

    VkCooperativeMatrixPropertiesNV *list = NULL;
    if (in.mode == VK_COOP_AUTO && listed && in.properties) {
        uint32_t n = 0;
        VkResult r = p->fn.GetPhysicalDeviceCooperativeMatrixPropertiesNV(dev->phys, &n, NULL);
        if (r == VK_SUCCESS && n > 0 && (list = calloc(n, sizeof(*list))) != NULL) {
            for (uint32_t i = 0; i < n; i++)
                list[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
            r = p->fn.GetPhysicalDeviceCooperativeMatrixPropertiesNV(dev->phys, &n, list);
            if (r == VK_SUCCESS || r == VK_INCOMPLETE) {
                in.props = list;
                in.n_props = n;
            }
        }
        for (uint32_t i = 0; i < in.n_props; i++)
            vk_log(dev, TRIT_LOG_DEBUG,
                   "vulkan: device %u: cooperative matrix %ux%ux%u A %d B %d C %d D %d scope %d",
                   dev->index, list[i].MSize, list[i].NSize, list[i].KSize, list[i].AType,
                   list[i].BType, list[i].CType, list[i].DType, list[i].scope);
    }
    const char *why = vk_coop_decide(&in, &dev->coop);
    snprintf(dev->coop_reason, sizeof(dev->coop_reason), "%s", why ? why : "");
    free(list);
    return TRIT_OK;
}

static trit_status open_device(vk_plugin *p, vk_device *dev)
{
    const vk_fns *fn = &p->fn;
    VkPhysicalDevice pd = dev->phys;
    fn->GetPhysicalDeviceProperties(pd, &dev->props);
    fn->GetPhysicalDeviceMemoryProperties(pd, &dev->mem_props);
    snprintf(dev->name, sizeof(dev->name), "%.127s", dev->props.deviceName);
    const uint32_t api =
        dev->props.apiVersion < p->api_version ? dev->props.apiVersion : p->api_version;

    uint32_t n_ext = 0;
    fn->EnumerateDeviceExtensionProperties(pd, NULL, &n_ext, NULL);
    VkExtensionProperties *ext = calloc(n_ext ? n_ext : 1, sizeof(*ext));
    if (!ext) {
        vk_set_error(dev, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    fn->EnumerateDeviceExtensionProperties(pd, NULL, &n_ext, ext);
    const int core13 = api >= VK_API_VERSION_1_3;
    const int has_sgc = core13 || has_extension(ext, n_ext, "VK_EXT_subgroup_size_control");
    const int has_dot = core13 || has_extension(ext, n_ext, "VK_KHR_shader_integer_dot_product");
    const int has_coop = has_extension(ext, n_ext, "VK_NV_cooperative_matrix");
    free(ext);

    /* Properties: subgroups, size control, integer dot product, driver. */
    VkPhysicalDeviceSubgroupProperties sg;
    memset(&sg, 0, sizeof(sg));
    sg.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
    VkPhysicalDeviceSubgroupSizeControlProperties sgcp;
    memset(&sgcp, 0, sizeof(sgcp));
    sgcp.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES;
    VkPhysicalDeviceShaderIntegerDotProductProperties dotp;
    memset(&dotp, 0, sizeof(dotp));
    dotp.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES;
    VkPhysicalDeviceDriverProperties drv;
    memset(&drv, 0, sizeof(drv));
    drv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
    VkPhysicalDeviceMaintenance3Properties m3;
    memset(&m3, 0, sizeof(m3));
    m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
    VkPhysicalDeviceProperties2 p2;
    memset(&p2, 0, sizeof(p2));
    p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
    p2.pNext = &sg;
    sg.pNext = &drv;
    drv.pNext = &m3;
    void **tail = &m3.pNext;
    if (has_sgc) {
        *tail = &sgcp;
        tail = &sgcp.pNext;
    }
    VkPhysicalDeviceCooperativeMatrixPropertiesNV coopp;
    memset(&coopp, 0, sizeof(coopp));
    coopp.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    if (has_dot) {
        *tail = &dotp;
        tail = &dotp.pNext;
    }
    if (has_coop)
        *tail = &coopp;
    fn->GetPhysicalDeviceProperties2(pd, &p2);
    snprintf(dev->driver, sizeof(dev->driver), "%.30s %.30s", drv.driverName, drv.driverInfo);

    feature_chain have;
    chain_init(&have, has_sgc, has_dot, has_coop, core13);
    fn->GetPhysicalDeviceFeatures2(pd, &have.f2);

    /* Choose. */
    vk_features *f = &dev->f;
    f->fp16 = have.f16i8.shaderFloat16 && have.s16.storageBuffer16BitAccess &&
              feature_allowed(dev, "fp16");
    f->int8 =
        have.f16i8.shaderInt8 && have.s8.storageBuffer8BitAccess && feature_allowed(dev, "int8");
    f->fp64 = have.f2.features.shaderFloat64 && feature_allowed(dev, "fp64");
    const VkSubgroupFeatureFlags need_ops = VK_SUBGROUP_FEATURE_BASIC_BIT |
                                            VK_SUBGROUP_FEATURE_ARITHMETIC_BIT |
                                            VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
    f->subgroups = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                   (sg.supportedOperations & need_ops) == need_ops && sg.subgroupSize >= 4 &&
                   has_sgc && have.sgc.subgroupSizeControl && have.sgc.computeFullSubgroups &&
                   (sgcp.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                   feature_allowed(dev, "subgroups");
    f->int_dot =
        has_dot && have.dot.shaderIntegerDotProduct && f->int8 && feature_allowed(dev, "int_dot");
    f->int_dot_fast = f->int_dot && dotp.integerDotProduct4x8BitPackedSignedAccelerated;
    dev->subgroup_size = f->subgroups ? sg.subgroupSize : 0;
    trit_status cst =
        choose_coop(p, dev, has_coop && have.coop.cooperativeMatrix,
                    (coopp.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0,
                    have.mm.vulkanMemoryModel, has_coop);
    if (cst != TRIT_OK)
        return cst;
    if (dev->coop_reject && !have.pcc.pipelineCreationCacheControl) {
        vk_set_error(dev, "option coop_matrix=...-reject needs Vulkan 1.3's "
                          "pipelineCreationCacheControl, which this device lacks");
        return TRIT_ERROR_UNSUPPORTED;
    }
    f->coop_matrix = dev->coop.m != 0 && !dev->coop.emulated;

    dev->min_subgroup = f->subgroups ? sgcp.minSubgroupSize : 0;
    dev->max_subgroup = f->subgroups ? sgcp.maxSubgroupSize : 0;
    const VkPhysicalDeviceLimits *lim = &dev->props.limits;
    dev->max_range = lim->maxStorageBufferRange;
    dev->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : (1ull << 30);
    dev->offset_align =
        lim->minStorageBufferOffsetAlignment ? lim->minStorageBufferOffsetAlignment : 1;
    dev->max_shared = lim->maxComputeSharedMemorySize;
    dev->max_wg_invocations = lim->maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; i++) {
        dev->max_wg_size[i] = lim->maxComputeWorkGroupSize[i];
        dev->max_wg_count[i] = lim->maxComputeWorkGroupCount[i];
    }
    const char *range = vk_option(dev->host, "max_buffer_range");
    if (range && *range) {
        char *end;
        unsigned long long v = strtoull(range, &end, 0);
        if (*end || v < 65536) {
            vk_set_error(dev, "option max_buffer_range=\"%s\" is not a byte count >= 65536", range);
            return TRIT_ERROR_INVALID_ARGUMENT;
        }
        if (v < dev->max_range)
            dev->max_range = v;
    }
    dev->mem_device = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    dev->mem_staging = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    dev->uma = 1;
    uint64_t biggest = 0;
    for (uint32_t i = 0; i < dev->mem_props.memoryHeapCount; i++)
        if ((dev->mem_props.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            dev->mem_props.memoryHeaps[i].size > biggest)
            biggest = dev->mem_props.memoryHeaps[i].size;
    dev->memory_bytes = biggest;
    int has_local = 0;
    for (uint32_t i = 0; i < dev->mem_props.memoryTypeCount; i++) {
        VkMemoryPropertyFlags fl = dev->mem_props.memoryTypes[i].propertyFlags;
        if (fl & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) {
            has_local = 1;
            if (!(fl & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
                dev->uma = 0;
        }
        if ((fl & dev->mem_staging) == dev->mem_staging &&
            (fl & VK_MEMORY_PROPERTY_HOST_CACHED_BIT))
            dev->mem_staging |= VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
    }
    if (!has_local)
        dev->mem_device = 0;

    /* Queue: a compute family, preferring one without graphics (async compute engines). */
    uint32_t nq = 0;
    fn->GetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties *qf = calloc(nq ? nq : 1, sizeof(*qf));
    if (!qf) {
        vk_set_error(dev, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    fn->GetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    int family = -1;
    for (uint32_t i = 0; i < nq; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            if (family < 0 || !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
                family = (int)i;
            if (!(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
                break;
        }
    free(qf);
    if (family < 0) {
        vk_set_error(dev, "no compute queue");
        return TRIT_ERROR_NOT_FOUND;
    }
    dev->queue_family = (uint32_t)family;

    /* Enable what was chosen (and only that). */
    feature_chain want;
    chain_init(&want, has_sgc && f->subgroups, has_dot && f->int_dot, has_coop && f->coop_matrix,
               dev->coop_reject);
    want.f2.features.shaderFloat64 = f->fp64;
    want.f2.features.shaderInt64 = have.f2.features.shaderInt64;
    want.f2.features.shaderInt16 = have.f2.features.shaderInt16;
    want.s16.storageBuffer16BitAccess = f->fp16;
    want.f16i8.shaderFloat16 = f->fp16;
    want.s8.storageBuffer8BitAccess = f->int8;
    want.f16i8.shaderInt8 = f->int8;
    want.tl.timelineSemaphore = VK_TRUE;
    want.sgc.subgroupSizeControl = f->subgroups;
    want.sgc.computeFullSubgroups = f->subgroups;
    want.dot.shaderIntegerDotProduct = f->int_dot;
    want.coop.cooperativeMatrix = f->coop_matrix;
    want.mm.vulkanMemoryModel = f->coop_matrix; /* glslang's NV cooperative-matrix SPIR-V uses it */
    want.pcc.pipelineCreationCacheControl = dev->coop_reject != 0;
    const char *dev_ext[4];
    uint32_t n_dev_ext = 0;
    if (!core13 && f->subgroups)
        dev_ext[n_dev_ext++] = "VK_EXT_subgroup_size_control";
    if (!core13 && f->int_dot)
        dev_ext[n_dev_ext++] = "VK_KHR_shader_integer_dot_product";
    if (f->coop_matrix)
        dev_ext[n_dev_ext++] = "VK_NV_cooperative_matrix";

    const float prio = 1.0f;
    VkDeviceQueueCreateInfo qci;
    memset(&qci, 0, sizeof(qci));
    qci.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qci.queueFamilyIndex = dev->queue_family;
    qci.queueCount = 1;
    qci.pQueuePriorities = &prio;
    VkDeviceCreateInfo dci;
    memset(&dci, 0, sizeof(dci));
    dci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    dci.pNext = &want.f2;
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    dci.enabledExtensionCount = n_dev_ext;
    dci.ppEnabledExtensionNames = dev_ext;
    trit_status st = vk_check(dev, fn->CreateDevice(pd, &dci, NULL, &dev->dev), "vkCreateDevice");
    if (st != TRIT_OK) {
        dev->dev = VK_NULL_HANDLE;
        return st;
    }
    dev->fns = *fn;
#define LOAD_DEVICE(name)                                                                          \
    dev->fns.name = (PFN_vk##name)fn->GetDeviceProcAddr(dev->dev, "vk" #name);                     \
    if (!dev->fns.name) {                                                                          \
        vk_set_error(dev, "the driver lacks vk" #name);                                            \
        return TRIT_ERROR_UNSUPPORTED;                                                             \
    }
    VK_DEVICE_FUNCS(LOAD_DEVICE)
#undef LOAD_DEVICE
    dev->fn = &dev->fns;
    dev->fns.GetDeviceQueue(dev->dev, dev->queue_family, 0, &dev->queue);
    vk_log(dev, TRIT_LOG_INFO,
           "vulkan: device %u: %s (%s); fp16 %d, int8 %d, fp64 %d, subgroups %u, int dot %d%s, "
           "coop matrix %d; max storage range %llu, max allocation %llu",
           dev->index, dev->name, dev->driver, f->fp16, f->int8, f->fp64, dev->subgroup_size,
           f->int_dot, f->int_dot_fast ? " (accelerated)" : "", f->coop_matrix,
           (unsigned long long)dev->max_range, (unsigned long long)dev->max_alloc);
    if (dev->coop.m)
        vk_log(dev, TRIT_LOG_INFO,
               "vulkan: device %u: cooperative-matrix attention on: %ux%ux%u f16 -> %s, "
               "subgroup %u, shared memory %u bytes%s%s",
               dev->index, dev->coop.m, dev->coop.n, dev->coop.k, dev->coop.acc16 ? "f16" : "f32",
               dev->coop.subgroup_size, dev->max_shared,
               dev->coop.emulated ? " (emulated: scalar loops, vulkan.coop_matrix=emulate)" : "",
               dev->coop_reject ? " (its pipeline will be refused: -reject)" : "");
    else
        vk_log(dev, TRIT_LOG_INFO, "vulkan: device %u: cooperative-matrix attention off: %s",
               dev->index, dev->coop_reason);
    return TRIT_OK;
}

static void plugin_device_close(void *device);

static trit_status plugin_device_open(void *plugin, uint32_t index, void **out_device)
{
    vk_plugin *p = plugin;
    vk_device *dev = calloc(1, sizeof(*dev));
    if (!dev) {
        plugin_error(p->host, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    dev->plugin = p;
    dev->host = p->host;
    dev->fn = &p->fn;
    dev->index = index;
    pthread_mutex_init(&dev->queue_lock, NULL);
    pthread_mutex_init(&dev->pipe_lock, NULL);
    pthread_mutex_init(&dev->life_lock, NULL);
    if (index >= p->n_phys) {
        vk_set_error(dev, "no Vulkan device %u", index);
        plugin_device_close(dev);
        return TRIT_ERROR_NOT_FOUND;
    }
    dev->phys = p->phys[index];
    trit_status st = open_device(p, dev);
    if (st != TRIT_OK) {
        plugin_device_close(dev);
        return st;
    }
    vk_pipeline_cache_open(dev);
    *out_device = dev;
    return TRIT_OK;
}

static void plugin_device_close(void *device)
{
    vk_device *dev = device;
    if (!dev)
        return;
    if (dev->dev) {
        dev->fn->DeviceWaitIdle(dev->dev);
        vk_device_collect(dev, 1);
        vk_pipelines_destroy(dev);
        dev->fn->DestroyDevice(dev->dev, NULL);
    }
    pthread_mutex_destroy(&dev->queue_lock);
    pthread_mutex_destroy(&dev->pipe_lock);
    pthread_mutex_destroy(&dev->life_lock);
    free(dev);
}

static trit_status plugin_device_info(void *device, trit_device_info *info)
{
    vk_device *dev = device;
    trit_device_info out;
    memset(&out, 0, sizeof(out));
    out.backend = TRIT_BACKEND_VULKAN;
    out.index_in_backend = dev->index;
    snprintf(out.name, sizeof(out.name), "%s", dev->name);
    const uint32_t vid = dev->props.vendorID;
    const char *vendor = vid == 0x10de    ? "NVIDIA"
                         : vid == 0x1002  ? "AMD"
                         : vid == 0x8086  ? "Intel"
                         : vid == 0x13b5  ? "ARM"
                         : vid == 0x5143  ? "Qualcomm"
                         : vid == 0x106b  ? "Apple"
                         : vid == 0x10005 ? "Mesa"
                                          : NULL;
    if (vendor)
        snprintf(out.vendor, sizeof(out.vendor), "%s", vendor);
    else
        snprintf(out.vendor, sizeof(out.vendor), "0x%04x", vid);
    snprintf(out.driver, sizeof(out.driver), "%.40s (Vulkan %u.%u.%u)", dev->driver,
             VK_API_VERSION_MAJOR(dev->props.apiVersion),
             VK_API_VERSION_MINOR(dev->props.apiVersion),
             VK_API_VERSION_PATCH(dev->props.apiVersion));
    out.memory_bytes = dev->memory_bytes;
    out.max_buffer_bytes = dev->max_alloc;
    out.compute_units = 0; /* Vulkan does not say */
    out.subgroup_size = dev->subgroup_size;
    if (dev->f.fp16)
        out.caps |= TRIT_CAP_FP16;
    if (dev->f.int_dot_fast)
        out.caps |= TRIT_CAP_INT8_DOT;
    if (dev->f.subgroups)
        out.caps |= TRIT_CAP_SUBGROUPS;
    if (dev->f.coop_matrix && !__atomic_load_n(&dev->coop_failed, __ATOMIC_ACQUIRE))
        out.caps |= TRIT_CAP_COOP_MATRIX;
    if (dev->uma)
        out.caps |= TRIT_CAP_UNIFIED_MEMORY;
    size_t n = info->size < sizeof(out) ? info->size : sizeof(out);
    out.size = info->size;
    memcpy(info, &out, n);
    return TRIT_OK;
}

static int plugin_supports(void *device, const trit_op_desc *desc, char *reason, size_t size)
{
    vk_device *dev = device;
    const char *why;
    switch (desc->op) {
    case TRIT_OP_GEMV:
    case TRIT_OP_GEMV_GATED: why = vk_gemv_unsupported(dev, desc); break;
    case TRIT_OP_ATTENTION:
#ifdef TRIT_VK_HAVE_ATTENTION
        why = vk_attention_unsupported(dev, desc);
#else
        why = "attention is not implemented yet on Vulkan";
#endif
        break;
    case TRIT_OP_ROPE_KV_APPEND:
#ifdef TRIT_VK_HAVE_ROPE
        why = vk_rope_unsupported(dev, desc);
#else
        why = "RoPE + KV append is not implemented yet on Vulkan";
#endif
        break;
    default: why = "unknown op"; break;
    }
    if (!why)
        return 1;
    if (reason && size)
        snprintf(reason, size, "%s", why);
    return 0;
}

/* --- memory, streams and events -------------------------------------------------------------- */

static trit_status plugin_buffer_alloc(void *device, uint64_t bytes, void **out_buffer)
{
    return vk_buffer_create(device, bytes, (vk_buffer **)out_buffer);
}

static void plugin_buffer_free(void *device, void *buffer)
{
    vk_buffer_destroy(device, buffer);
}

static trit_status plugin_stream_create(void *device, void **out_stream)
{
    return vk_stream_create(device, (vk_stream **)out_stream);
}

static void plugin_stream_destroy(void *stream)
{
    vk_stream_destroy(stream);
}

static trit_status plugin_stream_sync(void *stream)
{
    return vk_stream_sync(stream);
}

static trit_status plugin_event_create(void *device, void **out_event)
{
    vk_device *dev = device;
    vk_event *e = calloc(1, sizeof(*e));
    if (!e) {
        vk_set_error(dev, "out of host memory for an event");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    VkSemaphoreTypeCreateInfo tci;
    memset(&tci, 0, sizeof(tci));
    tci.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
    tci.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
    VkSemaphoreCreateInfo sci;
    memset(&sci, 0, sizeof(sci));
    sci.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
    sci.pNext = &tci;
    trit_status st =
        vk_check(dev, dev->fn->CreateSemaphore(dev->dev, &sci, NULL, &e->sem), "event: semaphore");
    if (st != TRIT_OK) {
        free(e);
        return st;
    }
    e->dev = dev;
    *out_event = e;
    return TRIT_OK;
}

static void event_free_now(vk_device *dev, void *event)
{
    vk_event *e = event;
    dev->fn->DestroySemaphore(dev->dev, e->sem, NULL);
    free(e);
}

static void plugin_event_destroy(void *event)
{
    vk_event *e = event;
    if (!e)
        return;
    /* Batches that signal it may still be queued: wait for the signal itself (a batch's signal
     * operations are unordered, so its stream's timeline may be ahead of this semaphore). Batches
     * that will wait for it may not even be submitted yet: the semaphore is destroyed once they
     * have completed. */
    if (e->value) {
        VkSemaphoreWaitInfo wi;
        memset(&wi, 0, sizeof(wi));
        wi.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
        wi.semaphoreCount = 1;
        wi.pSemaphores = &e->sem;
        wi.pValues = &e->value;
        e->dev->fn->WaitSemaphores(e->dev->dev, &wi, UINT64_MAX);
    }
    vk_device_defer(e->dev, event_free_now, e);
}

static trit_status plugin_event_record(void *event, void *stream)
{
    vk_event *e = event;
    trit_status st = vk_stream_signal(stream, e->sem, e->value + 1);
    if (st == TRIT_OK)
        e->value++;
    return st;
}

static trit_status plugin_stream_wait_event(void *stream, void *event)
{
    vk_event *e = event;
    if (e->value == 0)
        return TRIT_OK;
    return vk_stream_wait(stream, e->sem, e->value);
}

static trit_status plugin_event_sync(void *event)
{
    vk_event *e = event;
    if (e->value == 0)
        return TRIT_OK;
    VkSemaphoreWaitInfo wi;
    memset(&wi, 0, sizeof(wi));
    wi.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
    wi.semaphoreCount = 1;
    wi.pSemaphores = &e->sem;
    wi.pValues = &e->value;
    return vk_check(e->dev, e->dev->fn->WaitSemaphores(e->dev->dev, &wi, UINT64_MAX), "event sync");
}

static trit_status plugin_upload(void *stream, void *buffer, uint64_t offset, const void *src,
                                 uint64_t bytes)
{
    return vk_stream_upload(stream, buffer, offset, src, bytes);
}

static trit_status plugin_download(void *stream, void *buffer, uint64_t offset, void *dst,
                                   uint64_t bytes)
{
    return vk_stream_download(stream, buffer, offset, dst, bytes);
}

static trit_status plugin_copy(void *stream, void *src, uint64_t src_offset, void *dst,
                               uint64_t dst_offset, uint64_t bytes)
{
    return vk_stream_copy(stream, src, src_offset, dst, dst_offset, bytes);
}

static trit_status plugin_fill(void *stream, void *buffer, uint64_t offset, uint8_t value,
                               uint64_t bytes)
{
    return vk_stream_fill(stream, buffer, offset, value, bytes);
}

static trit_status plugin_ternary_create(void *device, const trit_ternary_host *w, void **out,
                                         uint64_t *out_bytes)
{
    return vk_ternary_create(device, w, out, out_bytes);
}

static void plugin_ternary_destroy(void *device, void *ternary)
{
    vk_ternary_destroy(device, ternary);
}

static trit_status plugin_gemv(void *stream, const trit_plugin_gemv_args *args)
{
    return vk_gemv(stream, args);
}

#ifdef TRIT_VK_HAVE_ATTENTION
static trit_status plugin_attention(void *stream, const trit_plugin_attention_args *args)
{
    return vk_attention(stream, args);
}
#endif

#ifdef TRIT_VK_HAVE_ROPE
static trit_status plugin_rope(void *stream, const trit_plugin_rope_args *args)
{
    return vk_rope_kv_append(stream, args);
}
#endif

TRIT_PLUGIN_EXPORT trit_status trit_plugin_query(uint32_t host_abi_version,
                                                 trit_plugin_vtable *vtable)
{
    (void)host_abi_version; /* ABI 1 is the first: any host that can call us speaks it */
    if (!vtable || vtable->size < offsetof(trit_plugin_vtable, init))
        return TRIT_ERROR_INVALID_ARGUMENT;
    trit_plugin_vtable vt;
    memset(&vt, 0, sizeof(vt));
    vt.size = sizeof(vt);
    vt.abi_version = TRIT_PLUGIN_ABI_VERSION;
    vt.abi_min_host = 1;
    vt.backend = TRIT_BACKEND_VULKAN;
    vt.name = "vulkan";
    vt.init = plugin_init;
    vt.shutdown = plugin_shutdown;
    vt.device_count = plugin_device_count;
    vt.device_open = plugin_device_open;
    vt.device_close = plugin_device_close;
    vt.device_info = plugin_device_info;
    vt.supports = plugin_supports;
    vt.buffer_alloc = plugin_buffer_alloc;
    vt.buffer_free = plugin_buffer_free;
    vt.buffer_host_ptr = NULL; /* device-local memory is not mapped */
    vt.stream_create = plugin_stream_create;
    vt.stream_destroy = plugin_stream_destroy;
    vt.stream_sync = plugin_stream_sync;
    vt.event_create = plugin_event_create;
    vt.event_destroy = plugin_event_destroy;
    vt.event_record = plugin_event_record;
    vt.stream_wait_event = plugin_stream_wait_event;
    vt.event_sync = plugin_event_sync;
    vt.buffer_upload = plugin_upload;
    vt.buffer_download = plugin_download;
    vt.buffer_copy = plugin_copy;
    vt.buffer_fill = plugin_fill;
    vt.ternary_create = plugin_ternary_create;
    vt.ternary_destroy = plugin_ternary_destroy;
    vt.gemv = plugin_gemv;
#ifdef TRIT_VK_HAVE_ATTENTION
    vt.attention = plugin_attention;
#endif
#ifdef TRIT_VK_HAVE_ROPE
    vt.rope_kv_append = plugin_rope;
#endif
    uint32_t n = vtable->size < vt.size ? vtable->size : vt.size;
    memcpy(vtable, &vt, n);
    vtable->size = vt.size;
    return TRIT_OK;
}
