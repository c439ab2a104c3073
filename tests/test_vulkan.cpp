// test_vulkan.cpp — Vulkan-specific properties: every feature fallback forced off still gives
// reference results, the pipeline cache is reused and a corrupt cache file is ignored, matrices
// wider than maxStorageBufferRange are split, freeing what pending work uses is safe, and the
// validation layer stays silent (including at context destruction, where it reports leaked
// objects). Each test makes its own context with
// only the Vulkan plugin, so a plugin that fails to start fails the test with its reason.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "gemv_run.h"
#include "reference/ref_gemv.h"
#include "trit/trit.h"

namespace {

struct Log {
    std::mutex mu;
    std::vector<std::string> lines;
    static void cb(void *user, trit_log_level, const char *msg)
    {
        Log *l = static_cast<Log *>(user);
        std::lock_guard<std::mutex> g(l->mu);
        l->lines.emplace_back(msg);
    }
    int count(const std::string &needle)
    {
        std::lock_guard<std::mutex> g(mu);
        int n = 0;
        for (auto &s : lines)
            n += s.find(needle) != std::string::npos;
        return n;
    }
    std::string first(const std::string &needle)
    {
        std::lock_guard<std::mutex> g(mu);
        for (auto &s : lines)
            if (s.find(needle) != std::string::npos)
                return s;
        return "";
    }
};

// A context with only the Vulkan plugin and the given backend options.
struct VkContext {
    trit_context *ctx = nullptr;
    trit_device *dev = nullptr;
    Log log;
    explicit VkContext(std::vector<std::string> opts)
    {
        std::vector<const char *> o;
        for (auto &s : opts)
            o.push_back(s.c_str());
        o.push_back(nullptr);
        trit_context_options co{};
        co.size = sizeof(co);
        co.plugin_path = TRIT_TEST_PLUGIN_DIR;
        co.plugins = "vulkan";
        co.log = Log::cb;
        co.log_user = &log;
        co.log_level = TRIT_LOG_DEBUG;
        co.backend_options = o.data();
        EXPECT_EQ(TRIT_OK, trit_context_create(&co, &ctx));
        if (!ctx)
            return;
        if (trit_device_count(ctx) == 0) {
            trit_plugin_info pi{};
            pi.size = sizeof(pi);
            std::string why = "no Vulkan plugin found";
            if (trit_context_plugin_count(ctx) > 0 &&
                trit_context_plugin_info(ctx, 0, &pi) == TRIT_OK)
                why = pi.reason;
            ADD_FAILURE() << "the Vulkan plugin has no device: " << why;
            return;
        }
        EXPECT_EQ(TRIT_OK, trit_device_get(ctx, 0, &dev));
    }
    void destroy()
    {
        trit_context_destroy(ctx);
        ctx = nullptr;
        dev = nullptr;
    }
    ~VkContext() { destroy(); }
};

struct Case {
    int64_t m, k, n;
    trit_gemv_path path;
    trit_dtype x_dtype = TRIT_DTYPE_F32, y_dtype = TRIT_DTYPE_F32;
    bool rmsnorm = false, gated = false, residual = false, bias = false;
    trit_scale_kind scale = TRIT_SCALE_ROW;
    trit_activation act = TRIT_ACT_NONE;
    uint64_t seed = 1;
};

// Runs one GEMV and checks it against the reference: error within the dtype's tolerance and,
// on the INT8 path (non-gated, row scales), exact accumulators.
void check_gemv(trit_device *dev, const Case &c)
{
    SCOPED_TRACE(testing::Message()
                 << "M=" << c.m << " K=" << c.k << " N=" << c.n
                 << (c.path == TRIT_GEMV_INT8 ? " int8" : " float") << (c.rmsnorm ? " rmsnorm" : "")
                 << (c.gated ? " gated" : "") << " x=" << trit_dtype_name(c.x_dtype)
                 << " y=" << trit_dtype_name(c.y_dtype));
    ref::GemvProblem p;
    p.m = c.m;
    p.k = c.k;
    p.n = c.n;
    p.path = c.path;
    p.act = c.act;
    p.scale_kind = c.scale;
    p.w = tt::random_ternary((size_t)(c.m * c.k), c.seed);
    const int64_t nb = (c.k + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
    const size_t ns = c.scale == TRIT_SCALE_TENSOR ? 1
                      : c.scale == TRIT_SCALE_ROW  ? (size_t)c.m
                                                   : (size_t)(c.m * nb);
    p.scales = tt::random_floats(ns, c.seed + 1, 0.5f, 1.5f);
    if (c.gated) {
        p.w_up = tt::random_ternary((size_t)(c.m * c.k), c.seed + 2);
        p.scales_up = tt::random_floats(ns, c.seed + 3, 0.5f, 1.5f);
    }
    p.x = tt::random_floats((size_t)(c.n * c.k), c.seed + 4, -2.f, 2.f);
    tt::round_all(c.x_dtype, p.x);
    if (c.rmsnorm) {
        p.rmsnorm_weight = tt::random_floats((size_t)c.k, c.seed + 5, 0.5f, 1.5f);
        p.rmsnorm_eps = 1e-5f;
    }
    if (c.bias)
        p.bias = tt::random_floats((size_t)c.m, c.seed + 6);
    if (c.residual) {
        p.residual = tt::random_floats((size_t)(c.n * c.m), c.seed + 7);
        tt::round_all(c.y_dtype, p.residual);
    }
    const ref::GemvResult want = ref::gemv(p);

    const bool with_acc = c.path == TRIT_GEMV_INT8 && c.scale != TRIT_SCALE_BLOCK;
    tt::GemvRun run = tt::run_gemv(dev, p, c.x_dtype, c.y_dtype, with_acc);
    ASSERT_EQ(TRIT_OK, run.status) << trit_last_error();
    EXPECT_LT(tt::rel_error(run.y, want.y), tt::tolerance(c.y_dtype));
    if (with_acc)
        EXPECT_EQ(want.acc, run.acc) << "INT8 accumulators differ from the exact reference";
}

// A mix that touches every shader path: both numeric paths, RMSNorm, f16 in and out, gated
// pairs, every scale kind, several token counts.
void check_gemv_mix(trit_device *dev)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8}) {
        Case c{37, 1000, 3, path};
        check_gemv(dev, c);
        c.rmsnorm = true;
        c.bias = true;
        c.act = TRIT_ACT_SILU;
        c.seed = 2;
        check_gemv(dev, c);
        Case h{64, 517, 5, path, TRIT_DTYPE_F16, TRIT_DTYPE_F16};
        h.residual = true;
        h.seed = 3;
        check_gemv(dev, h);
        Case gp{19, 768, 16, path};
        gp.gated = true;
        gp.act = TRIT_ACT_GELU;
        gp.scale = TRIT_SCALE_BLOCK;
        gp.seed = 4;
        check_gemv(dev, gp);
        Case t{5, 33, 1, path};
        t.scale = TRIT_SCALE_TENSOR;
        t.seed = 5;
        check_gemv(dev, t);
    }
}

std::string temp_dir()
{
    char tmpl[] = "/tmp/trit-vk-test-XXXXXX";
    const char *d = mkdtemp(tmpl);
    EXPECT_NE(nullptr, d);
    return d ? d : "/tmp";
}

std::vector<std::string> files_in(const std::string &dir)
{
    std::vector<std::string> out;
    std::string cmd = dir + "/";
    FILE *p = popen(("ls " + dir).c_str(), "r");
    char line[512];
    while (p && fgets(line, sizeof(line), p)) {
        std::string s(line);
        s.erase(s.find_last_not_of("\n") + 1);
        out.push_back(cmd + s);
    }
    if (p)
        pclose(p);
    return out;
}

} // namespace

// The features the plugin chose, from its device line ("fp16 1, int8 1, fp64 1, subgroups 8,
// int dot 1"), and the GEMV shader variants they must select (vulkan/gemv.c).
struct Features {
    int fp16 = -1, int8 = -1, fp64 = -1, subgroups = -1, int_dot = -1;
    std::string gemv() const
    {
        return std::string("gemv") + (subgroups > 0 && subgroups <= 64 ? "_sg" : "") +
               (fp16 ? "_h" : "") + (int_dot ? "_dot" : "");
    }
    std::string prep() const
    {
        return std::string("gemv_prep") + (fp64 ? "_f64" : "") + (fp16 ? "_h" : "") +
               (int8 ? "_i8" : "");
    }
};

Features parse_features(Log &log)
{
    Features f;
    const std::string line = log.first("vulkan: device 0:");
    const size_t at = line.find("fp16 ");
    EXPECT_NE(std::string::npos, at) << line;
    if (at != std::string::npos)
        EXPECT_EQ(5, std::sscanf(line.c_str() + at,
                                 "fp16 %d, int8 %d, fp64 %d, subgroups %d, int dot %d", &f.fp16,
                                 &f.int8, &f.fp64, &f.subgroups, &f.int_dot))
            << line;
    return f;
}

TEST(Vulkan, EveryFeatureFallbackGivesReferenceResults)
{
    Features have;
    for (const char *opt : {"vulkan.fp16=on", "vulkan.fp16=off", "vulkan.int8=off",
                            "vulkan.subgroups=off", "vulkan.int_dot=off", "vulkan.fp64=off"}) {
        SCOPED_TRACE(opt);
        VkContext v({opt, "vulkan.cache_dir=off"});
        ASSERT_NE(nullptr, v.dev);
        const std::string o(opt);
        const Features f = parse_features(v.log);
        if (o == "vulkan.fp16=on")
            have = f;
        // The forced-off feature is off, and on a device that has it the GEMV variants change.
        if (o == "vulkan.fp16=off")
            EXPECT_EQ(0, f.fp16);
        if (o == "vulkan.int8=off")
            EXPECT_EQ(0, f.int8 + f.int_dot);
        if (o == "vulkan.subgroups=off")
            EXPECT_EQ(0, f.subgroups);
        if (o == "vulkan.int_dot=off")
            EXPECT_EQ(0, f.int_dot);
        if (o == "vulkan.fp64=off")
            EXPECT_EQ(0, f.fp64);
        const bool had =
            (o == "vulkan.fp16=off" && have.fp16) || (o == "vulkan.int8=off" && have.int8) ||
            (o == "vulkan.subgroups=off" && have.subgroups > 0) ||
            (o == "vulkan.int_dot=off" && have.int_dot) || (o == "vulkan.fp64=off" && have.fp64);
        if (had)
            EXPECT_NE(have.gemv() + " + " + have.prep(), f.gemv() + " + " + f.prep());
        trit_device_info info{};
        info.size = sizeof(info);
        ASSERT_EQ(TRIT_OK, trit_device_get_info(v.dev, &info));
        if (std::string(opt) == "vulkan.fp16=off")
            EXPECT_EQ(0u, info.caps & TRIT_CAP_FP16);
        if (std::string(opt) == "vulkan.subgroups=off") {
            EXPECT_EQ(0u, info.caps & TRIT_CAP_SUBGROUPS);
            EXPECT_EQ(0u, info.subgroup_size);
        }
        if (std::string(opt) == "vulkan.int_dot=off" || std::string(opt) == "vulkan.int8=off")
            EXPECT_EQ(0u, info.caps & TRIT_CAP_INT8_DOT);
        check_gemv_mix(v.dev);
        // INT8 + RMSNorm at a model's width, all 16 tokens: exact accumulators (float-float
        // RMSNorm when fp64 is off).
        Case big{300, 2560, 16, TRIT_GEMV_INT8};
        big.rmsnorm = true;
        big.seed = 9;
        check_gemv(v.dev, big);
        // The variants the features select are the ones that ran (logged once per pair).
        const std::string used = "vulkan: gemv uses " + f.gemv() + " + " + f.prep();
        EXPECT_EQ(1, v.log.count(used))
            << "expected \"" << used << "\", got \"" << v.log.first("vulkan: gemv uses") << "\"";
        EXPECT_EQ(1, v.log.count("vulkan: gemv uses")) << "one variant pair per device";
    }
    // lavapipe (what CI runs) has every one of these features, so each option above really
    // switched a path there; elsewhere say what was not exercised.
    if (!(have.fp16 && have.int8 && have.fp64 && have.subgroups > 0 && have.int_dot))
        std::printf("[ INFO     ] this device lacks some features (%s + %s): their fast paths "
                    "were not exercised\n",
                    have.gemv().c_str(), have.prep().c_str());
}

TEST(Vulkan, PipelineCacheIsReusedAndACorruptFileIsIgnored)
{
    const std::string dir = temp_dir();
    const std::string opt = "vulkan.cache_dir=" + dir;
    {
        VkContext v({opt});
        ASSERT_NE(nullptr, v.dev);
        check_gemv(v.dev, Case{17, 300, 2, TRIT_GEMV_INT8});
        EXPECT_EQ(0, v.log.count("pipeline cache " + dir)) << "no cache file existed yet";
    }
    std::vector<std::string> files = files_in(dir);
    ASSERT_EQ(1u, files.size()) << "the cache is written at device close";
    {
        VkContext v({opt});
        ASSERT_NE(nullptr, v.dev);
        EXPECT_EQ(1, v.log.count("pipeline cache " + files[0] + " loaded"));
        check_gemv(v.dev, Case{17, 300, 2, TRIT_GEMV_INT8});
    }
    // Flip one byte of the driver's blob (past our 56-byte header): the checksum catches it.
    {
        std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
        ASSERT_TRUE(f.good());
        f.seekg(80);
        char b = 0;
        f.read(&b, 1);
        b = (char)(b ^ 0x5a);
        f.seekp(80);
        f.write(&b, 1);
    }
    {
        VkContext v({opt});
        ASSERT_NE(nullptr, v.dev);
        EXPECT_EQ(0, v.log.count("pipeline cache " + files[0] + " loaded"))
            << v.log.first("loaded");
        EXPECT_EQ(1, v.log.count("ignored: its checksum does not match"))
            << v.log.first("pipeline cache");
        check_gemv(v.dev, Case{17, 300, 2, TRIT_GEMV_FLOAT});
    }
    // A truncated file is ignored too.
    ASSERT_EQ(0, truncate(files[0].c_str(), 40));
    {
        VkContext v({opt});
        ASSERT_NE(nullptr, v.dev);
        EXPECT_EQ(1, v.log.count("ignored: shorter than its header"))
            << v.log.first("pipeline cache");
    }
    for (auto &f : files_in(dir))
        std::remove(f.c_str());
    rmdir(dir.c_str());
}

TEST(Vulkan, MatrixWiderThanMaxStorageBufferRangeIsSplit)
{
    VkContext v({"vulkan.max_buffer_range=1048576", "vulkan.cache_dir=off"});
    ASSERT_NE(nullptr, v.dev);
    // 1100 rows of 4096 weights: 1.1 MB of codes, more than the 1 MiB the option allows.
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8}) {
        Case c{1100, 4096, 2, path};
        c.residual = true;
        check_gemv(v.dev, c);
    }
    EXPECT_GE(v.log.count("split into 2 buffers"), 2);
}

// trit.h asks callers not to free what pending work uses, but a caller who does must not corrupt
// memory: buffers, ternary matrices and events freed right after enqueueing work that uses them
// (recorded, not yet submitted, or submitted and running) are destroyed only once that work has
// completed, and the work still gives the right results. The validation layer (on here) reports
// destroying an object that a pending command buffer uses; ASan reports a use after free.
TEST(Vulkan, FreeingWhatPendingWorkUsesIsSafe)
{
    VkContext v({"vulkan.validation=on"});
    ASSERT_NE(nullptr, v.dev);
    {
        tt::Stream s(v.dev);
        // A copy out of a buffer freed before the stream is submitted.
        const uint64_t bytes = 6u << 20;
        std::vector<uint8_t> src(bytes), dst(bytes, 0);
        for (size_t i = 0; i < src.size(); i++)
            src[i] = (uint8_t)(i * 131 + 7);
        trit_buffer *a = nullptr, *b = nullptr, *c = nullptr;
        TRIT_ASSERT_OK(trit_buffer_alloc(v.dev, bytes, &a));
        TRIT_ASSERT_OK(trit_buffer_alloc(v.dev, bytes, &b));
        TRIT_ASSERT_OK(trit_buffer_upload(s, a, 0, src.data(), bytes));
        TRIT_ASSERT_OK(trit_buffer_copy(s, a, 0, b, 0, bytes));
        trit_buffer_free(a);
        // A buffer written by recorded work, then freed, with nothing reading it afterwards.
        TRIT_ASSERT_OK(trit_buffer_alloc(v.dev, bytes, &c));
        TRIT_ASSERT_OK(trit_buffer_fill(s, c, 0, 0x5a, bytes));
        TRIT_ASSERT_OK(trit_buffer_copy(s, b, 0, c, 0, bytes / 2));
        trit_buffer_free(c);
        TRIT_ASSERT_OK(trit_buffer_download(s, b, 0, dst.data(), bytes));
        TRIT_ASSERT_OK(trit_stream_sync(s));
        EXPECT_EQ(src, dst);
        // Freed while the device may still be running the submitted batch (recording an event
        // submits it).
        trit_event *e = nullptr;
        TRIT_ASSERT_OK(trit_event_create(v.dev, &e));
        TRIT_ASSERT_OK(trit_buffer_fill(s, b, 0, 0, bytes));
        TRIT_ASSERT_OK(trit_event_record(e, s));
        trit_buffer_free(b);
        TRIT_ASSERT_OK(trit_stream_sync(s));
        trit_event_destroy(e);
    }
    {
        // A GEMV whose weights and input are freed before the stream is synced.
        const int64_t m = 300, k = 1024;
        ref::GemvProblem p;
        p.m = m;
        p.k = k;
        p.n = 2;
        p.path = TRIT_GEMV_FLOAT;
        p.scale_kind = TRIT_SCALE_ROW;
        p.w = tt::random_ternary((size_t)(m * k), 11);
        p.scales = tt::random_floats((size_t)m, 12, 0.5f, 1.5f);
        p.x = tt::random_floats((size_t)(2 * k), 13, -2.f, 2.f);
        const ref::GemvResult want = ref::gemv(p);
        tt::Stream s(v.dev);
        tt::Ternary w = tt::upload_ternary(v.dev, p.w, m, k, TRIT_SCALE_ROW, p.scales);
        ASSERT_NE(nullptr, w.t);
        tt::DeviceTensor x = tt::upload(v.dev, s, TRIT_DTYPE_F32, {2, k}, p.x);
        tt::DeviceTensor y = tt::poisoned(v.dev, s, TRIT_DTYPE_F32, {2, m});
        trit_gemv_params params;
        trit_gemv_params_init(&params);
        TRIT_ASSERT_OK(trit_ternary_gemv(s, w, &x.t, &y.t, &params));
        trit_ternary_free(w.t);
        w.t = nullptr;
        trit_buffer_free(x.buf.b);
        x.buf.b = nullptr;
        std::vector<float> got = tt::download(s, y.t);
        EXPECT_LT(tt::rel_error(got, want.y), tt::tolerance(TRIT_DTYPE_F32));
    }
    {
        // An event destroyed while a stream has a wait for it that is not yet submitted.
        tt::Stream a(v.dev), b(v.dev);
        tt::Buffer buf(v.dev, 4096);
        std::vector<uint8_t> src(4096, 9), dst(4096, 0);
        trit_event *e = nullptr;
        TRIT_ASSERT_OK(trit_event_create(v.dev, &e));
        TRIT_ASSERT_OK(trit_buffer_upload(a, buf, 0, src.data(), src.size()));
        TRIT_ASSERT_OK(trit_event_record(e, a));
        TRIT_ASSERT_OK(trit_stream_wait_event(b, e));
        trit_event_destroy(e);
        TRIT_ASSERT_OK(trit_buffer_download(b, buf, 0, dst.data(), dst.size()));
        TRIT_ASSERT_OK(trit_stream_sync(b));
        EXPECT_EQ(src, dst);
        TRIT_ASSERT_OK(trit_stream_sync(a));
    }
    v.destroy();
    EXPECT_EQ(0, v.log.count("vulkan validation")) << v.log.first("vulkan validation");
}

TEST(Vulkan, ValidationLayerStaysSilent)
{
    VkContext v({"vulkan.validation=on", "vulkan.cache_dir=off"});
    ASSERT_NE(nullptr, v.dev);
    EXPECT_EQ(1, v.log.count("VK_LAYER_KHRONOS_validation enabled"));
    check_gemv_mix(v.dev);
    // Events and cross-stream waits go through the layer's synchronization checks too.
    {
        tt::Stream a(v.dev), b(v.dev);
        trit_event *e = nullptr;
        ASSERT_EQ(TRIT_OK, trit_event_create(v.dev, &e));
        tt::Buffer buf(v.dev, 4096);
        std::vector<uint8_t> src(4096, 7), dst(4096, 0);
        ASSERT_EQ(TRIT_OK, trit_buffer_upload(a, buf, 0, src.data(), src.size()));
        ASSERT_EQ(TRIT_OK, trit_event_record(e, a));
        ASSERT_EQ(TRIT_OK, trit_stream_wait_event(b, e));
        ASSERT_EQ(TRIT_OK, trit_buffer_download(b, buf, 0, dst.data(), dst.size()));
        ASSERT_EQ(TRIT_OK, trit_stream_sync(b));
        EXPECT_EQ(src, dst);
        ASSERT_EQ(TRIT_OK, trit_event_sync(e));
        trit_event_destroy(e);
    }
    // Destroying the context destroys the device and instance: the layer reports any Vulkan
    // object still alive then, while our messenger still listens.
    v.destroy();
    EXPECT_EQ(0, v.log.count("vulkan validation")) << v.log.first("vulkan validation");
}
