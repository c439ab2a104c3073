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

/* Subgroups per workgroup of attention_coop.comp (NSG there). */
#define VK_COOP_SUBGROUPS 4u

/* Shared memory attention_coop.comp declares for head dim d, `rows` query rows and `tk` keys per
 * tile: q and K/V tiles as f16 with rows padded by 8, the score tile (row stride tk + 8, in the
 * accumulator type; also the P·V fragments, one per subgroup, so at least that big), the f16
 * weights (row stride tk + 8), the f32 output block, per-row state (m, l, alpha) and the tile's
 * K/V row offsets. Must match the shader's declarations. */
static inline uint64_t vk_coop_shared_bytes(const vk_coop_config *c, uint32_t d, uint32_t rows,
                                            uint32_t tk)
{
    const uint64_t acc = c->acc16 ? 2 : 4, qs = (uint64_t)d + 8, ps = (uint64_t)tk + 8;
    const uint64_t scores = (uint64_t)rows * ps, frags = VK_COOP_SUBGROUPS * 16 * (uint64_t)c->n;
    return 2 * rows * qs + 2 * tk * qs + acc * (scores > frags ? scores : frags) + 2 * rows * ps +
           4 * (uint64_t)rows * d + 4 * 3 * (uint64_t)rows + 8 * (uint64_t)tk;
}

/* attention_coop.comp's tiles for head dim d (query rows and keys per tile, both multiples of 16)
 * within `max_shared` bytes: larger row blocks first (each K/V tile then serves more rows), then
 * longer key tiles. Returns 1 and fills *out_tk, *out_rows, or 0 when none fits, d is not a
 * multiple of 16 or the workgroup (VK_COOP_SUBGROUPS subgroups) exceeds `max_wg`. With f32
 * accumulators and 16x8 fragments at 48 KiB (NVIDIA): 32 x 64 for d = 64, 80, 96; 32 x 32 for
 * 128; 16 x 32 for 256. At 32 KiB (lavapipe) none of those fit with f32 accumulators (see
 * vulkan/README.md); with f16 ones d = 64 gets 32 x 64. */
static inline int vk_coop_tiles(const vk_coop_config *c, uint32_t max_shared, uint32_t max_wg,
                                uint32_t d, uint32_t *out_tk, uint32_t *out_rows)
{
    static const uint32_t cand[][2] = {{32, 64}, {32, 32}, {16, 64}, {16, 32}, {16, 16}};
    if (c->m == 0 || d % 16 != 0 || VK_COOP_SUBGROUPS * c->subgroup_size > max_wg)
        return 0;
    for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
        if (vk_coop_shared_bytes(c, d, cand[i][0], cand[i][1]) <= max_shared) {
            *out_rows = cand[i][0];
            *out_tk = cand[i][1];
            return 1;
        }
    return 0;
}

#endif /* TRIT_VULKAN_COOP_MATRIX_H */
