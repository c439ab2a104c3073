// rope.cu — placeholder until the CUDA RoPE lands: says so and does nothing.
#include <stdio.h>

#include "cu.h"

extern "C" int cuda_rope_supports(const cuda_device *dev, const trit_op_desc *desc, char *reason,
                                  size_t reason_size)
{
    (void)dev, (void)desc;
    if (reason && reason_size)
        snprintf(reason, reason_size, "the CUDA RoPE + KV append is not implemented yet");
    return 0;
}

extern "C" trit_status cuda_rope_kv_append(void *stream, const trit_plugin_rope_args *args)
{
    (void)stream, (void)args;
    return TRIT_ERROR_UNSUPPORTED;
}
