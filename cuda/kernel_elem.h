/*
 * kernel_elem.h — f32 / f16 element access shared by the attention and RoPE kernels
 * (attention_kernels.h, rope_kernel.h). The includer provides __half and its conversions:
 * cuda_fp16.h on the GPU, the CPU emulation in the tests.
 */
#ifndef TRIT_CUDA_KERNEL_ELEM_H
#define TRIT_CUDA_KERNEL_ELEM_H

#include <stdint.h>

namespace cuda_elem {

/* Element i of a tensor stored as f16 (f16 != 0) or f32, as f32. */
__device__ __forceinline__ float ld_elem(const char *base, int64_t i, int f16)
{
    return f16 ? __half2float(reinterpret_cast<const __half *>(base)[i])
               : reinterpret_cast<const float *>(base)[i];
}

/* Stores v as element i, rounded to nearest when the tensor is f16. */
__device__ __forceinline__ void st_elem(char *base, int64_t i, int f16, float v)
{
    if (f16)
        reinterpret_cast<__half *>(base)[i] = __float2half_rn(v);
    else
        reinterpret_cast<float *>(base)[i] = v;
}

} // namespace cuda_elem

#endif /* TRIT_CUDA_KERNEL_ELEM_H */
