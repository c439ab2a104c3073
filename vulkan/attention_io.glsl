// attention_io.glsl — element access for the f32/f16 tensors of attention*.comp and rope.comp.
//
// Every tensor is bound as 32-bit words and addressed by element index (vk_tensor_binding gives
// the index of element 0 inside the binding). f32 elements are words. f16 elements are read
// either through a 16-bit view of the same binding (variant with -DSTORAGE16, when the device has
// storageBuffer16BitAccess) or from the word that holds them with unpackHalf2x16, which every
// device runs. Without 16-bit storage an f16 store is two atomics on its word (clear its half,
// then set it): two invocations may own the two halves of one word (odd row starts, neighbouring
// rows written by another workgroup), and and/or on disjoint bits commute, so neither loses the
// other's half and bytes outside the view are never rewritten.
//
// f32 -> f16 is done here in integers, round to nearest even, so results do not depend on how a
// driver rounds OpFConvert / packHalf2x16 (the spec leaves it open); f16 -> f32 is exact.

#define NEG_INF (-1.0 / 0.0)

#ifdef STORAGE16
#define TENSOR_RO(b, name)                                                                          \
    layout(std430, set = 0, binding = b) readonly buffer name##Words { uint name##_w[]; };          \
    layout(std430, set = 0, binding = b) readonly buffer name##Halves { uint16_t name##_h[]; };
#define TENSOR_RW(b, name)                                                                          \
    layout(std430, set = 0, binding = b) buffer name##Words { uint name##_w[]; };                   \
    layout(std430, set = 0, binding = b) buffer name##Halves { uint16_t name##_h[]; };
#define LOAD_HALF(name, e) unpackHalf2x16(uint(name##_h[e])).x
#define STORE_HALF(name, e, bits) name##_h[e] = uint16_t(bits)
#else
#define TENSOR_RO(b, name)                                                                          \
    layout(std430, set = 0, binding = b) readonly buffer name##Words { uint name##_w[]; };
#define TENSOR_RW(b, name)                                                                          \
    layout(std430, set = 0, binding = b) buffer name##Words { uint name##_w[]; };
#define LOAD_HALF(name, e) unpackHalf2x16(name##_w[(e) >> 1u] >> (((e)&1u) * 16u)).x
#define STORE_HALF(name, e, bits)                                                                   \
    {                                                                                               \
        uint e_ = (e), sh_ = (e_ & 1u) * 16u;                                                       \
        atomicAnd(name##_w[e_ >> 1u], ~(0xFFFFu << sh_));                                           \
        atomicOr(name##_w[e_ >> 1u], uint(bits) << sh_);                                            \
    }
#endif

// Element e of tensor `name` as f32; is16 is a specialization constant.
#define LOAD(name, is16, e) ((is16) ? LOAD_HALF(name, e) : uintBitsToFloat(name##_w[e]))

// Stores f32 value v as element e of tensor `name` (f16: rounded to nearest even).
#define STORE(name, is16, e, v)                                                                     \
    {                                                                                               \
        if (is16) {                                                                                 \
            STORE_HALF(name, e, f32_to_f16(v));                                                     \
        } else {                                                                                    \
            name##_w[e] = floatBitsToUint(v);                                                       \
        }                                                                                           \
    }

// Raw f16 bits of element e (for copies that must keep every bit).
#ifdef STORAGE16
#define LOAD_HALF_BITS(name, e) uint(name##_h[e])
#else
#define LOAD_HALF_BITS(name, e) ((name##_w[(e) >> 1u] >> (((e)&1u) * 16u)) & 0xFFFFu)
#endif

// f32 -> f16 bits, round to nearest even; overflow to inf, NaN stays NaN.
uint f32_to_f16(float f)
{
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16u) & 0x8000u;
    uint ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u)
        return sign | (ax > 0x7F800000u ? 0x7E00u : 0x7C00u);
    if (ax >= 0x477FF000u) // 65520 and above round to inf
        return sign | 0x7C00u;
    if (ax < 0x38800000u) { // below 2^-14: a subnormal half (or zero)
        if (ax < 0x33000000u) // below 2^-25 (2^-25 itself ties to even: 0)
            return sign;
        uint e = ax >> 23u;
        uint m = (ax & 0x7FFFFFu) | 0x800000u;
        uint shift = 126u - e; // 14..24
        uint r = m >> shift;
        uint rem = m & ((1u << shift) - 1u), half_ = 1u << (shift - 1u);
        if (rem > half_ || (rem == half_ && (r & 1u) != 0u))
            r++;
        return sign | r;
    }
    uint b = ax - 0x38000000u; // rebias the exponent from 127 to 15
    uint r = b >> 13u, rem = b & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u) != 0u))
        r++;
    return sign | r;
}
