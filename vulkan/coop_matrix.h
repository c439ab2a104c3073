/*
 * coop_matrix.h — whether the Vulkan plugin runs attention with cooperative matrices, and with
 * which fragment shape. Pure functions of what the device reports (no Vulkan calls), so that
 * plugin.c decides with them at device creation and tests feed them made-up devices.
 *
 * Only VK_NV_cooperative_matrix: the headers and glslang the build targets (Vulkan 1.3.239,
 * glslang 12) know no KHR cooperative matrix. attention_coop.comp multiplies f16 fragments of
 * 16 x 16 (A, M x K) by 16 x N (B, K x N), N = 16 or 8, at subgroup scope, into f32 accumulators,
 * or f16 ones where the device offers only those. glslang compiles any NV cooperative-matrix
 * shader for the Vulkan memory model, so the device must also have vulkanMemoryModel.
 */
#ifndef TRIT_VULKAN_COOP_MATRIX_H
#define TRIT_VULKAN_COOP_MATRIX_H

#include <stdint.h>
#include <string.h>

#ifndef VK_NO_PROTOTYPES
#define VK_NO_PROTOTYPES
#endif
#include <vulkan/vulkan.h>

/* vulkan.coop_matrix option: unset/on, off, or emulate (testing: attention_coop.comp's emu_*
 * variants, the fragment products as scalar loops, on a device without cooperative matrices). */
typedef enum vk_coop_mode { VK_COOP_AUTO = 0, VK_COOP_OFF = 1, VK_COOP_EMULATE = 2 } vk_coop_mode;

/* The chosen configuration; m == 0: the path is off. */
typedef struct vk_coop_config {
    uint32_t m, n, k;       /* fragment shape: 16 x n x 16 */
    int acc16;              /* accumulators (C and D) are f16; else f32 */
    uint32_t subgroup_size; /* the pipeline's required subgroup size */
    int emulated;           /* VK_COOP_EMULATE: no cooperative-matrix instruction is used */
} vk_coop_config;

/* What the device reports, gathered by plugin.c. */
typedef struct vk_coop_device {
    vk_coop_mode mode;
    int extension;     /* VK_NV_cooperative_matrix listed */
    int feature;       /* VkPhysicalDeviceCooperativeMatrixFeaturesNV.cooperativeMatrix */
    int compute_stage; /* cooperativeMatrixSupportedStages has the compute stage */
    int properties;    /* vkGetPhysicalDeviceCooperativeMatrixPropertiesNV could be called */
    int memory_model;  /* vulkanMemoryModel */
    int fp16;          /* shaderFloat16 + storageBuffer16BitAccess, and chosen (fp16 on) */
    int subgroup_size_control; /* required subgroup sizes with full subgroups, and chosen */
    uint32_t subgroup_size;    /* the device's default subgroup size */
    const VkCooperativeMatrixPropertiesNV *props; /* the device's list (mode EMULATE: made up) */
    uint32_t n_props;
} vk_coop_device;

/* The preferred entry of `props` the shader can use: f16 A and B, C = D, subgroup scope,
 * M = K = 16, N = 16 or 8; f32 accumulators before f16 ones, then N = 16 before 8. Returns 1 and
 * fills m, n, k, acc16 of *out, or 0 when none fits. */
static inline int vk_coop_pick(const VkCooperativeMatrixPropertiesNV *props, uint32_t n_props,
                               vk_coop_config *out)
{
    int best = -1, best_rank = 0;
    for (uint32_t i = 0; i < n_props; i++) {
        const VkCooperativeMatrixPropertiesNV *p = &props[i];
        if (p->scope != VK_SCOPE_SUBGROUP_NV || p->MSize != 16 || p->KSize != 16 ||
            (p->NSize != 16 && p->NSize != 8) || p->AType != VK_COMPONENT_TYPE_FLOAT16_NV ||
            p->BType != VK_COMPONENT_TYPE_FLOAT16_NV || p->CType != p->DType ||
            (p->CType != VK_COMPONENT_TYPE_FLOAT32_NV && p->CType != VK_COMPONENT_TYPE_FLOAT16_NV))
            continue;
        const int rank =
            (p->CType == VK_COMPONENT_TYPE_FLOAT32_NV ? 4 : 0) + (p->NSize == 16 ? 2 : 1);
        if (rank > best_rank) {
            best_rank = rank;
            best = (int)i;
        }
    }
    if (best < 0)
        return 0;
    out->m = 16;
    out->n = props[best].NSize;
    out->k = 16;
    out->acc16 = props[best].CType == VK_COMPONENT_TYPE_FLOAT16_NV;
    return 1;
}

/* The one decision: fills *out (zeroed when off) and returns NULL when attention uses cooperative
 * matrices, else the reason it does not (a sentence fragment for the log). */
static inline const char *vk_coop_decide(const vk_coop_device *d, vk_coop_config *out)
{
    memset(out, 0, sizeof(*out));
    if (d->mode == VK_COOP_OFF)
        return "forced off (vulkan.coop_matrix=off)";
    if (d->mode != VK_COOP_EMULATE) {
        if (!d->extension)
            return "the device does not offer VK_NV_cooperative_matrix";
        if (!d->feature)
            return "the cooperativeMatrix feature is not supported";
        if (!d->compute_stage)
            return "cooperative matrices are not supported in compute shaders";
        if (!d->properties)
            return "the loader lacks vkGetPhysicalDeviceCooperativeMatrixPropertiesNV";
        if (!d->memory_model)
            return "the vulkanMemoryModel feature is not supported";
    }
    if (!d->fp16)
        return "16-bit storage and shaderFloat16 are off";
    if (!d->subgroup_size_control || d->subgroup_size < 4)
        return "the subgroup size cannot be required (subgroups are off)";
    vk_coop_config c;
    memset(&c, 0, sizeof(c));
    if (!vk_coop_pick(d->props, d->n_props, &c))
        return "no 16x16x16 or 16x8x16 f16 configuration at subgroup scope";
    c.subgroup_size = d->subgroup_size;
    c.emulated = d->mode == VK_COOP_EMULATE;
    *out = c;
    return NULL;
}

#endif /* TRIT_VULKAN_COOP_MATRIX_H */
