// attention.cu — placeholder until the CUDA attention lands: says so and does nothing.
#include <stdio.h>

#include "cu.h"

extern "C" int cuda_attention_supports(const cuda_device *dev, const trit_op_desc *desc,
                                       char *reason, size_t reason_size)
{
    (void)dev, (void)desc;
    if (reason && reason_size)
        snprintf(reason, reason_size, "the CUDA attention is not implemented yet");
    return 0;
}

extern "C" trit_status cuda_attention(void *stream, const trit_plugin_attention_args *args)
{
    (void)stream, (void)args;
    return TRIT_ERROR_UNSUPPORTED;
}
