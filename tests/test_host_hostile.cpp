// test_host_hostile.cpp — the host core against hostile callers and misbehaving plugins: sized
// structs with garbage sizes, outputs whose elements share memory, aliasing writes into the KV
// cache, plugins that lie about their vtable, device count or statuses, and several threads
// using one context at once.
//
// Ops are driven through the fake-ops plugin (tests/plugins/fake_plugin.c), which runs no real
// kernel: it counts the calls that get past the host, checks that the host kept its promises
// about every tensor, and marks its outputs with 0x42. So these tests check the host's
// validation, not any kernel, and run whatever state the real backends are in.
#include <dlfcn.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common.h"

namespace {

struct Ctx {
    trit_context *c = nullptr;
    ~Ctx() { trit_context_destroy(c); }
};

std::string fake_dir(const char *variant)
{
    return std::string(TRIT_TEST_FAKE_PLUGIN_DIR) + "/" + variant;
}

trit_status make_context(Ctx &ctx, const std::string &dirs, const char *plugins)
{
    trit_context_options o{};
    o.size = sizeof(o);
    o.plugin_path = dirs.c_str();
    o.plugins = plugins;
    return trit_context_create(&o, &ctx.c);
}

trit_device *device_named(trit_context *c, const std::string &label)
{
    for (uint32_t i = 0; i < trit_device_count(c); i++) {
        trit_device *d = nullptr;
        EXPECT_EQ(TRIT_OK, trit_device_get(c, i, &d));
        if (label == trit_device_label(d))
            return d;
    }
    return nullptr;
}

trit_plugin_info plugin_named(trit_context *c, const std::string &name)
{
    for (uint32_t i = 0; i < trit_context_plugin_count(c); i++) {
        trit_plugin_info info{};
        info.size = sizeof(info);
        EXPECT_EQ(TRIT_OK, trit_context_plugin_info(c, i, &info));
        if (name == info.name)
            return info;
    }
    ADD_FAILURE() << "no plugin " << name;
    return trit_plugin_info{};
}

bool contains(const std::string &haystack, const std::string &needle)
{
    return haystack.find(needle) != std::string::npos;
}

// Mirrors `fake_hooks` in fake_plugin.c.
struct FakeHooks {
    int op_calls;
    int contract_breaks;
    int fill_status;
};

// Finds the hooks of a fake plugin a live context has loaded.
struct HooksHandle {
    void *lib = nullptr;
    FakeHooks *hooks = nullptr;
    explicit HooksHandle(const char *variant)
    {
        std::string path = fake_dir(variant) + "/libtrit-plugin-fake-" + variant + ".so";
        lib = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
        if (lib)
            hooks = static_cast<FakeHooks *>(dlsym(lib, "trit_fake_hooks"));
    }
    ~HooksHandle()
    {
        if (lib)
            dlclose(lib);
    }
};

// Tests that drive ops call open_fake_ops(): a context with the two-device fake-ops plugin and
// a stream on its first device. Objects made here are released with the context.
class HostHostile : public ::testing::Test {
  protected:
    void open_fake_ops()
    {
        TRIT_ASSERT_OK(make_context(ctx_, fake_dir("ops"), "fake-ops"));
        ASSERT_EQ(2u, trit_device_count(ctx_.c));
        TRIT_ASSERT_OK(trit_device_get(ctx_.c, 0, &dev_));
        TRIT_ASSERT_OK(trit_device_get(ctx_.c, 1, &dev1_));
        TRIT_ASSERT_OK(trit_stream_create(dev_, &s_));
        handle_ = std::make_unique<HooksHandle>("ops");
        ASSERT_NE(nullptr, handle_->hooks) << dlerror();
        hooks_ = handle_->hooks;
        *hooks_ = FakeHooks{0, 0, 0};
    }
    void TearDown() override
    {
        if (hooks_) {
            EXPECT_EQ(0, hooks_->contract_breaks) << "the host let a malformed call through";
        }
        handle_.reset();
    }

    trit_buffer *buffer(uint64_t bytes, uint8_t fill = 0x11, trit_device *d = nullptr)
    {
        trit_buffer *b = nullptr;
        trit_stream *s = s_;
        trit_stream *other = nullptr;
        if (d && d != dev_) {
            EXPECT_EQ(TRIT_OK, trit_stream_create(d, &other));
            s = other;
        }
        EXPECT_EQ(TRIT_OK, trit_buffer_alloc(d ? d : dev_, bytes, &b)) << trit_last_error();
        EXPECT_EQ(TRIT_OK, trit_buffer_fill(s, b, 0, fill, bytes)) << trit_last_error();
        trit_stream_destroy(other);
        return b;
    }
    trit_tensor tensor(trit_buffer *b, trit_dtype dt, std::vector<int64_t> shape,
                       std::vector<int64_t> strides = {}, uint64_t offset = 0)
    {
        trit_tensor t{};
        EXPECT_EQ(TRIT_OK, trit_tensor_make(b, offset, dt, (uint32_t)shape.size(), shape.data(),
                                            strides.empty() ? nullptr : strides.data(), &t))
            << trit_last_error();
        return t;
    }
    std::vector<uint8_t> bytes(trit_buffer *b)
    {
        std::vector<uint8_t> out(trit_buffer_size(b));
        EXPECT_EQ(TRIT_OK, trit_buffer_download(s_, b, 0, out.data(), out.size()));
        EXPECT_EQ(TRIT_OK, trit_stream_sync(s_));
        return out;
    }
    bool all_bytes(trit_buffer *b, uint8_t v)
    {
        for (uint8_t x : bytes(b))
            if (x != v)
                return false;
        return true;
    }
    trit_ternary *matrix(int64_t rows, int64_t cols)
    {
        std::vector<int8_t> w = tt::random_ternary((size_t)(rows * cols), 7);
        trit_ternary_desc desc{};
        desc.size = sizeof(desc);
        desc.rows = rows;
        desc.cols = cols;
        desc.format = TRIT_WEIGHTS_I8;
        desc.data = w.data();
        desc.data_bytes = w.size();
        trit_ternary *t = nullptr;
        EXPECT_EQ(TRIT_OK, trit_ternary_upload(dev_, &desc, &t)) << trit_last_error();
        return t;
    }

    Ctx ctx_;
    trit_device *dev_ = nullptr, *dev1_ = nullptr;
    trit_stream *s_ = nullptr;
    std::unique_ptr<HooksHandle> handle_;
    FakeHooks *hooks_ = nullptr;
};

} // namespace

// --- plugins that break the contract ------------------------------------------------------------

// The fake-ragged plugin reports a vtable size that ends 4 bytes into the gemv slot. Zeroing from
// that size on left half of a pointer in the slot: non-NULL, so the host took gemv as present
// and would have called a garbage address.
TEST_F(HostHostile, VtableSizeEndingInsideASlotLeavesThatSlotEmpty)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_context(ctx, fake_dir("ragged"), "fake-ragged"));
    EXPECT_EQ(TRIT_PLUGIN_LOADED, plugin_named(ctx.c, "fake-ragged").state);
    ASSERT_EQ(2u, trit_device_count(ctx.c));
    trit_device *d = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx.c, 0, &d));
    trit_op_desc desc{};
    desc.size = sizeof(desc);
    desc.op = TRIT_OP_GEMV;
    int ok = 1;
    char reason[256] = "";
    TRIT_ASSERT_OK(trit_device_supports(d, &desc, &ok, reason, sizeof(reason)));
    EXPECT_EQ(0, ok);
    EXPECT_TRUE(contains(reason, "does not implement")) << reason;
}

// A plugin claiming UINT32_MAX devices made the host size its device array by the sum of all
// counts: next to a plugin with 2 devices the uint32 sum wrapped to 1, and opening the real
// devices wrote past that one-element array (ASan: heap-buffer-overflow). Alone, the allocation
// of UINT32_MAX devices failed and took the whole context, every other backend included, down.
TEST_F(HostHostile, PluginClaimingBillionsOfDevicesIsSkippedAndOthersStillLoad)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_context(ctx, fake_dir("current") + ":" + fake_dir("manydev"),
                                "fake-current,fake-manydev"));
    trit_plugin_info many = plugin_named(ctx.c, "fake-manydev");
    EXPECT_EQ(TRIT_PLUGIN_SKIPPED, many.state);
    EXPECT_TRUE(contains(many.reason, "4294967295")) << many.reason;
    EXPECT_EQ(TRIT_PLUGIN_LOADED, plugin_named(ctx.c, "fake-current").state);
    EXPECT_EQ(2u, trit_device_count(ctx.c));
}

// fake-hostile fills name, vendor and driver to the last byte. The host copied them as they
// came, so a caller printing info.name read past the array.
TEST_F(HostHostile, DeviceInfoStringsEndInsideTheirArraysWhateverThePluginWrote)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_context(ctx, fake_dir("hostile"), "fake-hostile"));
    ASSERT_EQ(2u, trit_device_count(ctx.c));
    trit_device *d = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx.c, 0, &d));
    trit_device_info info{};
    info.size = sizeof(info);
    TRIT_ASSERT_OK(trit_device_get_info(d, &info));
    EXPECT_NE(nullptr, memchr(info.name, 0, sizeof(info.name)));
    EXPECT_NE(nullptr, memchr(info.vendor, 0, sizeof(info.vendor)));
    EXPECT_NE(nullptr, memchr(info.driver, 0, sizeof(info.driver)));
    EXPECT_EQ('N', info.name[0]);
}

// fake-hostile's `supports` fills the reason buffer with no terminator. The caller's buffer came
// back unterminated, and inside an op the host formatted its own 256-byte reason buffer with
// "%s", reading past it on the stack (ASan: stack-buffer-overflow).
TEST_F(HostHostile, SupportsReasonIsTerminatedWhateverThePluginWrote)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_context(ctx, fake_dir("hostile"), "fake-hostile"));
    trit_device *d = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx.c, 0, &d));
    trit_op_desc desc{};
    desc.size = sizeof(desc);
    desc.op = TRIT_OP_GEMV;
    int ok = 1;
    char reason[16];
    memset(reason, '#', sizeof(reason));
    TRIT_ASSERT_OK(trit_device_supports(d, &desc, &ok, reason, sizeof(reason)));
    EXPECT_EQ(0, ok);
    EXPECT_NE(nullptr, memchr(reason, 0, sizeof(reason)));

    // The same through an op, which asks `supports` with its own buffer.
    trit_stream *s = nullptr;
    TRIT_ASSERT_OK(trit_stream_create(d, &s));
    std::vector<int8_t> w(4 * 8, 1);
    trit_ternary_desc td{};
    td.size = sizeof(td);
    td.rows = 4;
    td.cols = 8;
    td.format = TRIT_WEIGHTS_I8;
    td.data = w.data();
    td.data_bytes = w.size();
    trit_ternary *t = nullptr;
    TRIT_ASSERT_OK(trit_ternary_upload(d, &td, &t));
    trit_buffer *bx = nullptr, *by = nullptr;
    TRIT_ASSERT_OK(trit_buffer_alloc(d, 32, &bx));
    TRIT_ASSERT_OK(trit_buffer_alloc(d, 16, &by));
    int64_t kx[1] = {8}, ky[1] = {4};
    trit_tensor x, y;
    TRIT_ASSERT_OK(trit_tensor_make(bx, 0, TRIT_DTYPE_F32, 1, kx, nullptr, &x));
    TRIT_ASSERT_OK(trit_tensor_make(by, 0, TRIT_DTYPE_F32, 1, ky, nullptr, &y));
    EXPECT_EQ(TRIT_ERROR_UNSUPPORTED, trit_ternary_gemv(s, t, &x, &y, nullptr));
    EXPECT_TRUE(contains(trit_last_error(), "RRRR")) << trit_last_error();
}

// fake-hostile's buffer_fill returns 4242 and says nothing. That number reached the caller, for
// whom trit_status_string says "unknown trit_status".
TEST_F(HostHostile, UnknownStatusFromAPluginBecomesPluginError)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_context(ctx, fake_dir("hostile"), "fake-hostile"));
    trit_device *d = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx.c, 0, &d));
    trit_stream *s = nullptr;
    trit_buffer *b = nullptr;
    TRIT_ASSERT_OK(trit_stream_create(d, &s));
    TRIT_ASSERT_OK(trit_buffer_alloc(d, 64, &b));
    EXPECT_EQ(TRIT_ERROR_PLUGIN, trit_buffer_fill(s, b, 0, 1, 64));
    std::string err = trit_last_error();
    EXPECT_TRUE(contains(err, "fake-hostile:0")) << err;
    EXPECT_TRUE(contains(err, "4242")) << err;
}

// --- sized structs ----------------------------------------------------------------------------

// Failing calls write no output: `reason` was cleared before the op was found to be unknown.
TEST_F(HostHostile, SupportsWithUnknownOpLeavesReasonUntouched)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_context(ctx, fake_dir("ops"), "fake-ops"));
    trit_device *d = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx.c, 0, &d));
    trit_op_desc desc{};
    desc.size = sizeof(desc);
    desc.op = (trit_op)99;
    int ok = 7;
    char reason[8] = "keep me";
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_device_supports(d, &desc, &ok, reason, sizeof(reason)));
    EXPECT_STREQ("keep me", reason);
    EXPECT_EQ(7, ok);
}

// params->size = 20 ends halfway through the rmsnorm_weight pointer. The host copied those 20
// bytes over its defaults, leaving the low half of the caller's pointer and a zero high half,
// then dereferenced it (SIGSEGV).
TEST_F(HostHostile, GemvRejectsParamsSizeThatEndsInsideAPointer)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    trit_ternary *w = matrix(8, 8);
    trit_buffer *bx = buffer(32), *by = buffer(32), *bg = buffer(32);
    trit_tensor x = tensor(bx, TRIT_DTYPE_F32, {1, 8}), y = tensor(by, TRIT_DTYPE_F32, {1, 8});
    auto g = std::make_unique<trit_tensor>(tensor(bg, TRIT_DTYPE_F32, {8}));
    trit_gemv_params p;
    trit_gemv_params_init(&p);
    p.rmsnorm_weight = g.get();
    p.size = offsetof(trit_gemv_params, rmsnorm_weight) + 4;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_gemv(s_, w, &x, &y, &p));
    EXPECT_TRUE(contains(trit_last_error(), "params->size is 20")) << trit_last_error();
    EXPECT_EQ(0, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(by, 0x11));
}

// The same for the KV cache: a size ending inside block_table made a half pointer that turned
// the cache "paged"; it was refused only because max_blocks_per_seq, past the size, read as 0,
// with a message about max_blocks_per_seq instead of the size.
TEST_F(HostHostile, AttentionRejectsCacheSizeThatEndsInsideThePointerToTheBlockTable)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    trit_buffer *bq = buffer(256), *bo = buffer(256), *bk = buffer(16 * 256),
                *bv = buffer(16 * 256);
    trit_tensor q = tensor(bq, TRIT_DTYPE_F32, {1, 1, 64}),
                o = tensor(bo, TRIT_DTYPE_F32, {1, 1, 64});
    auto table = std::make_unique<int32_t[]>(1);
    table[0] = 0;
    trit_kv_cache c{};
    c.size = offsetof(trit_kv_cache, block_table) + 4;
    c.k = tensor(bk, TRIT_DTYPE_F32, {1, 16, 1, 64});
    c.v = tensor(bv, TRIT_DTYPE_F32, {1, 16, 1, 64});
    c.block_table = table.get();
    c.max_blocks_per_seq = 1;
    int32_t ql[1] = {1}, kl[1] = {1};
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_attention(s_, &q, &c, 1, ql, kl, &o, nullptr));
    EXPECT_TRUE(contains(trit_last_error(), "cache->size")) << trit_last_error();
    EXPECT_EQ(0, hooks_->op_calls);
}

// An uninitialised `size` is usually a large number: only trit_context_create rejected it (above
// 4096); every other sized struct silently took whatever it was.
TEST_F(HostHostile, GarbageStructSizesAreRejectedEverywhere)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    const size_t garbage[] = {0x00007ffd5e3a91c8ull, 4097, 13};
    trit_ternary *w = matrix(8, 8);
    trit_buffer *bx = buffer(32), *by = buffer(32);
    trit_tensor x = tensor(bx, TRIT_DTYPE_F32, {1, 8}), y = tensor(by, TRIT_DTYPE_F32, {1, 8});
    trit_buffer *bq = buffer(256), *bo = buffer(256), *bk = buffer(256), *bv = buffer(256);
    trit_tensor q = tensor(bq, TRIT_DTYPE_F32, {1, 1, 64}),
                o = tensor(bo, TRIT_DTYPE_F32, {1, 1, 64});
    trit_tensor kn = tensor(bq, TRIT_DTYPE_F32, {1, 1, 64});
    trit_kv_cache good{};
    good.size = sizeof(good);
    good.k = tensor(bk, TRIT_DTYPE_F32, {1, 1, 1, 64});
    good.v = tensor(bv, TRIT_DTYPE_F32, {1, 1, 1, 64});
    int32_t ql[1] = {1}, kl[1] = {1}, sp[1] = {0};
    std::vector<int8_t> wd(64, 1);
    for (size_t size : garbage) {
        SCOPED_TRACE(size);
        trit_gemv_params gp;
        trit_gemv_params_init(&gp);
        gp.size = size;
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_gemv(s_, w, &x, &y, &gp));
        EXPECT_TRUE(contains(trit_last_error(), "trit_gemv_params")) << trit_last_error();

        trit_attention_params ap;
        trit_attention_params_init(&ap);
        ap.size = size;
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_attention(s_, &q, &good, 1, ql, kl, &o, &ap));
        trit_kv_cache bad = good;
        bad.size = size;
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
                  trit_attention(s_, &q, &bad, 1, ql, kl, &o, nullptr));

        trit_rope_params rp;
        trit_rope_params_init(&rp);
        rp.size = size;
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
                  trit_rope_kv_append(s_, nullptr, &kn, &kn, &good, 1, ql, sp, &rp));

        trit_op_desc desc{};
        desc.size = size;
        int ok = 0;
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_device_supports(dev_, &desc, &ok, nullptr, 0));

        trit_ternary_desc td{};
        td.size = size;
        td.rows = td.cols = 8;
        td.data = wd.data();
        td.data_bytes = wd.size();
        trit_ternary *t = nullptr;
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_upload(dev_, &td, &t));

        trit_device_info info{};
        info.size = size;
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_device_get_info(dev_, &info));

        trit_context_options co{};
        co.size = size;
        trit_context *c = nullptr;
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_context_create(&co, &c));
        EXPECT_EQ(nullptr, c);
    }
    EXPECT_EQ(0, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(by, 0x11));
    EXPECT_TRUE(all_bytes(bo, 0x11));
}

// --- GEMV ---------------------------------------------------------------------------------------

TEST_F(HostHostile, GemvRejectsOutputAliasingInputAndLeavesItUntouched)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    trit_ternary *w = matrix(8, 8);
    trit_buffer *b = buffer(64);
    trit_tensor x = tensor(b, TRIT_DTYPE_F32, {1, 8}),
                y = tensor(b, TRIT_DTYPE_F32, {1, 8}, {}, 16);
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_gemv(s_, w, &x, &y, nullptr));
    EXPECT_TRUE(contains(trit_last_error(), "overlaps input x")) << trit_last_error();
    EXPECT_EQ(0, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(b, 0x11));
}

// y = W·x + x with M = K: the residual is an input like x, and two inputs may share memory. The
// host rejected it, calling the residual an "output" that overlaps x.
TEST_F(HostHostile, GemvAcceptsResidualThatIsAlsoTheInput)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    trit_ternary *w = matrix(8, 8);
    trit_buffer *bx = buffer(32), *by = buffer(32);
    trit_tensor x = tensor(bx, TRIT_DTYPE_F32, {1, 8}), y = tensor(by, TRIT_DTYPE_F32, {1, 8});
    trit_gemv_params p;
    trit_gemv_params_init(&p);
    p.residual = &x;
    TRIT_EXPECT_OK(trit_ternary_gemv(s_, w, &x, &y, &p));
    EXPECT_EQ(1, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(by, 0x42));
    // A residual that overlaps y without being y is still refused.
    trit_buffer *b = buffer(64);
    trit_tensor y2 = tensor(b, TRIT_DTYPE_F32, {1, 8}),
                r2 = tensor(b, TRIT_DTYPE_F32, {1, 8}, {}, 4);
    p.residual = &r2;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_gemv(s_, w, &x, &y2, &p));
    EXPECT_EQ(1, hooks_->op_calls);
}

// A sweep of bad calls: each gets a clear status and the plugin never sees it.
TEST_F(HostHostile, InvalidGemvArgumentsNeverReachThePlugin)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    trit_ternary *w = matrix(8, 8);
    trit_buffer *bx = buffer(64), *by = buffer(64), *bo = buffer(64, 0x11, dev1_);
    trit_tensor x = tensor(bx, TRIT_DTYPE_F32, {2, 8}), y = tensor(by, TRIT_DTYPE_F32, {2, 8});
    trit_buffer *bg = buffer(32);
    trit_tensor g = tensor(bg, TRIT_DTYPE_F32, {8}), y_row = tensor(by, TRIT_DTYPE_F32, {8});
    auto with = [](trit_tensor t, const std::function<void(trit_tensor &)> &f) {
        f(t);
        return t;
    };
    struct Case {
        const char *what;
        trit_status want;
        trit_tensor x, y;
        std::function<void(trit_gemv_params &)> tweak;
    };
    const Case cases[] = {
        {"rows of y share memory", TRIT_ERROR_INVALID_ARGUMENT, x,
         with(y, [](trit_tensor &t) { t.strides[0] = 4; }), nullptr},
        {"y with stride 0 over tokens", TRIT_ERROR_INVALID_ARGUMENT, x,
         with(y, [](trit_tensor &t) { t.strides[0] = 0; }), nullptr},
        {"negative extent", TRIT_ERROR_INVALID_ARGUMENT,
         with(x, [](trit_tensor &t) { t.shape[0] = -2; }), y, nullptr},
        {"stride that overflows", TRIT_ERROR_OVERFLOW,
         with(x, [](trit_tensor &t) { t.strides[0] = INT64_MAX; }), y, nullptr},
        {"view past the buffer", TRIT_ERROR_OUT_OF_BOUNDS, x,
         with(y, [](trit_tensor &t) { t.offset = 8; }), nullptr},
        {"rank 0", TRIT_ERROR_INVALID_ARGUMENT, with(x, [](trit_tensor &t) { t.rank = 0; }), y,
         nullptr},
        {"rank 9", TRIT_ERROR_INVALID_ARGUMENT, with(x, [](trit_tensor &t) { t.rank = 9; }), y,
         nullptr},
        {"no buffer", TRIT_ERROR_INVALID_ARGUMENT,
         with(x, [](trit_tensor &t) { t.buffer = nullptr; }), y, nullptr},
        {"unknown dtype", TRIT_ERROR_INVALID_ARGUMENT,
         with(x, [](trit_tensor &t) { t.dtype = (trit_dtype)77; }), y, nullptr},
        {"y on the other device", TRIT_ERROR_WRONG_DEVICE, x, tensor(bo, TRIT_DTYPE_F32, {2, 8}),
         nullptr},
        {"unknown path", TRIT_ERROR_INVALID_ARGUMENT, x, y,
         [](trit_gemv_params &p) { p.path = (trit_gemv_path)5; }},
        {"unknown activation", TRIT_ERROR_INVALID_ARGUMENT, x, y,
         [](trit_gemv_params &p) { p.act = (trit_activation)-1; }},
        {"NaN eps", TRIT_ERROR_INVALID_ARGUMENT, x, y,
         [&g](trit_gemv_params &p) {
             p.rmsnorm_weight = &g;
             p.rmsnorm_eps = NAN;
         }},
        {"y aliasing the rmsnorm weight", TRIT_ERROR_INVALID_ARGUMENT, x, y,
         [&y_row](trit_gemv_params &p) { p.rmsnorm_weight = &y_row; }},
        {"accumulators on the float path", TRIT_ERROR_INVALID_ARGUMENT, x, y,
         [&y](trit_gemv_params &p) { p.accumulators = &y; }},
    };
    for (const Case &c : cases) {
        SCOPED_TRACE(c.what);
        trit_gemv_params p;
        trit_gemv_params_init(&p);
        if (c.tweak)
            c.tweak(p);
        trit_tensor out = c.y;
        EXPECT_EQ(c.want, trit_ternary_gemv(s_, w, &c.x, &out, &p)) << trit_last_error();
        EXPECT_STRNE("", trit_last_error());
    }
    EXPECT_EQ(0, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(by, 0x11));
}

// A tensor of another context is on another device, whatever backend both are.
TEST_F(HostHostile, OpsRejectTensorsFromAnotherContext)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    Ctx other;
    TRIT_ASSERT_OK(make_context(other, fake_dir("ops"), "fake-ops"));
    trit_device *od = nullptr;
    TRIT_ASSERT_OK(trit_device_get(other.c, 0, &od));
    trit_buffer *ob = nullptr;
    TRIT_ASSERT_OK(trit_buffer_alloc(od, 32, &ob));
    trit_ternary *w = matrix(8, 8);
    trit_buffer *bx = buffer(32);
    trit_tensor x = tensor(bx, TRIT_DTYPE_F32, {1, 8}), y = tensor(ob, TRIT_DTYPE_F32, {1, 8});
    EXPECT_EQ(TRIT_ERROR_WRONG_DEVICE, trit_ternary_gemv(s_, w, &x, &y, nullptr));
    EXPECT_EQ(0, hooks_->op_calls);
}

// --- attention ----------------------------------------------------------------------------------

// out[t, h, :] stored head-major (all tokens of head 0, then head 1): no element is written twice,
// but the host only accepted strides that shrink from outer to inner dim and called this layout
// "overlapping".
TEST_F(HostHostile, AttentionAcceptsHeadMajorOutput)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    const int64_t T = 3, H = 2, D = 64;
    trit_buffer *bq = buffer(T * H * D * 4), *bo = buffer(T * H * D * 4);
    trit_buffer *bk = buffer(4 * D * 4), *bv = buffer(4 * D * 4);
    trit_tensor q = tensor(bq, TRIT_DTYPE_F32, {T, H, D});
    trit_tensor o = tensor(bo, TRIT_DTYPE_F32, {T, H, D}, {D, T * D, 1});
    trit_kv_cache c{};
    c.size = sizeof(c);
    c.k = tensor(bk, TRIT_DTYPE_F32, {1, 4, 1, D});
    c.v = tensor(bv, TRIT_DTYPE_F32, {1, 4, 1, D});
    int32_t ql[1] = {3}, kl[1] = {4};
    TRIT_EXPECT_OK(trit_attention(s_, &q, &c, 1, ql, kl, &o, nullptr));
    EXPECT_EQ(1, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(bo, 0x42));

    // Permuted strides that do revisit elements are still refused, in any dim order.
    const std::vector<int64_t> overlapping[] = {
        {D, D, 1}, {0, T * D, 1}, {H * D, D / 2, 1}, {D, 2 * D, 1}};
    trit_buffer *big = buffer(4 * T * H * D * 4);
    for (const auto &strides : overlapping) {
        SCOPED_TRACE(strides[0]);
        trit_tensor bad = tensor(big, TRIT_DTYPE_F32, {T, H, D}, strides);
        EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
                  trit_attention(s_, &q, &c, 1, ql, kl, &bad, nullptr));
        EXPECT_TRUE(contains(trit_last_error(), "overlapping")) << trit_last_error();
    }
    EXPECT_EQ(1, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(big, 0x11));
}

// --- RoPE + KV append: the cache is the output ------------------------------------------------

// Cache strides of 0 over sequences make every sequence's row p the same memory. The host checked
// the cache only as an input, so two tokens were appended into one slot.
TEST_F(HostHostile, RopeRejectsCacheWhoseSequencesShareMemory)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    const int64_t D = 64;
    trit_buffer *bn = buffer(2 * D * 4), *bvn = buffer(2 * D * 4);
    trit_buffer *bk = buffer(4 * D * 4), *bv = buffer(2 * 4 * D * 4);
    trit_tensor kn = tensor(bn, TRIT_DTYPE_F32, {2, 1, D}),
                vn = tensor(bvn, TRIT_DTYPE_F32, {2, 1, D});
    trit_kv_cache c{};
    c.size = sizeof(c);
    c.k = tensor(bk, TRIT_DTYPE_F32, {2, 4, 1, D}, {0, D, D, 1});
    c.v = tensor(bv, TRIT_DTYPE_F32, {2, 4, 1, D});
    int32_t ql[2] = {1, 1}, sp[2] = {0, 0};
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_rope_kv_append(s_, nullptr, &kn, &vn, &c, 2, ql, sp, nullptr));
    EXPECT_TRUE(contains(trit_last_error(), "cache k")) << trit_last_error();
    std::swap(c.k, c.v);
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_rope_kv_append(s_, nullptr, &kn, &vn, &c, 2, ql, sp, nullptr));
    EXPECT_TRUE(contains(trit_last_error(), "cache v")) << trit_last_error();
    EXPECT_EQ(0, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(bk, 0x11));
    EXPECT_TRUE(all_bytes(bv, 0x11));
}

// Two sequences whose block tables send the token each appends to the same block row: two
// writers for one slot, and which one wins depends on the kernel's scheduling.
TEST_F(HostHostile, RopeRejectsTwoSequencesAppendingToOneBlockRow)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    const int64_t D = 64, P = 16, B = 4;
    trit_buffer *bk = buffer(B * P * D * 4), *bv = buffer(B * P * D * 4);
    trit_buffer *bn = buffer(2 * D * 4), *bvn = buffer(2 * D * 4);
    trit_tensor kn = tensor(bn, TRIT_DTYPE_F32, {2, 1, D}),
                vn = tensor(bvn, TRIT_DTYPE_F32, {2, 1, D});
    int32_t table[4] = {1, 2, 1, 3}; // both sequences start in block 1
    trit_kv_cache c{};
    c.size = sizeof(c);
    c.k = tensor(bk, TRIT_DTYPE_F32, {B, P, 1, D});
    c.v = tensor(bv, TRIT_DTYPE_F32, {B, P, 1, D});
    c.block_table = table;
    c.max_blocks_per_seq = 2;
    int32_t ql[2] = {1, 1}, sp[2] = {3, 3};
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_rope_kv_append(s_, nullptr, &kn, &vn, &c, 2, ql, sp, nullptr));
    EXPECT_TRUE(
        contains(trit_last_error(), "sequences 0 and 1 both append to row 3 of cache block 1"))
        << trit_last_error();
    EXPECT_EQ(0, hooks_->op_calls);
    EXPECT_TRUE(all_bytes(bk, 0x11));

    // Different rows of a shared block, and a shared prefix block nobody appends to, are fine.
    sp[1] = 4;
    TRIT_EXPECT_OK(trit_rope_kv_append(s_, nullptr, &kn, &vn, &c, 2, ql, sp, nullptr));
    int32_t prefix[4] = {0, 1, 0, 2};
    c.block_table = prefix;
    sp[0] = sp[1] = 16;
    TRIT_EXPECT_OK(trit_rope_kv_append(s_, nullptr, &kn, &vn, &c, 2, ql, sp, nullptr));
    EXPECT_EQ(2, hooks_->op_calls);
}

// One sequence whose table names the same block twice writes tokens 0 and 16 into one row.
TEST_F(HostHostile, RopeRejectsBlockTableThatRepeatsABlockItAppendsTo)
{
    ASSERT_NO_FATAL_FAILURE(open_fake_ops());
    const int64_t D = 64, P = 16, B = 4, T = 17;
    trit_buffer *bk = buffer(B * P * D * 4), *bv = buffer(B * P * D * 4);
    trit_buffer *bn = buffer(T * D * 4), *bvn = buffer(T * D * 4);
    trit_tensor kn = tensor(bn, TRIT_DTYPE_F32, {T, 1, D}),
                vn = tensor(bvn, TRIT_DTYPE_F32, {T, 1, D});
    int32_t table[2] = {2, 2};
    trit_kv_cache c{};
    c.size = sizeof(c);
    c.k = tensor(bk, TRIT_DTYPE_F32, {B, P, 1, D});
    c.v = tensor(bv, TRIT_DTYPE_F32, {B, P, 1, D});
    c.block_table = table;
    c.max_blocks_per_seq = 2;
    int32_t ql[1] = {(int32_t)T}, sp[1] = {0};
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_rope_kv_append(s_, nullptr, &kn, &vn, &c, 1, ql, sp, nullptr));
    EXPECT_TRUE(contains(trit_last_error(), "sequence 0 appends twice to row 0 of cache block 2"))
        << trit_last_error();
    EXPECT_EQ(0, hooks_->op_calls);
    table[1] = 3;
    TRIT_EXPECT_OK(trit_rope_kv_append(s_, nullptr, &kn, &vn, &c, 1, ql, sp, nullptr));
    EXPECT_EQ(1, hooks_->op_calls);
}

// --- several threads, one context -------------------------------------------------------------

// Each thread has its own streams (on the CPU and on a fake device, so copies between them are
// host-staged) and does uploads, fills, same-device and cross-backend copies, downloads, a
// failing call whose sentence must be its own, ternary uploads and GEMV; meanwhile the
// context's object list takes creates and frees from every thread, and some objects are left
// for trit_context_destroy (the sanitizer run checks nothing leaks).
TEST_F(HostHostile, StreamsOnSeveralThreadsKeepTheirDataApart)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_context(ctx, std::string(TRIT_TEST_PLUGIN_DIR) + ":" + fake_dir("current"),
                                "cpu,fake-current"));
    trit_device *cpu = device_named(ctx.c, "cpu:0");
    trit_device *fake = device_named(ctx.c, "fake-current:0");
    ASSERT_TRUE(cpu && fake) << "needs the CPU plugin: " << plugin_named(ctx.c, "cpu").reason;
    trit_op_desc desc{};
    desc.size = sizeof(desc);
    desc.op = TRIT_OP_GEMV;
    desc.n = 1;
    int gemv_ok = 0;
    TRIT_ASSERT_OK(trit_device_supports(cpu, &desc, &gemv_ok, nullptr, 0));
    EXPECT_EQ(1, gemv_ok) << "the CPU plugin has no f32 GEMV";

    const int kThreads = 4, kIters = 4;
    auto work = [&](int id) {
        trit_stream *s = nullptr, *sf = nullptr;
        ASSERT_EQ(TRIT_OK, trit_stream_create(cpu, &s)) << trit_last_error();
        ASSERT_EQ(TRIT_OK, trit_stream_create(fake, &sf)) << trit_last_error();
        for (int it = 0; it < kIters; it++) {
            // Odd iterations are large enough for the CPU plugin's parallel transfer path.
            const uint64_t n = (it % 2) ? (5u << 20) + 3 * id : 4093 + 7 * id;
            std::vector<uint8_t> data(n), back(n);
            for (uint64_t i = 0; i < n; i++)
                data[i] = (uint8_t)(i * 7 + id * 13 + it);
            trit_buffer *a = nullptr, *b = nullptr, *f = nullptr;
            ASSERT_EQ(TRIT_OK, trit_buffer_alloc(cpu, n, &a));
            ASSERT_EQ(TRIT_OK, trit_buffer_alloc(cpu, n, &b));
            ASSERT_EQ(TRIT_OK, trit_buffer_alloc(fake, n, &f));
            EXPECT_EQ(TRIT_OK, trit_buffer_upload(s, a, 0, data.data(), n)) << trit_last_error();
            EXPECT_EQ(TRIT_OK, trit_buffer_fill(s, b, 0, (uint8_t)id, n)) << trit_last_error();
            EXPECT_EQ(TRIT_OK, trit_buffer_download(s, b, 0, back.data(), n));
            EXPECT_EQ(TRIT_OK, trit_stream_sync(s));
            for (uint64_t i = 0; i < n; i += 251)
                ASSERT_EQ((uint8_t)id, back[i]) << i;
            EXPECT_EQ(TRIT_OK, trit_buffer_copy(s, a, 0, b, 0, n)) << trit_last_error();
            EXPECT_EQ(TRIT_OK, trit_buffer_copy(s, b, 0, f, 0, n)) << trit_last_error();
            EXPECT_EQ(TRIT_OK, trit_buffer_fill(s, a, 0, 0, n));
            EXPECT_EQ(TRIT_OK, trit_buffer_copy(sf, f, 0, a, 0, n)) << trit_last_error();
            EXPECT_EQ(TRIT_OK, trit_buffer_download(s, a, 0, back.data(), n));
            EXPECT_EQ(TRIT_OK, trit_stream_sync(s));
            EXPECT_TRUE(data == back) << "thread " << id << " iteration " << it;

            // This thread's failure, and only it, is in this thread's sentence.
            EXPECT_EQ(TRIT_ERROR_OUT_OF_BOUNDS, trit_buffer_download(s, a, n, back.data(), 1));
            EXPECT_TRUE(contains(trit_last_error(), std::to_string(n) + "-byte buffer"))
                << trit_last_error();
            std::this_thread::yield();
            EXPECT_TRUE(contains(trit_last_error(), std::to_string(n) + "-byte buffer"));

            // Churn the object list.
            for (int k = 0; k < 20; k++) {
                trit_stream *tmp = nullptr;
                trit_buffer *tb = nullptr;
                EXPECT_EQ(TRIT_OK, trit_stream_create(k % 2 ? cpu : fake, &tmp));
                EXPECT_EQ(TRIT_OK, trit_buffer_alloc(k % 2 ? fake : cpu, 64 + k, &tb));
                trit_buffer_free(tb);
                trit_stream_destroy(tmp);
            }
            trit_buffer_free(b);
            if (it % 2)
                trit_buffer_free(a); // the others are left to the context
            trit_buffer_free(f);

            if (!gemv_ok)
                continue;
            const int64_t M = 33 + id, K = 70 + 3 * id;
            auto w = tt::random_ternary((size_t)(M * K), 100 + id * 10 + it);
            tt::Ternary t = tt::upload_ternary(cpu, w, M, K);
            auto xv = tt::random_floats((size_t)K, 200 + id * 10 + it);
            tt::DeviceTensor x = tt::upload(cpu, s, TRIT_DTYPE_F32, {1, K}, xv);
            tt::DeviceTensor y = tt::poisoned(cpu, s, TRIT_DTYPE_F32, {1, M});
            EXPECT_EQ(TRIT_OK, trit_ternary_gemv(s, t, &x.t, &y.t, nullptr)) << trit_last_error();
            std::vector<float> got = tt::download(s, y.t);
            std::vector<double> ref((size_t)M);
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++)
                    ref[(size_t)m] += (double)w[(size_t)(m * K + k)] * xv[(size_t)k];
            EXPECT_LT(tt::rel_error(got, ref), 1e-5) << "thread " << id << " iteration " << it;
        }
        trit_stream_destroy(sf);
        trit_stream_destroy(s);
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; i++)
        threads.emplace_back(work, i);
    for (auto &t : threads)
        t.join();
}

// Contexts made and destroyed on several threads at once share nothing.
TEST_F(HostHostile, ContextsCreatedOnSeveralThreadsAtOnceAreIndependent)
{
    std::atomic<int> failures{0};
    auto work = [&](int id) {
        for (int it = 0; it < 5; it++) {
            Ctx ctx;
            if (make_context(ctx, fake_dir("current") + ":" + fake_dir("ops"),
                             id % 2 ? "fake-current" : "fake-current,fake-ops") != TRIT_OK ||
                trit_device_count(ctx.c) != (id % 2 ? 2u : 4u)) {
                failures++;
                continue;
            }
            trit_device *d = nullptr;
            trit_buffer *b = nullptr;
            if (trit_device_get(ctx.c, 1, &d) != TRIT_OK ||
                trit_buffer_alloc(d, 100, &b) != TRIT_OK)
                failures++;
        }
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; i++)
        threads.emplace_back(work, i);
    for (auto &t : threads)
        t.join();
    EXPECT_EQ(0, failures.load());
}
