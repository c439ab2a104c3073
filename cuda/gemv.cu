// gemv.cu — placeholder until the CUDA GEMV lands: says so and does nothing.
#include <stdio.h>

#include "cu.h"

extern "C" trit_status cuda_ternary_create(void *device, const trit_ternary_host *weights,
                                           void **out_ternary, uint64_t *out_device_bytes)
{
    (void)device, (void)weights, (void)out_ternary, (void)out_device_bytes;
    return TRIT_ERROR_UNSUPPORTED;
}

extern "C" void cuda_ternary_destroy(void *device, void *ternary)
{
    (void)device, (void)ternary;
}

extern "C" int cuda_gemv_supports(const cuda_device *dev, const trit_op_desc *desc, char *reason,
                                  size_t reason_size)
{
    (void)dev, (void)desc;
    if (reason && reason_size)
        snprintf(reason, reason_size, "the CUDA GEMV is not implemented yet");
    return 0;
}

extern "C" trit_status cuda_gemv(void *stream, const trit_plugin_gemv_args *args)
{
    (void)stream, (void)args;
    return TRIT_ERROR_UNSUPPORTED;
}
