// cuda_emu.h — a CPU emulation of the CUDA features the kernels in cuda/*_kernels.h use, so that
// tests compile the device code as plain C++ and run it on machines without a GPU
// (test_cuda_attention_plan.cpp: attention and RoPE; test_cuda_gemv_emulated.cpp: the GEMV).
//
// Threads are fibers (ucontext) run from barrier to barrier, one block at a time; warp shuffles
// and __syncthreads are exchanges and barriers (a warp collective that not all 32 lanes reach,
// or a deadlock, fails the test); shared memory must be the dynamic kind (extern __shared__),
// which the kernels use for that reason: each test defines the kernels' smem_raw array, and
// launch() with a dynamic size poisons it before every block and makes the bytes past that size
// unusable (ASan-poisoned under ASan, else a canary checked after the block); cp.async copies
// land only at cp.async.wait_group, so a read before the wait sees stale shared memory; cp.async
// and ldmatrix check their alignment; ldmatrix and mma.m16n8k16 follow the PTX ISA fragment
// layouts. Vector types have CUDA's alignment (uint4, float4: 16 bytes), so UBSan reports a
// misaligned vector load. What it cannot show: anything it gets wrong the same way the kernels
// do (the fragment layouts are its reading of the PTX ISA), races within one barrier interval
// (fibers run in thread order, or in reverse with TRIT_TEST_EMULATION_REVERSE=1), timing, or
// the hardware's memory model.
//
// Under AddressSanitizer every fiber switch is announced with __sanitizer_start_switch_fiber /
// __sanitizer_finish_switch_fiber, so ASan knows which stack is live; each fiber keeps its own
// fake stack (detect_stack_use_after_return) for its whole life, since fibers never exit: they
// park between blocks and run the next block's body.
//
// Include it after every other header: it defines CUDA keywords (__global__, __shared__,
// threadIdx, ...) as macros. TRIT_TEST_CUDA_EMULATION is defined where it is available (needs
// _Float16 and <ucontext.h>).
#pragma once

#if defined(__FLT16_MAX__) && __has_include(<ucontext.h>)
#define TRIT_TEST_CUDA_EMULATION 1

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <ucontext.h>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define TRIT_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRIT_EMU_ASAN 1
#endif
#endif
#ifdef TRIT_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define TRIT_CUDA_ATTENTION_EMULATE 1
#define TRIT_CUDA_GEMV_EMULATE 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n)

typedef _Float16 __half;
struct alignas(4) __half2 {
    _Float16 x, y;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    uint32_t x, y, z, w;
};
struct alignas(8) uint2 {
    uint32_t x, y;
};
struct dim3 {
    unsigned x, y, z;
};
inline uint4 make_uint4(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    return {a, b, c, d};
}
inline float4 make_float4(float a, float b, float c, float d)
{
    return {a, b, c, d};
}
inline float __half2float(__half h)
{
    return (float)h;
}
inline __half __float2half_rn(float f)
{
    return (_Float16)f;
}
inline __half __ushort_as_half(unsigned short u)
{
    __half h;
    std::memcpy(&h, &u, 2);
    return h;
}
inline __half2 __floats2half2_rn(float a, float b)
{
    return {(_Float16)a, (_Float16)b};
}
inline float2 __half22float2(__half2 h)
{
    return {(float)h.x, (float)h.y};
}
inline float __expf(float x)
{
    return expf(x);
}
inline uint32_t __float_as_uint(float f)
{
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(uint32_t u)
{
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float __int_as_float(int32_t i)
{
    return __uint_as_float((uint32_t)i);
}
inline double __longlong_as_double(long long v)
{
    double d;
    std::memcpy(&d, &v, 8);
    return d;
}
// The _rn intrinsics are single IEEE operations; volatile keeps the host compiler from fusing
// them into an fma where the target has one.
inline double __dmul_rn(double a, double b)
{
    volatile double r = a * b;
    return r;
}
inline float __fmul_rn(float a, float b)
{
    volatile float r = a * b;
    return r;
}
inline float __fdiv_rn(float a, float b)
{
    volatile float r = a / b;
    return r;
}
inline double __fma_rn(double a, double b, double c)
{
    return std::fma(a, b, c);
}
inline float __fmaf_rn(float a, float b, float c)
{
    return std::fma(a, b, c);
}
// c + the sum of the products of the four signed bytes of a and b (mod 2^32).
inline int __dp4a(int a, int b, int c)
{
    uint32_t s = (uint32_t)c;
    for (int i = 0; i < 4; i++)
        s += (uint32_t)((int32_t)(int8_t)(uint8_t)((uint32_t)a >> (8 * i)) *
                        (int32_t)(int8_t)(uint8_t)((uint32_t)b >> (8 * i)));
    return (int)s;
}
template <typename T> inline T __ldg(const T *p)
{
    return *p;
}
using std::max;
using std::min;

namespace emu {
enum { MAX_THREADS = 1024, STACK = 256 * 1024 };
enum State { RUN, BAR_BLOCK, BAR_WARP, DONE };
struct Fiber {
    ucontext_t ctx;
    std::unique_ptr<char[]> stack;
    State st;
    // cp.async: groups of (dst, 16 bytes)
    struct Copy {
        void *dst;
        unsigned char data[16];
    };
    std::vector<std::vector<Copy>> groups; // committed
    std::vector<Copy> open;
    bool started = false; // has a context (running a block, or parked after one)
#ifdef TRIT_EMU_ASAN
    void *fake_stack = nullptr; // ASan's fake stack of this fiber while it is switched out
#endif
};
inline Fiber fib[MAX_THREADS];
inline ucontext_t sched_ctx;
inline int cur = 0;
inline int nt = 128; // threads of the running block
inline dim3 block_idx, block_dim{128, 1, 1}, grid_dim{1, 1, 1};
inline std::function<void()> body;
// warp exchange buffers
inline uint64_t xbuf[MAX_THREADS][8];
inline const void *pbuf[MAX_THREADS];
inline uint64_t sbuf[MAX_THREADS][2]; // shuffles (see __shfl_xor_sync)
inline unsigned shfl_count[MAX_THREADS];
#ifdef TRIT_EMU_ASAN
inline const void *sched_stack = nullptr; // the scheduler's (the test thread's) stack
inline size_t sched_stack_size = 0;
#endif

// Fiber -> scheduler (fibers never exit, so ASan keeps each one's fake stack).
inline void to_scheduler()
{
#ifdef TRIT_EMU_ASAN
    __sanitizer_start_switch_fiber(&fib[cur].fake_stack, sched_stack, sched_stack_size);
#endif
    swapcontext(&fib[cur].ctx, &sched_ctx);
#ifdef TRIT_EMU_ASAN
    __sanitizer_finish_switch_fiber(fib[cur].fake_stack, nullptr, nullptr);
#endif
}

// Scheduler -> fiber t, until it yields (at a barrier, or parked after its block).
inline void to_fiber(int t)
{
    cur = t;
#ifdef TRIT_EMU_ASAN
    void *sched_fake = nullptr;
    __sanitizer_start_switch_fiber(&sched_fake, fib[t].stack.get(), STACK);
#endif
    swapcontext(&sched_ctx, &fib[t].ctx);
#ifdef TRIT_EMU_ASAN
    __sanitizer_finish_switch_fiber(sched_fake, nullptr, nullptr);
#endif
}

inline void yield_state(State s)
{
    fib[cur].st = s;
    to_scheduler();
}
// A fiber's whole life: it runs the block body, parks (DONE) until the scheduler hands it the
// next block, and so on; fibers and their stacks (and ASan's fake stacks) live across blocks.
inline void entry()
{
#ifdef TRIT_EMU_ASAN
    // First switch into this fiber: no fake stack to restore; learn the scheduler's stack.
    __sanitizer_finish_switch_fiber(nullptr, &sched_stack, &sched_stack_size);
#endif
    for (;;) {
        body();
        fib[cur].st = DONE;
        to_scheduler();
    }
}

inline void run_block(const std::function<void()> &f)
{
    body = f;
    for (int t = 0; t < nt; t++) {
        Fiber &F = fib[t];
        if (!F.stack)
            F.stack.reset(new char[STACK]);
        // A fiber parked after its last block (DONE) runs the next one; a new one, or one left
        // inside a block that failed (an exception from the scheduler), starts afresh.
        if (!F.started || F.st != DONE) {
#ifdef TRIT_EMU_ASAN
            __asan_unpoison_memory_region(F.stack.get(), STACK); // redzones of abandoned frames
            F.fake_stack = nullptr;
#endif
            getcontext(&F.ctx);
            F.ctx.uc_stack.ss_sp = F.stack.get();
            F.ctx.uc_stack.ss_size = STACK;
            F.ctx.uc_link = nullptr;
            makecontext(&F.ctx, entry, 0);
#ifdef TRIT_EMU_ASAN
            // makecontext has placed the stack and swapcontext never reads uc_stack again.
            // Cleared so that ASan's swapcontext interceptor does not wipe the shadow of the
            // whole fiber stack (its live frames' redzones included) on every switch.
            F.ctx.uc_stack.ss_sp = nullptr;
            F.ctx.uc_stack.ss_size = 0;
#endif
            F.started = true;
        }
        F.st = RUN;
        shfl_count[t] = 0;
        F.groups.clear();
        F.open.clear();
    }
    for (;;) {
        bool ran = false;
        static const bool rev = getenv("TRIT_TEST_EMULATION_REVERSE") != nullptr;
        for (int i = 0; i < nt; i++) {
            int t = rev ? nt - 1 - i : i;
            if (fib[t].st == RUN) {
                to_fiber(t);
                ran = true;
            }
        }
        int done = 0, bb = 0;
        for (int t = 0; t < nt; t++) {
            done += fib[t].st == DONE;
            bb += fib[t].st == BAR_BLOCK;
        }
        if (done == nt)
            break;
        bool released = false;
        if (bb > 0 && bb + done == nt) {
            if (done)
                throw std::runtime_error("__syncthreads with exited threads");
            for (int t = 0; t < nt; t++)
                fib[t].st = RUN;
            released = true;
        }
        for (int w = 0; w < nt / 32; w++) {
            int n = 0;
            for (int l = 0; l < 32; l++)
                n += fib[w * 32 + l].st == BAR_WARP;
            if (n == 32) {
                for (int l = 0; l < 32; l++)
                    fib[w * 32 + l].st = RUN;
                released = true;
            } else if (n > 0) {
                int d = 0;
                for (int l = 0; l < 32; l++)
                    d += fib[w * 32 + l].st == DONE || fib[w * 32 + l].st == BAR_BLOCK;
                if (n + d == 32 && d)
                    throw std::runtime_error("warp collective with divergent lanes");
            }
        }
        if (!ran && !released)
            throw std::runtime_error("deadlock");
    }
}

// Dynamic shared memory: the array a kernel's `extern __shared__ smem_raw[]` resolves to (the
// test defines it in the kernel's namespace and registers it here) and its size.
inline unsigned char *smem = nullptr;
inline size_t smem_capacity = 0;
inline void use_smem(unsigned char *p, size_t capacity)
{
    smem = p;
    smem_capacity = capacity;
}

// Runs `kernel(prm)` on every block of `grid` with `threads` threads (a multiple of 32, at most
// MAX_THREADS) and `smem_bytes` of dynamic shared memory, in block order (x fastest).
// `before_block`, if set, runs before each block.
template <typename K, typename P>
void launch(K kernel, dim3 grid, unsigned threads, size_t smem_bytes, const P &prm,
            const std::function<void()> &before_block = {})
{
    if (threads < 32 || threads % 32 || threads > MAX_THREADS)
        throw std::runtime_error("block size not a multiple of 32 up to 1024");
    if (smem_bytes > smem_capacity)
        throw std::runtime_error("dynamic shared memory larger than the emulation's array");
    nt = (int)threads;
    block_dim = {threads, 1, 1};
    grid_dim = grid;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                block_idx = {x, y, z};
                if (smem) {
                    // Uninitialized shared memory reads as NaN / -1, and nothing past the
                    // launch's size may be touched.
#ifdef TRIT_EMU_ASAN
                    __asan_unpoison_memory_region(smem, smem_capacity);
#endif
                    std::memset(smem, 0xFF, smem_capacity);
                    for (size_t i = smem_bytes; i < smem_capacity; i++)
                        smem[i] = (unsigned char)(0xA5 ^ i);
#ifdef TRIT_EMU_ASAN
                    __asan_poison_memory_region(smem + smem_bytes, smem_capacity - smem_bytes);
#endif
                }
                if (before_block)
                    before_block();
                run_block([&] { kernel(prm); });
                if (smem) {
#ifdef TRIT_EMU_ASAN
                    __asan_unpoison_memory_region(smem, smem_capacity);
#endif
                    for (size_t i = smem_bytes; i < smem_capacity; i++)
                        if (smem[i] != (unsigned char)(0xA5 ^ i)) {
                            ADD_FAILURE() << "the kernel wrote shared memory byte " << i
                                          << " past its " << smem_bytes << " dynamic bytes";
                            break;
                        }
                }
            }
}

// The attention and RoPE kernels' launches: 1-D grid, 128 threads, shared memory as the test
// arranged it.
template <typename K, typename P> void launch(K kernel, int64_t blocks, const P &prm)
{
    nt = 128;
    block_dim = {128, 1, 1};
    grid_dim = {(unsigned)blocks, 1, 1};
    for (int64_t b = 0; b < blocks; b++) {
        block_idx = {(unsigned)b, 0, 0};
        run_block([&] { kernel(prm); });
    }
}
inline void warp_sync()
{
    yield_state(BAR_WARP);
}

// --- PTX instructions the kernels wrap (the tests map them into the kernels' namespaces) -------

inline void cp_async16(void *smem, const void *gmem, int src_bytes)
{
    Fiber::Copy c;
    c.dst = smem;
    std::memset(c.data, 0, 16);
    if (src_bytes)
        std::memcpy(c.data, gmem, 16);
    if ((uintptr_t)smem % 16 || (src_bytes && (uintptr_t)gmem % 16))
        ADD_FAILURE() << "cp.async with an address not on 16 bytes"; // no throw inside a fiber
    fib[cur].open.push_back(c);
}
inline void cp_async_commit()
{
    auto &F = fib[cur];
    F.groups.push_back(F.open);
    F.open.clear();
}
template <int n> inline void cp_async_wait()
{
    auto &F = fib[cur];
    while ((int)F.groups.size() > n) {
        for (auto &c : F.groups.front())
            std::memcpy(c.dst, c.data, 16);
        F.groups.erase(F.groups.begin());
    }
}
inline uint16_t rd16(const void *p)
{
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
inline void ldm(uint32_t r[4], const void *smem, bool trans)
{
    if ((uintptr_t)smem % 16)
        ADD_FAILURE() << "ldmatrix row address not on 16 bytes"; // no throw inside a fiber
    pbuf[cur] = smem;
    warp_sync();
    int lane = cur & 31, w0 = cur & ~31;
    for (int i = 0; i < 4; i++) {
        uint16_t e[2];
        for (int k = 0; k < 2; k++) {
            int row, col;
            if (!trans) {
                row = lane >> 2;
                col = 2 * (lane & 3) + k;
            } else {
                row = 2 * (lane & 3) + k;
                col = lane >> 2;
            }
            e[k] = rd16((const char *)pbuf[w0 + 8 * i + row] + 2 * col);
        }
        r[i] = (uint32_t)e[0] | ((uint32_t)e[1] << 16);
    }
    warp_sync();
}
inline void ldmatrix_x4(uint32_t r[4], const void *smem)
{
    ldm(r, smem, false);
}
inline void ldmatrix_x4_trans(uint32_t r[4], const void *smem)
{
    ldm(r, smem, true);
}
inline float h2f(uint32_t w, int hi)
{
    uint16_t b = hi ? w >> 16 : w & 0xffff;
    _Float16 h;
    std::memcpy(&h, &b, 2);
    return (float)h;
}
inline void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    uint64_t *x = xbuf[cur];
    for (int i = 0; i < 4; i++)
        x[i] = a[i];
    x[4] = b0;
    x[5] = b1;
    warp_sync();
    int w0 = cur & ~31, lane = cur & 31;
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        const uint64_t *y = xbuf[w0 + l];
        int g = l >> 2, t = l & 3;
        for (int e = 0; e < 2; e++) {
            A[g][2 * t + e] = h2f((uint32_t)y[0], e);
            A[g + 8][2 * t + e] = h2f((uint32_t)y[1], e);
            A[g][2 * t + 8 + e] = h2f((uint32_t)y[2], e);
            A[g + 8][2 * t + 8 + e] = h2f((uint32_t)y[3], e);
            B[2 * t + e][g] = h2f((uint32_t)y[4], e);
            B[2 * t + 8 + e][g] = h2f((uint32_t)y[5], e);
        }
    }
    int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; e++) {
        int row = e < 2 ? g : g + 8, col = 2 * t + (e & 1);
        float s = c[e];
        for (int k = 0; k < 16; k++)
            s += A[row][k] * B[k][col];
        c[e] = s;
    }
    warp_sync();
}
} // namespace emu

#define threadIdx (dim3{(unsigned)emu::cur, 0, 0})
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
inline void __syncthreads()
{
    emu::yield_state(emu::BAR_BLOCK);
}
inline void __syncwarp()
{
    emu::warp_sync();
}
// Every lane of the warp must take part (the kernels only use full masks). One barrier per
// shuffle: a lane's value goes to one of two slots, alternating, and a lane can only come back
// to a slot after the next warp collective's barrier, which its partners reach only after they
// have read it.
template <typename V> inline V __shfl_xor_sync(unsigned mask, V v, int off)
{
    static_assert(sizeof(V) <= 8 && std::is_trivially_copyable<V>::value, "shuffle of a scalar");
    if (mask != 0xffffffffu)
        ADD_FAILURE() << "shuffle with a partial mask"; // no throw inside a fiber
    const int lane = emu::cur & 31, w0 = emu::cur & ~31;
    const int slot = emu::shfl_count[emu::cur]++ & 1;
    std::memcpy(&emu::sbuf[emu::cur][slot], &v, sizeof(V));
    emu::warp_sync();
    V r;
    std::memcpy(&r, &emu::sbuf[w0 + (lane ^ off)][slot], sizeof(V));
    return r;
}

#endif // __FLT16_MAX__ && <ucontext.h>
