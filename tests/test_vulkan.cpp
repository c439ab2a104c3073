// test_vulkan.cpp — Vulkan-specific properties: every feature fallback forced off still gives
// reference results, the pipeline cache is reused and a corrupt cache file is ignored, matrices
// wider than maxStorageBufferRange are split, freeing what pending work uses is safe, and the
// validation layer stays silent (including at context destruction, where it reports leaked
// objects), and the cooperative-matrix attention path is chosen by one pure decision (fed made-up
// devices here), reported with its reason, and — emulated, since no CI device has cooperative
// matrices — gives reference results. Each test makes its own context with
// only the Vulkan plugin, so a plugin that fails to start fails the test with its reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "gemv_run.h"
#include "reference/ref_attention.h"
#include "reference/ref_gemv.h"
#include "trit/trit.h"
#if __has_include(<vulkan/vulkan.h>)
#include "vulkan/coop_matrix.h" // the selection is a pure function: tested without a device
#define TRIT_TEST_VULKAN_HEADERS 1
#endif

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

// ---- cooperative-matrix attention ------------------------------------------------------------

#ifdef TRIT_TEST_VULKAN_HEADERS
namespace {

VkCooperativeMatrixPropertiesNV coop_props(uint32_t m, uint32_t n, uint32_t k, VkComponentTypeNV ab,
                                           VkComponentTypeNV c,
                                           VkScopeNV scope = VK_SCOPE_SUBGROUP_NV,
                                           VkComponentTypeNV d = VK_COMPONENT_TYPE_MAX_ENUM_NV)
{
    VkCooperativeMatrixPropertiesNV p{};
    p.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    p.MSize = m;
    p.NSize = n;
    p.KSize = k;
    p.AType = p.BType = ab;
    p.CType = c;
    p.DType = d == VK_COMPONENT_TYPE_MAX_ENUM_NV ? c : d;
    p.scope = scope;
    return p;
}

const VkComponentTypeNV F16 = VK_COMPONENT_TYPE_FLOAT16_NV, F32 = VK_COMPONENT_TYPE_FLOAT32_NV;

std::string pick(const std::vector<VkCooperativeMatrixPropertiesNV> &list)
{
    vk_coop_config c{};
    if (!vk_coop_pick(list.data(), (uint32_t)list.size(), &c))
        return "none";
    return std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.k) +
           (c.acc16 ? " f16" : " f32");
}

// A device that has everything the cooperative-matrix path needs.
vk_coop_device full_device(const std::vector<VkCooperativeMatrixPropertiesNV> &list)
{
    vk_coop_device d{};
    d.mode = VK_COOP_AUTO;
    d.extension = d.feature = d.compute_stage = d.properties = d.memory_model = 1;
    d.fp16 = d.subgroup_size_control = 1;
    d.subgroup_size = 32;
    d.props = list.data();
    d.n_props = (uint32_t)list.size();
    return d;
}

} // namespace

TEST(Vulkan, CoopMatrixSelectionPicksTheBestUsableConfiguration)
{
    // What an NVIDIA driver lists (abridged): the f32-accumulator 16x8x16 wins over f16 ones.
    EXPECT_EQ("16x8x16 f32", pick({coop_props(16, 8, 16, F16, F16), coop_props(16, 8, 8, F16, F32),
                                   coop_props(16, 8, 16, F16, F32),
                                   coop_props(16, 8, 32, VK_COMPONENT_TYPE_SINT8_NV,
                                              VK_COMPONENT_TYPE_SINT32_NV)}));
    // 16x16x16 before 16x8x16 at the same accumulator type, whatever the order.
    EXPECT_EQ("16x16x16 f32",
              pick({coop_props(16, 8, 16, F16, F32), coop_props(16, 16, 16, F16, F32)}));
    EXPECT_EQ("16x16x16 f32",
              pick({coop_props(16, 16, 16, F16, F32), coop_props(16, 8, 16, F16, F32)}));
    // f32 accumulators before the shape.
    EXPECT_EQ("16x8x16 f32",
              pick({coop_props(16, 16, 16, F16, F16), coop_props(16, 8, 16, F16, F32)}));
    // Only f16 accumulators offered: taken.
    EXPECT_EQ("16x16x16 f16",
              pick({coop_props(16, 8, 16, F16, F16), coop_props(16, 16, 16, F16, F16)}));
    // Unusable entries: another scope, shape, input type, or C and D that differ.
    EXPECT_EQ("none", pick({}));
    EXPECT_EQ("none", pick({coop_props(16, 16, 16, F16, F32, VK_SCOPE_WORKGROUP_NV)}));
    EXPECT_EQ("none", pick({coop_props(16, 8, 8, F16, F32), coop_props(8, 8, 16, F16, F32),
                            coop_props(16, 32, 16, F16, F32), coop_props(32, 8, 16, F16, F32)}));
    EXPECT_EQ("none", pick({coop_props(16, 16, 16, F32, F32),
                            coop_props(16, 16, 16, VK_COMPONENT_TYPE_SINT8_NV, F32)}));
    EXPECT_EQ("none", pick({coop_props(16, 16, 16, F16, F16, VK_SCOPE_SUBGROUP_NV, F32),
                            coop_props(16, 16, 16, F16, F32, VK_SCOPE_SUBGROUP_NV, F16)}));
}

TEST(Vulkan, CoopMatrixDecisionSaysWhyItIsOff)
{
    const std::vector<VkCooperativeMatrixPropertiesNV> nv = {coop_props(16, 8, 16, F16, F16),
                                                             coop_props(16, 8, 16, F16, F32)};
    vk_coop_config c{};
    vk_coop_device d = full_device(nv);
    ASSERT_EQ(nullptr, vk_coop_decide(&d, &c));
    EXPECT_EQ(16u, c.m);
    EXPECT_EQ(8u, c.n);
    EXPECT_EQ(16u, c.k);
    EXPECT_EQ(0, c.acc16);
    EXPECT_EQ(32u, c.subgroup_size);
    EXPECT_EQ(0, c.emulated);

    struct Knock {
        int vk_coop_device::*field;
        const char *why;
    };
    for (const Knock &k : {Knock{&vk_coop_device::extension, "VK_NV_cooperative_matrix"},
                           Knock{&vk_coop_device::feature, "cooperativeMatrix feature"},
                           Knock{&vk_coop_device::compute_stage, "compute"},
                           Knock{&vk_coop_device::properties, "loader lacks"},
                           Knock{&vk_coop_device::memory_model, "vulkanMemoryModel"},
                           Knock{&vk_coop_device::fp16, "16-bit"},
                           Knock{&vk_coop_device::subgroup_size_control, "subgroup size"}}) {
        vk_coop_device off = full_device(nv);
        off.*k.field = 0;
        const char *why = vk_coop_decide(&off, &c);
        ASSERT_NE(nullptr, why) << k.why;
        EXPECT_NE(std::string::npos, std::string(why).find(k.why)) << why;
        EXPECT_EQ(0u, c.m) << "a refused configuration leaves nothing chosen";
    }
    vk_coop_device forced = full_device(nv);
    forced.mode = VK_COOP_OFF;
    const char *why = vk_coop_decide(&forced, &c);
    ASSERT_NE(nullptr, why);
    EXPECT_NE(std::string::npos, std::string(why).find("vulkan.coop_matrix=off")) << why;
    // A device whose list has nothing usable.
    const std::vector<VkCooperativeMatrixPropertiesNV> int8_only = {
        coop_props(16, 8, 32, VK_COMPONENT_TYPE_SINT8_NV, VK_COMPONENT_TYPE_SINT32_NV)};
    vk_coop_device none = full_device(int8_only);
    why = vk_coop_decide(&none, &c);
    ASSERT_NE(nullptr, why);
    EXPECT_NE(std::string::npos, std::string(why).find("no 16x16x16 or 16x8x16")) << why;
    // Emulation needs neither the extension nor the memory model, but still fp16 and subgroups.
    vk_coop_device emu = full_device({});
    const std::vector<VkCooperativeMatrixPropertiesNV> one = {coop_props(16, 16, 16, F16, F16)};
    emu.props = one.data();
    emu.n_props = 1;
    emu.mode = VK_COOP_EMULATE;
    emu.extension = emu.feature = emu.compute_stage = emu.properties = emu.memory_model = 0;
    emu.subgroup_size = 8;
    ASSERT_EQ(nullptr, vk_coop_decide(&emu, &c));
    EXPECT_EQ(1, c.emulated);
    EXPECT_EQ(1, c.acc16);
    EXPECT_EQ(8u, c.subgroup_size);
    emu.fp16 = 0;
    EXPECT_NE(nullptr, vk_coop_decide(&emu, &c));
}

// The tiles attention_coop.comp gets, on made-up devices: NVIDIA's (16x8x16 f16 -> f32, subgroup
// 32, 48 KiB of shared memory) and lavapipe's limits (subgroup 8, 32 KiB). None of NVIDIA's picks
// fits lavapipe's 32 KiB, which is why the emulation cannot run them (vulkan/README.md).
TEST(Vulkan, CoopMatrixTilesFitSharedMemoryAndPreferLargeBlocks)
{
    vk_coop_config nv{};
    nv.m = 16;
    nv.n = 8;
    nv.k = 16;
    nv.subgroup_size = 32;
    struct Want {
        uint32_t d, rows, tk;
    };
    for (const Want &w : {Want{64, 32, 64}, Want{80, 32, 64}, Want{96, 32, 64}, Want{128, 32, 32},
                          Want{256, 16, 32}}) {
        SCOPED_TRACE(w.d);
        uint32_t tk = 0, rows = 0;
        ASSERT_EQ(1, vk_coop_tiles(&nv, 48 * 1024, 1024, w.d, &tk, &rows));
        EXPECT_EQ(w.rows, rows);
        EXPECT_EQ(w.tk, tk);
        EXPECT_LE(vk_coop_shared_bytes(&nv, w.d, rows, tk), 48u * 1024);
        EXPECT_GT(vk_coop_shared_bytes(&nv, w.d, rows, tk), 32u * 1024);
    }
    // Every accumulator and fragment shape fits every head dim up to 128 in 32 KiB, and 256
    // in none.
    for (int acc16 : {0, 1})
        for (uint32_t n : {8u, 16u}) {
            vk_coop_config c = nv;
            c.acc16 = acc16;
            c.n = n;
            c.subgroup_size = 8;
            for (uint32_t d : {64u, 80u, 96u, 128u, 256u}) {
                SCOPED_TRACE(testing::Message() << "acc16 " << acc16 << " n " << n << " d " << d);
                uint32_t tk = 0, rows = 0;
                const int fits = vk_coop_tiles(&c, 32 * 1024, 1024, d, &tk, &rows);
                EXPECT_EQ(d != 256, fits != 0);
                if (fits)
                    EXPECT_LE(vk_coop_shared_bytes(&c, d, rows, tk), 32u * 1024);
                // f16 accumulators run NVIDIA's d = 64 tile (32 x 64) within lavapipe's limit.
                if (acc16 && d == 64)
                    EXPECT_EQ(32u * 64u, rows * tk);
            }
        }
    // By hand, from attention_coop.comp's declarations (padded score and weight rows of 64 + 8;
    // the 4 P·V fragments of 16 x 8 fit in the score tile): d = 64, 32 rows x 64 keys, f16.
    vk_coop_config h = nv;
    h.acc16 = 1;
    EXPECT_EQ(2u * 32 * 72 + 2 * 64 * 72 + 2 * 32 * 72 + 2 * 32 * 72 + 4 * 32 * 64 + 12 * 32 +
                  8 * 64,
              vk_coop_shared_bytes(&h, 64, 32, 64));
    // ... and 16 x 16 tiles, where the fragments (4 x 16 x 16) outgrow the scores (16 x 24).
    h.n = 16;
    EXPECT_EQ(2u * 16 * 72 + 2 * 16 * 72 + 2 * 4 * 16 * 16 + 2 * 16 * 24 + 4 * 16 * 64 + 12 * 16 +
                  8 * 16,
              vk_coop_shared_bytes(&h, 64, 16, 16));
    // The workgroup (4 subgroups) must fit the device, and d must be a multiple of 16.
    uint32_t tk = 0, rows = 0;
    EXPECT_EQ(0, vk_coop_tiles(&nv, 48 * 1024, 64, 64, &tk, &rows));
    EXPECT_EQ(0, vk_coop_tiles(&nv, 48 * 1024, 1024, 72, &tk, &rows));
    EXPECT_EQ(0, vk_coop_tiles(&nv, 4 * 1024, 1024, 64, &tk, &rows));
}
#endif // TRIT_TEST_VULKAN_HEADERS

namespace {

struct AttCase {
    int H = 8, Hkv = 2, D = 128;
    std::vector<int32_t> q_lens{40}, kv_lens{100};
    trit_dtype o_dt = TRIT_DTYPE_F32;
    bool causal = true, alibi = false, sinks = false, paged = false;
    int32_t window = 0, kv_splits = 0;
    int64_t kv_offset = 0; // q, K and V views start this many elements into their buffers
    float softcap = 0, scale = 0;
    uint64_t seed = 1;
    std::string describe() const
    {
        std::ostringstream os;
        os << "H=" << H << " Hkv=" << Hkv << " D=" << D << " q_lens=[";
        for (size_t i = 0; i < q_lens.size(); i++)
            os << (i ? "," : "") << q_lens[i];
        os << "] kv_lens=[";
        for (size_t i = 0; i < kv_lens.size(); i++)
            os << (i ? "," : "") << kv_lens[i];
        os << "] out=" << trit_dtype_name(o_dt) << (causal ? " causal" : "") << " window=" << window
           << " softcap=" << softcap << (alibi ? " alibi" : "") << (sinks ? " sinks" : "")
           << (paged ? " paged" : "") << " splits=" << kv_splits << " kv_offset=" << kv_offset;
        return os.str();
    }
};

// f16 q and KV cache (contiguous, or paged in blocks of 16 with a reversed block order), out
// poisoned before the run; returns the relative error against the fp64 reference.
double run_f16_attention(trit_device *dev, const AttCase &c)
{
    ref::AttentionProblem p;
    p.n_heads = c.H;
    p.n_kv_heads = c.Hkv;
    p.head_dim = c.D;
    p.q_lens = c.q_lens;
    p.kv_lens = c.kv_lens;
    const int64_t S = (int64_t)c.q_lens.size();
    int64_t T = 0;
    int32_t max_kv = 0;
    for (size_t s = 0; s < c.q_lens.size(); s++) {
        T += c.q_lens[s];
        max_kv = std::max(max_kv, c.kv_lens[s]);
    }
    const int32_t block = 16;
    p.capacity = (max_kv + block - 1) / block * block;
    p.q = tt::random_floats((size_t)(T * c.H * c.D), c.seed * 31 + 1, -2.f, 2.f);
    const size_t kv_n = (size_t)(S * p.capacity * c.Hkv * c.D);
    p.k = tt::random_floats(kv_n, c.seed * 31 + 2);
    p.v = tt::random_floats(kv_n, c.seed * 31 + 3);
    tt::round_all(TRIT_DTYPE_F16, p.q);
    tt::round_all(TRIT_DTYPE_F16, p.k);
    tt::round_all(TRIT_DTYPE_F16, p.v);
    p.scale = c.scale;
    p.causal = c.causal;
    p.window = c.window;
    p.softcap = c.softcap;
    if (c.alibi)
        p.alibi_slopes = tt::random_floats((size_t)c.H, c.seed * 31 + 4, 0.01f, 0.3f);
    if (c.sinks)
        p.sinks = tt::random_floats((size_t)c.H, c.seed * 31 + 5, -1.f, 3.f);

    tt::Stream s(dev);
    // An f16 view of `vals` with `shape` (contiguous), c.kv_offset elements into its buffer.
    auto upload_at_offset = [&](tt::DeviceTensor &dt, const std::vector<int64_t> &shape,
                                const std::vector<float> &vals) {
        std::vector<int64_t> strides(shape.size(), 1);
        for (size_t i = shape.size() - 1; i > 0; i--)
            strides[i - 1] = strides[i] * shape[i];
        std::vector<float> padded((size_t)c.kv_offset, 0.f);
        padded.insert(padded.end(), vals.begin(), vals.end());
        const std::vector<uint8_t> bytes = tt::to_bytes(TRIT_DTYPE_F16, padded);
        dt.buf = tt::Buffer(dev, bytes.size());
        EXPECT_EQ(TRIT_OK, trit_buffer_upload(s, dt.buf, 0, bytes.data(), bytes.size()));
        EXPECT_EQ(TRIT_OK,
                  trit_tensor_make(dt.buf, (uint64_t)c.kv_offset * 2, TRIT_DTYPE_F16,
                                   (uint32_t)shape.size(), shape.data(), strides.data(), &dt.t))
            << trit_last_error();
    };
    tt::DeviceTensor q;
    if (c.kv_offset > 0)
        upload_at_offset(q, {T, c.H, c.D}, p.q);
    else
        q = tt::upload(dev, s, TRIT_DTYPE_F16, {T, c.H, c.D}, p.q);
    tt::DeviceTensor out = tt::poisoned(dev, s, c.o_dt, {T, c.H, c.D});
    trit_kv_cache cache{};
    cache.size = sizeof(cache);
    std::vector<int32_t> table;
    tt::DeviceTensor k, v;
    if (c.paged) {
        // Block b of sequence s lives at physical block n_blocks - 1 - (s * per + b).
        const int32_t per = (int32_t)(p.capacity / block);
        const int64_t n_blocks = S * per;
        std::vector<float> kp(kv_n), vp(kv_n);
        const size_t row = (size_t)c.Hkv * c.D;
        table.resize((size_t)(S * per));
        for (int64_t sq = 0; sq < S; sq++)
            for (int32_t b = 0; b < per; b++) {
                const int32_t phys = (int32_t)(n_blocks - 1 - (sq * per + b));
                table[(size_t)(sq * per + b)] = phys;
                for (int32_t r = 0; r < block; r++) {
                    const size_t from = ((size_t)(sq * p.capacity) + (size_t)(b * block + r)) * row;
                    const size_t to = ((size_t)phys * block + (size_t)r) * row;
                    std::copy(p.k.begin() + (long)from, p.k.begin() + (long)(from + row),
                              kp.begin() + (long)to);
                    std::copy(p.v.begin() + (long)from, p.v.begin() + (long)(from + row),
                              vp.begin() + (long)to);
                }
            }
        k = tt::upload(dev, s, TRIT_DTYPE_F16, {n_blocks, block, c.Hkv, c.D}, kp);
        v = tt::upload(dev, s, TRIT_DTYPE_F16, {n_blocks, block, c.Hkv, c.D}, vp);
        cache.block_table = table.data();
        cache.max_blocks_per_seq = per;
    } else if (c.kv_offset > 0) {
        upload_at_offset(k, {S, p.capacity, c.Hkv, c.D}, p.k);
        upload_at_offset(v, {S, p.capacity, c.Hkv, c.D}, p.v);
    } else {
        k = tt::upload(dev, s, TRIT_DTYPE_F16, {S, p.capacity, c.Hkv, c.D}, p.k);
        v = tt::upload(dev, s, TRIT_DTYPE_F16, {S, p.capacity, c.Hkv, c.D}, p.v);
    }
    cache.k = k.t;
    cache.v = v.t;
    trit_attention_params prm;
    trit_attention_params_init(&prm);
    prm.scale = c.scale;
    prm.causal = c.causal;
    prm.window = c.window;
    prm.softcap = c.softcap;
    prm.alibi_slopes = c.alibi ? p.alibi_slopes.data() : nullptr;
    prm.sinks = c.sinks ? p.sinks.data() : nullptr;
    prm.kv_splits = c.kv_splits;
    const trit_status st = trit_attention(s, &q.t, &cache, (uint32_t)S, c.q_lens.data(),
                                          c.kv_lens.data(), &out.t, &prm);
    EXPECT_EQ(TRIT_OK, st) << trit_last_error();
    if (st != TRIT_OK)
        return INFINITY;
    return tt::rel_error(tt::download(s, out.t), ref::attention(p));
}

// Prefill cases covering what attention_coop.comp does differently from attention.comp: every
// head dim it takes, GQA row packing (rows past an item's end), MHA, a position offset,
// non-causal, window + softcap + ALiBi + sinks, paged KV, split-KV partials, batches, f16 out.
std::vector<AttCase> coop_cases()
{
    std::vector<AttCase> cs;
    for (int d : {64, 80, 96, 128, 256}) {
        AttCase c;
        c.D = d;
        c.seed = (uint64_t)d;
        cs.push_back(c);
    }
    AttCase c;
    c.H = c.Hkv = 4;
    c.D = 64;
    c.q_lens = {50};
    c.kv_lens = {130};
    c.seed = 2;
    cs.push_back(c); // MHA with an offset: rows = tokens
    c.causal = false;
    c.q_lens = {20, 3};
    c.kv_lens = {70, 3};
    c.H = 6;
    c.Hkv = 3;
    c.o_dt = TRIT_DTYPE_F16;
    c.seed = 3;
    cs.push_back(c); // non-causal batch, 2 rows per token of GQA, f16 out
    AttCase o;
    o.H = 12;
    o.Hkv = 3;
    o.q_lens = {1, 30, 2};
    o.kv_lens = {300, 30, 200};
    o.window = 64;
    o.softcap = 20.f;
    o.alibi = true;
    o.sinks = true;
    o.scale = 0.2f;
    o.seed = 4;
    cs.push_back(o);
    o.paged = true;
    o.kv_splits = 3;
    o.seed = 5;
    cs.push_back(o);
    AttCase l; // many tiles; MQA packs 8 heads x 2 tokens per 16-row block
    l.H = 8;
    l.Hkv = 1;
    l.D = 64;
    l.q_lens = {97};
    l.kv_lens = {300};
    l.seed = 6;
    cs.push_back(l);
    // q, K and V views at an odd element offset (one half at a time), and at 8 halves (16-byte
    // loads from a binding that does not start at the buffer's start).
    for (int64_t off : {3, 8}) {
        AttCase u;
        u.D = 96;
        u.q_lens = {21, 5};
        u.kv_lens = {90, 40};
        u.kv_offset = off;
        u.seed = 7 + (uint64_t)off;
        cs.push_back(u);
    }
    return cs;
}

// The cooperative-matrix path's tiles for each head dim (of 64, 80, 96, 128, 256) on the device
// whose decision line is `on` ("... on: 16x8x16 f16 -> f32, subgroup 32, shared memory 49152
// bytes"), as log_path words them (" (32 rows x 64 keys per tile)"), from coop_matrix.h's choice
// for that shared memory; "" where none fits (that d runs attention.comp). Without the Vulkan
// headers: any tile for 64..128, what every configuration fits in lavapipe's 32 KiB.
std::vector<std::pair<int, std::string>> coop_tiles_by_dim(const std::string &on)
{
    std::vector<std::pair<int, std::string>> out;
#ifdef TRIT_TEST_VULKAN_HEADERS
    vk_coop_config c{};
    unsigned acc = 0, shared = 0;
    const size_t at = on.find("on: ");
    if (at == std::string::npos ||
        std::sscanf(on.c_str() + at, "on: %ux%ux%u f16 -> f%u, subgroup %u, shared memory %u bytes",
                    &c.m, &c.n, &c.k, &acc, &c.subgroup_size, &shared) != 6) {
        ADD_FAILURE() << "cannot read the configuration from: " << on;
        return out;
    }
    c.acc16 = acc == 16;
    for (int d : {64, 80, 96, 128, 256}) {
        uint32_t tk = 0, rows = 0;
        out.emplace_back(d, vk_coop_tiles(&c, shared, 1024, (uint32_t)d, &tk, &rows)
                                ? " (" + std::to_string(rows) + " rows x " + std::to_string(tk) +
                                      " keys per tile)"
                                : "");
    }
#else
    (void)on;
    for (int d : {64, 80, 96, 128, 256})
        out.emplace_back(d, d == 256 ? "" : " (");
#endif
    return out;
}

// Checks the log says which shader, with which tiles, each head dim's prefill used:
// `coop_shader` where coop_tiles_by_dim(on) has tiles, attention.comp's f16 variant elsewhere.
void expect_prefill_paths(Log &log, const std::string &on, const std::string &coop_shader)
{
    for (const auto &dt : coop_tiles_by_dim(on)) {
        const std::string line = "attention d=" + std::to_string(dt.first) + " prefill uses ";
        const bool coop = !dt.second.empty();
        EXPECT_EQ(1, log.count(line + (coop ? coop_shader + dt.second : "attention_f16")))
            << "d=" << dt.first << (coop ? " expected" + dt.second : " (tiles do not fit)") << ": "
            << log.first("attention d=" + std::to_string(dt.first));
    }
}

} // namespace

TEST(Vulkan, CoopMatrixAttentionIsReportedWithItsReason)
{
    for (const char *opt : {"vulkan.coop_matrix=on", "vulkan.coop_matrix=off"}) {
        SCOPED_TRACE(opt);
        // fp16 and subgroups on whatever the environment says: the f16 shader is then the
        // fallback's.
        VkContext v({opt, "vulkan.fp16=on", "vulkan.subgroups=on", "vulkan.cache_dir=off",
                     "vulkan.validation=on"});
        ASSERT_NE(nullptr, v.dev);
        trit_device_info info{};
        info.size = sizeof(info);
        ASSERT_EQ(TRIT_OK, trit_device_get_info(v.dev, &info));
        const std::string on = v.log.first("cooperative-matrix attention on");
        const std::string off = v.log.first("cooperative-matrix attention off: ");
        EXPECT_EQ(1, v.log.count("cooperative-matrix attention o")) << "one decision, logged once";
        EXPECT_EQ(!on.empty(), (info.caps & TRIT_CAP_COOP_MATRIX) != 0) << on << off;
        if (std::string(opt) == "vulkan.coop_matrix=off")
            EXPECT_NE(std::string::npos, off.find("forced off (vulkan.coop_matrix=off)")) << off;
        // lavapipe (CI) offers no cooperative matrices: the reason says so.
        if (std::string(info.name).find("llvmpipe") != std::string::npos &&
            std::string(opt) == "vulkan.coop_matrix=on")
            EXPECT_NE(std::string::npos,
                      off.find("the device does not offer VK_NV_cooperative_matrix"))
                << off;
        // With the path off, f16 prefill runs attention.comp and stays right.
        AttCase c;
        const double err = run_f16_attention(v.dev, c);
        EXPECT_LT(err, 2e-3) << c.describe();
        if (!on.empty()) {
            // The real cooperative-matrix path (a device that offers it): every coop case must
            // match the reference, at the tiles this device's limits give (D = 256 included
            // where its shared memory allows).
            EXPECT_EQ(1, v.log.count("attention d=128 prefill uses attention_coop_"));
            double worst = 0;
            for (const AttCase &cc : coop_cases()) {
                const double e = run_f16_attention(v.dev, cc);
                EXPECT_LT(e, 2e-3) << cc.describe();
                worst = std::max(worst, e);
            }
            std::printf("[ INFO     ] %s: largest error %.2e (tolerance 2e-3)\n", on.c_str(),
                        worst);
            const bool acc16 = on.find("-> f16") != std::string::npos;
            expect_prefill_paths(v.log, on,
                                 std::string("attention_coop_") + (acc16 ? "f16acc" : "f32acc"));
            EXPECT_EQ(0, v.log.count("cooperative-matrix attention turned off"))
                << v.log.first("turned off");
        } else {
            EXPECT_EQ(0, v.log.count("uses attention_coop"));
            EXPECT_EQ(1, v.log.count("attention d=128 prefill uses attention"))
                << v.log.first("attention d=128");
        }
        v.destroy();
        EXPECT_EQ(0, v.log.count("vulkan validation")) << v.log.first("vulkan validation");
    }
}

// attention_coop.comp with its fragment products as scalar loops (vulkan.coop_matrix=emulate),
// for each shape and accumulator type the selection can pick: everything of the kernel but the
// coopMat* instructions runs and must match the reference. (D = 256 does not fit lavapipe's 32 KiB
// of shared memory with these tiles and runs attention.comp there; it is checked either way, and
// takes the coop kernel where the tiles fit.) lavapipe's subgroup size (8) and shared memory fix
// the tiles: NVIDIA's (subgroup 32, 32 x 64 tiles) cannot be emulated here.
TEST(Vulkan, CoopMatrixAttentionEmulatedMatchesReference)
{
    for (const char *mode : {"emulate", "emulate-16x8", "emulate-f16acc", "emulate-16x8-f16acc"}) {
        SCOPED_TRACE(mode);
        VkContext v({std::string("vulkan.coop_matrix=") + mode, "vulkan.fp16=on",
                     "vulkan.subgroups=on", "vulkan.cache_dir=off", "vulkan.validation=on"});
        ASSERT_NE(nullptr, v.dev);
        const std::string on = v.log.first("cooperative-matrix attention on");
        if (on.empty()) {
            // The emulation still needs fp16 and pinned subgroups; lavapipe (CI) has both.
            trit_device_info info{};
            info.size = sizeof(info);
            ASSERT_EQ(TRIT_OK, trit_device_get_info(v.dev, &info));
            if (std::string(info.name).find("llvmpipe") != std::string::npos)
                ADD_FAILURE() << "not emulated on lavapipe: " << v.log.first("attention off");
            else
                std::printf("[ INFO     ] %s: not run on this device (%s)\n", mode,
                            v.log.first("attention off").c_str());
            continue;
        }
        EXPECT_NE(std::string::npos, on.find("(emulated")) << on;
        trit_device_info info{};
        info.size = sizeof(info);
        ASSERT_EQ(TRIT_OK, trit_device_get_info(v.dev, &info));
        EXPECT_EQ(0u, info.caps & TRIT_CAP_COOP_MATRIX) << "emulation is not a device capability";
        const bool acc16 = std::string(mode).find("f16acc") != std::string::npos;
        const std::string shader =
            std::string("attention_coop_emu_") + (acc16 ? "f16acc" : "f32acc");
        double worst = 0;
        for (const AttCase &c : coop_cases()) {
            const double err = run_f16_attention(v.dev, c);
            EXPECT_LT(err, 2e-3) << c.describe();
            worst = std::max(worst, err);
        }
        std::printf("[ INFO     ] %s: largest error %.2e (tolerance 2e-3)\n", mode, worst);
        expect_prefill_paths(v.log, on, shader);
        // The decode row of the mixed batch above does not change the choice; pure decode does.
        AttCase dec;
        dec.q_lens = {1, 1};
        dec.kv_lens = {700, 33};
        EXPECT_LT(run_f16_attention(v.dev, dec), 2e-3);
        EXPECT_EQ(0, v.log.count("decode uses attention_coop")) << v.log.first("decode uses");
        v.destroy();
        EXPECT_EQ(0, v.log.count("vulkan validation")) << v.log.first("vulkan validation");
    }
}

// A driver that refuses to build the cooperative-matrix pipeline: the call still succeeds on
// attention.comp, the path is turned off for the device for good with one warning naming the
// reason, and later calls do not try again. Emulated: vulkan.coop_matrix=emulate-...-reject asks
// the driver to refuse attention_coop_emu_* (VK_PIPELINE_CREATE_FAIL_ON_PIPELINE_COMPILE_REQUIRED_
// BIT) and handles the refusal as the real kernel's. Two threads meet the refusal at once.
TEST(Vulkan, CoopMatrixPipelineRefusedByTheDriverFallsBackToAttentionComp)
{
    VkContext v({"vulkan.coop_matrix=emulate-16x8-reject", "vulkan.fp16=on", "vulkan.subgroups=on",
                 "vulkan.cache_dir=off", "vulkan.validation=on"});
    ASSERT_NE(nullptr, v.dev);
    const std::string on = v.log.first("cooperative-matrix attention on");
    if (on.empty()) {
        trit_device_info info{};
        info.size = sizeof(info);
        ASSERT_EQ(TRIT_OK, trit_device_get_info(v.dev, &info));
        if (std::string(info.name).find("llvmpipe") != std::string::npos)
            ADD_FAILURE() << "not emulated on lavapipe: " << v.log.first("attention off");
        else
            std::printf("[ INFO     ] not run on this device (%s)\n",
                        v.log.first("attention off").c_str());
        return;
    }
    EXPECT_NE(std::string::npos, on.find("-reject")) << on;
    AttCase a; // d = 128
    AttCase b;
    b.H = b.Hkv = 4;
    b.D = 64;
    b.q_lens = {50};
    b.kv_lens = {130};
    b.o_dt = TRIT_DTYPE_F16;
    b.seed = 2;
    double err_a = INFINITY, err_b = INFINITY;
    std::thread ta([&] { err_a = run_f16_attention(v.dev, a); });
    std::thread tb([&] { err_b = run_f16_attention(v.dev, b); });
    ta.join();
    tb.join();
    EXPECT_LT(err_a, 2e-3) << a.describe();
    EXPECT_LT(err_b, 2e-3) << b.describe();
    const std::string warn = v.log.first("cooperative-matrix attention turned off");
    EXPECT_EQ(1, v.log.count("cooperative-matrix attention turned off")) << warn;
    EXPECT_NE(std::string::npos, warn.find("attention_coop_emu_f32acc")) << warn;
    EXPECT_NE(std::string::npos, warn.find("VK_PIPELINE_COMPILE_REQUIRED")) << warn;
    EXPECT_EQ(0, v.log.count("uses attention_coop")) << v.log.first("uses attention_coop");
    EXPECT_EQ(1, v.log.count("attention d=128 prefill uses attention_f16"))
        << v.log.first("attention d=128");
    EXPECT_EQ(1, v.log.count("attention d=64 prefill uses attention_f16"))
        << v.log.first("attention d=64");
    // Off for good: a later call (another head dim) goes straight to attention.comp.
    AttCase c;
    c.D = 80;
    c.seed = 3;
    EXPECT_LT(run_f16_attention(v.dev, c), 2e-3) << c.describe();
    EXPECT_EQ(1, v.log.count("cooperative-matrix attention turned off"));
    EXPECT_EQ(1, v.log.count("attention d=80 prefill uses attention_f16"))
        << v.log.first("attention d=80");
    v.destroy();
    EXPECT_EQ(0, v.log.count("vulkan validation")) << v.log.first("vulkan validation");
}

// attention.comp's variants without 16-bit storage (f16 through packed words and atomic stores)
// and without subgroups (one invocation per row in the softmax), and with unaligned K/V views
// (element loads instead of vector loads): f16 prefill, split-KV decode, paged, f16 out.
TEST(Vulkan, AttentionFallbacksGiveReferenceResults)
{
    for (const char *opt : {"vulkan.fp16=off", "vulkan.subgroups=off"}) {
        SCOPED_TRACE(opt);
        const std::string other =
            std::string(opt) == "vulkan.fp16=off" ? "vulkan.subgroups=on" : "vulkan.fp16=on";
        VkContext v({opt, other, "vulkan.cache_dir=off", "vulkan.validation=on"});
        ASSERT_NE(nullptr, v.dev);
        const std::string o(opt);
        std::vector<AttCase> cases;
        AttCase pre;
        pre.q_lens = {33, 2};
        pre.kv_lens = {90, 60};
        pre.o_dt = TRIT_DTYPE_F16;
        cases.push_back(pre);
        AttCase dec;
        dec.q_lens = {1};
        dec.kv_lens = {1000};
        dec.alibi = dec.sinks = true;
        dec.paged = true;
        cases.push_back(dec);
        AttCase wide;
        wide.D = 256;
        wide.H = wide.Hkv = 2;
        wide.q_lens = {17};
        wide.kv_lens = {50};
        wide.window = 20;
        wide.softcap = 10.f;
        cases.push_back(wide);
        AttCase odd; // K/V views at an odd element offset: element loads, not vector loads
        odd.q_lens = {9, 1};
        odd.kv_lens = {40, 77};
        odd.kv_offset = 3;
        cases.push_back(odd);
        for (const AttCase &c : cases)
            EXPECT_LT(run_f16_attention(v.dev, c), 2e-3) << c.describe();
        // The variant without the forced-off feature ran ("attention[_f16][_sg]").
        EXPECT_GE(v.log.count("prefill uses attention"), 1) << v.log.first("attention d=");
        EXPECT_GE(v.log.count("decode uses attention"), 1) << v.log.first("attention d=");
        EXPECT_EQ(0, v.log.count(o == "vulkan.fp16=off" ? "uses attention_f16" : "_sg ("))
            << v.log.first("attention d=");
        v.destroy();
        EXPECT_EQ(0, v.log.count("vulkan validation")) << v.log.first("vulkan validation");
    }
}
