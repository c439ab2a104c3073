// test_opencl.cpp — what only the OpenCL plugin has: every capability fallback forced off through
// its options and checked against the fp64 reference (exact INT8 accumulators included), two
// OpenCL devices side by side with copies between them and the CPU plugin, the on-disk kernel
// cache (reused by a second context; a corrupted entry detected and rebuilt), the
// CL_DEVICE_MAX_MEM_ALLOC_SIZE limit, and a missing ICD reported as a skipped plugin.
// Tests that need an OpenCL device say so and skip when there is none; CI requires the opencl
// backend (TRIT_REQUIRE_BACKENDS), so a plugin that fails to load fails the run there.
#include "common.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <mutex>

#include "gemv_run.h"
#include "reference/ref_gemv.h"

namespace {

struct LogSink {
    std::mutex mu;
    std::vector<std::string> lines;
    static void cb(void *user, trit_log_level, const char *msg)
    {
        auto *s = static_cast<LogSink *>(user);
        std::lock_guard<std::mutex> g(s->mu);
        s->lines.emplace_back(msg);
    }
    int count(const std::string &needle)
    {
        std::lock_guard<std::mutex> g(mu);
        int n = 0;
        for (auto &l : lines)
            n += l.find(needle) != std::string::npos;
        return n;
    }
    std::string all()
    {
        std::lock_guard<std::mutex> g(mu);
        std::string out;
        for (auto &l : lines)
            out += l + "\n";
        return out;
    }
};

// A context with only the plugins named and the given backend options.
struct Ctx {
    trit_context *ctx = nullptr;
    LogSink log;
    Ctx(const char *plugins, std::vector<std::string> options)
    {
        std::vector<const char *> opts;
        for (auto &o : options)
            opts.push_back(o.c_str());
        opts.push_back(nullptr);
        trit_context_options o{};
        o.size = sizeof(o);
        o.plugins = plugins;
        o.backend_options = opts.data();
        o.log = LogSink::cb;
        o.log_user = &log;
        o.log_level = TRIT_LOG_DEBUG;
        EXPECT_EQ(TRIT_OK, trit_context_create(&o, &ctx)) << trit_last_error();
    }
    ~Ctx() { trit_context_destroy(ctx); }
    std::vector<trit_device *> devices(trit_backend backend) const
    {
        std::vector<trit_device *> out;
        for (uint32_t i = 0; ctx && i < trit_device_count(ctx); i++) {
            trit_device *d = nullptr;
            trit_device_info info{};
            info.size = sizeof(info);
            if (trit_device_get(ctx, i, &d) == TRIT_OK &&
                trit_device_get_info(d, &info) == TRIT_OK && info.backend == backend)
                out.push_back(d);
        }
        return out;
    }
    std::string skip_reason() const
    {
        for (uint32_t i = 0; ctx && i < trit_context_plugin_count(ctx); i++) {
            trit_plugin_info pi{};
            pi.size = sizeof(pi);
            if (trit_context_plugin_info(ctx, i, &pi) == TRIT_OK &&
                std::string(pi.name) == "opencl")
                return pi.state == TRIT_PLUGIN_SKIPPED ? pi.reason : "loaded";
        }
        return "the opencl plugin was not found";
    }
};

std::string make_temp_dir()
{
    char tmpl[] = "/tmp/trit-ocl-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    EXPECT_NE(nullptr, d);
    return d ? d : "/tmp";
}

std::vector<std::string> list_cache(const std::string &dir)
{
    std::vector<std::string> out;
    if (DIR *d = opendir(dir.c_str())) {
        while (dirent *e = readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 6 && n.substr(n.size() - 6) == ".clbin")
                out.push_back(dir + "/" + n);
        }
        closedir(d);
    }
    return out;
}

void remove_dir(const std::string &dir)
{
    for (auto &f : list_cache(dir))
        std::remove(f.c_str());
    rmdir(dir.c_str());
}

struct GemvCase {
    int64_t m = 77, k = 1000, n = 3;
    trit_gemv_path path = TRIT_GEMV_INT8;
    trit_dtype x_dtype = TRIT_DTYPE_F32, y_dtype = TRIT_DTYPE_F32;
    trit_scale_kind scale = TRIT_SCALE_ROW;
    bool rmsnorm = true, gated = false, residual = false, bias = false;
    trit_activation act = TRIT_ACT_NONE;
    uint64_t seed = 7;
};

std::vector<float> scales_for(trit_scale_kind kind, int64_t m, int64_t k, uint64_t seed)
{
    if (kind == TRIT_SCALE_TENSOR)
        return {0.75f};
    int64_t count = kind == TRIT_SCALE_ROW ? m : m * ((k + 255) / 256);
    return tt::random_floats((size_t)count, seed, 0.5f, 1.5f);
}

// Runs one GEMV on `dev` and checks it against the fp64 reference: y within the dtype's
// tolerance, and on the INT8 path with row/tensor scales the accumulators bit for bit.
void check_gemv(trit_device *dev, const GemvCase &c)
{
    ref::GemvProblem p;
    p.m = c.m;
    p.k = c.k;
    p.n = c.n;
    p.path = c.path;
    p.act = c.act;
    p.scale_kind = c.scale;
    p.w = tt::random_ternary((size_t)(c.m * c.k), c.seed);
    p.scales = scales_for(c.scale, c.m, c.k, c.seed + 1);
    if (c.gated) {
        p.w_up = tt::random_ternary((size_t)(c.m * c.k), c.seed + 2);
        p.scales_up = scales_for(c.scale, c.m, c.k, c.seed + 3);
    }
    p.x = tt::random_floats((size_t)(c.n * c.k), c.seed + 4, -2.f, 2.f);
    tt::round_all(c.x_dtype, p.x);
    if (c.rmsnorm)
        p.rmsnorm_weight = tt::random_floats((size_t)c.k, c.seed + 5, 0.5f, 1.5f);
    if (c.bias)
        p.bias = tt::random_floats((size_t)c.m, c.seed + 6);
    if (c.residual) {
        p.residual = tt::random_floats((size_t)(c.n * c.m), c.seed + 7);
        tt::round_all(c.y_dtype, p.residual);
    }
    ref::GemvResult r = ref::gemv(p);

    const bool want_acc = c.path == TRIT_GEMV_INT8 && c.scale != TRIT_SCALE_BLOCK;
    tt::GemvRun run = tt::run_gemv(dev, p, c.x_dtype, c.y_dtype, want_acc);
    ASSERT_EQ(TRIT_OK, run.status) << trit_last_error();
    EXPECT_LT(tt::rel_error(run.y, r.y), tt::tolerance(c.y_dtype));
    if (want_acc)
        EXPECT_EQ(r.acc, run.acc) << "INT8 accumulators differ from the exact reference";
}

std::vector<GemvCase> fallback_cases()
{
    std::vector<GemvCase> cases;
    for (int64_t n : {1, 3, 16}) {
        GemvCase c;
        c.n = n;
        c.seed = 100 + (uint64_t)n;
        cases.push_back(c); // INT8 + RMSNorm, exact accumulators
        c.path = TRIT_GEMV_FLOAT;
        c.bias = true;
        c.act = TRIT_ACT_GELU;
        cases.push_back(c);
    }
    GemvCase c;
    c.m = 30;
    c.k = 513;
    c.n = 5;
    c.scale = TRIT_SCALE_BLOCK;
    c.gated = true;
    c.rmsnorm = false;
    c.residual = true;
    c.act = TRIT_ACT_SILU;
    c.x_dtype = c.y_dtype = TRIT_DTYPE_F16;
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8}) {
        c.path = path;
        cases.push_back(c);
    }
    c.gated = false;
    c.scale = TRIT_SCALE_TENSOR;
    c.rmsnorm = true;
    c.path = TRIT_GEMV_INT8;
    c.x_dtype = TRIT_DTYPE_F16;
    c.y_dtype = TRIT_DTYPE_F32;
    cases.push_back(c);
    return cases;
}

class OpenclFallback : public ::testing::TestWithParam<const char *> {};

// Each capability forced off makes the kernels take their fallback path (local-memory
// reductions, emulated int8 dot, vload_half, float-float RMSNorm, corrected division); every
// path must still match the reference, INT8 accumulators exactly.
TEST_P(OpenclFallback, MatchesReference)
{
    std::string dir = make_temp_dir();
    std::vector<std::string> opts = {std::string("opencl.cache_dir=") + dir};
    std::string spec = GetParam();
    for (size_t pos = 0; !spec.empty();) {
        size_t comma = spec.find(',', pos);
        opts.push_back("opencl." + spec.substr(pos, comma - pos) + "=off");
        if (comma == std::string::npos)
            break;
        pos = comma + 1;
    }
    Ctx c("opencl", opts);
    auto devs = c.devices(TRIT_BACKEND_OPENCL);
    if (devs.empty())
        GTEST_SKIP() << "no OpenCL device: " << c.skip_reason();
    for (trit_device *d : devs) {
        trit_device_info info{};
        info.size = sizeof(info);
        TRIT_ASSERT_OK(trit_device_get_info(d, &info));
        if (spec.find("fp16") != std::string::npos)
            EXPECT_EQ(0u, info.caps & TRIT_CAP_FP16);
        if (spec.find("subgroups") != std::string::npos)
            EXPECT_EQ(0u, info.caps & TRIT_CAP_SUBGROUPS);
        if (spec.find("int_dot") != std::string::npos)
            EXPECT_EQ(0u, info.caps & TRIT_CAP_INT8_DOT);
        for (const GemvCase &gc : fallback_cases()) {
            SCOPED_TRACE(std::string(trit_device_label(d)) + " off: " + spec +
                         " M=" + std::to_string(gc.m) + " K=" + std::to_string(gc.k) +
                         " N=" + std::to_string(gc.n) + (gc.path ? " int8" : " float") +
                         (gc.gated ? " gated" : ""));
            check_gemv(d, gc);
        }
    }
    remove_dir(dir);
}

INSTANTIATE_TEST_SUITE_P(Options, OpenclFallback,
                         ::testing::Values("", "fp16", "subgroups", "int_dot", "fp64",
                                           "correct_div",
                                           "fp16,subgroups,int_dot,fp64,correct_div"),
                         [](const ::testing::TestParamInfo<const char *> &info) {
                             std::string n = info.param[0] ? info.param : "none";
                             for (auto &ch : n)
                                 if (!std::isalnum((unsigned char)ch))
                                     ch = '_';
                             return n;
                         });

// Two OpenCL devices (POCL_DEVICES="pthread pthread" in CI) each run the GEMV, and bytes travel
// opencl0 -> opencl1 -> cpu -> opencl0 intact (staged by the host across devices).
TEST(Opencl, TwoDevicesRunAndCopyBetweenEachOtherAndTheCpu)
{
    std::string dir = make_temp_dir();
    Ctx c("opencl,cpu", {"opencl.cache_dir=" + dir});
    auto ocl = c.devices(TRIT_BACKEND_OPENCL);
    auto cpu = c.devices(TRIT_BACKEND_CPU);
    if (ocl.size() < 2)
        GTEST_SKIP() << "needs two OpenCL devices (found " << ocl.size()
                     << "; set POCL_DEVICES=\"pthread pthread\"): " << c.skip_reason();
    ASSERT_FALSE(cpu.empty());
    GemvCase gc;
    check_gemv(ocl[0], gc);
    check_gemv(ocl[1], gc);

    const uint64_t bytes = 1 << 20;
    std::vector<uint8_t> data(bytes);
    for (size_t i = 0; i < bytes; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 9));
    tt::Stream s0(ocl[0]), s1(ocl[1]), sc(cpu[0]);
    tt::Buffer a(ocl[0], bytes), b(ocl[1], bytes), h(cpu[0], bytes), back(ocl[0], bytes + 64);
    TRIT_ASSERT_OK(trit_buffer_upload(s0, a, 0, data.data(), bytes));
    TRIT_ASSERT_OK(trit_buffer_copy(s0, a, 0, b, 0, bytes));
    TRIT_ASSERT_OK(trit_buffer_copy(s1, b, 0, h, 0, bytes));
    TRIT_ASSERT_OK(trit_buffer_fill(s0, back, 0, 0xAB, bytes + 64));
    TRIT_ASSERT_OK(trit_stream_sync(s0)); // the next copy writes `back` from another stream
    TRIT_ASSERT_OK(trit_buffer_copy(sc, h, 0, back, 64, bytes));
    std::vector<uint8_t> got = tt::download_bytes(s0, back);
    ASSERT_EQ(bytes + 64, got.size());
    for (int i = 0; i < 64; i++)
        ASSERT_EQ(0xAB, got[(size_t)i]) << "byte " << i << " before the copied range";
    EXPECT_TRUE(std::equal(data.begin(), data.end(), got.begin() + 64));
    // An event recorded on one OpenCL device, waited for by a stream of the other.
    trit_event *ev = nullptr;
    TRIT_ASSERT_OK(trit_event_create(ocl[0], &ev));
    TRIT_EXPECT_OK(trit_event_record(ev, s0));
    TRIT_EXPECT_OK(trit_stream_wait_event(s1, ev));
    TRIT_EXPECT_OK(trit_event_sync(ev));
    TRIT_EXPECT_OK(trit_stream_sync(s1));
    trit_event_destroy(ev);
    remove_dir(dir);
}

// A second context finds the binaries the first one stored and builds nothing; a corrupted
// entry is detected by its checksum, rebuilt (with a warning), and the result is still right.
TEST(Opencl, KernelCacheIsReusedAndCorruptEntriesAreRebuilt)
{
    std::string dir = make_temp_dir();
    GemvCase gc;
    {
        Ctx c("opencl", {"opencl.cache_dir=" + dir});
        auto devs = c.devices(TRIT_BACKEND_OPENCL);
        if (devs.empty())
            GTEST_SKIP() << "no OpenCL device: " << c.skip_reason();
        check_gemv(devs[0], gc);
        EXPECT_GE(c.log.count("built OpenCL program gemv"), 1) << c.log.all();
        EXPECT_EQ(0, c.log.count("kernel cache: loaded")) << c.log.all();
    }
    auto entries = list_cache(dir);
    ASSERT_FALSE(entries.empty()) << "nothing was cached in " << dir;
    {
        Ctx c("opencl", {"opencl.cache_dir=" + dir});
        check_gemv(c.devices(TRIT_BACKEND_OPENCL)[0], gc);
        EXPECT_GE(c.log.count("kernel cache: loaded gemv"), 1) << c.log.all();
        EXPECT_EQ(0, c.log.count("built OpenCL program")) << c.log.all();
    }
    for (auto &path : entries) { // flip one byte in the middle of every binary
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(0, std::ios::end);
        std::streamoff size = f.tellg();
        ASSERT_GT(size, 200);
        f.seekg(size / 2);
        char ch = 0;
        f.read(&ch, 1);
        ch = (char)(ch ^ 0x5a);
        f.seekp(size / 2);
        f.write(&ch, 1);
    }
    {
        Ctx c("opencl", {"opencl.cache_dir=" + dir});
        check_gemv(c.devices(TRIT_BACKEND_OPENCL)[0], gc);
        EXPECT_GE(c.log.count("checksum mismatch"), 1) << c.log.all();
        EXPECT_GE(c.log.count("built OpenCL program gemv"), 1) << c.log.all();
    }
    {
        Ctx c("opencl", {"opencl.cache_dir=" + dir});
        check_gemv(c.devices(TRIT_BACKEND_OPENCL)[0], gc);
        EXPECT_GE(c.log.count("kernel cache: loaded gemv"), 1) << c.log.all();
        EXPECT_EQ(0, c.log.count("corrupt")) << c.log.all();
    }
    {
        // A truncated entry is as bad as a flipped byte.
        for (auto &path : list_cache(dir))
            ASSERT_EQ(0, truncate(path.c_str(), 100));
        Ctx c("opencl", {"opencl.cache_dir=" + dir});
        check_gemv(c.devices(TRIT_BACKEND_OPENCL)[0], gc);
        EXPECT_GE(c.log.count("corrupt or stale"), 1) << c.log.all();
    }
    remove_dir(dir);
}

TEST(Opencl, BufferAboveMaxAllocSizeIsOutOfMemoryWithTheLimit)
{
    Ctx c("opencl", {"opencl.cache_dir=off"});
    auto devs = c.devices(TRIT_BACKEND_OPENCL);
    if (devs.empty())
        GTEST_SKIP() << "no OpenCL device: " << c.skip_reason();
    trit_device_info info{};
    info.size = sizeof(info);
    TRIT_ASSERT_OK(trit_device_get_info(devs[0], &info));
    ASSERT_GT(info.max_buffer_bytes, 0u);
    trit_buffer *b = nullptr;
    EXPECT_EQ(TRIT_ERROR_OUT_OF_MEMORY, trit_buffer_alloc(devs[0], info.max_buffer_bytes + 1, &b));
    EXPECT_EQ(nullptr, b);
    // The limit is CL_DEVICE_MAX_MEM_ALLOC_SIZE, reported as max_buffer_bytes and named in the
    // sentence.
    EXPECT_NE(nullptr,
              std::strstr(trit_last_error(), std::to_string(info.max_buffer_bytes).c_str()))
        << trit_last_error();
}

// A kernel that fails to compile must say why: the status sentence carries the first error line
// of the build log. The extra build option breaks every program on purpose.
TEST(Opencl, KernelBuildFailureReportsTheBuildLogsFirstError)
{
    Ctx c("opencl", {"opencl.cache_dir=off", "opencl.build_options=-Dfloat=trit_no_such_type"});
    ASSERT_NE(nullptr, c.ctx);
    ASSERT_GT(trit_device_count(c.ctx), 0u) << c.skip_reason();
    trit_device *d = nullptr;
    ASSERT_EQ(TRIT_OK, trit_device_get(c.ctx, 0, &d));
    const int64_t m = 8, k = 64;
    auto w = tt::random_ternary(m * k, 3);
    trit_ternary_desc desc{};
    desc.size = sizeof(desc);
    desc.rows = m;
    desc.cols = k;
    desc.format = TRIT_WEIGHTS_I8;
    desc.data = w.data();
    desc.data_bytes = w.size();
    trit_ternary *t = nullptr;
    trit_status st = trit_ternary_upload(d, &desc, &t);
    if (st == TRIT_OK) { // the upload ran no kernel: the GEMV is the first build
        tt::Stream s(d);
        tt::DeviceTensor x = tt::upload(d, s, TRIT_DTYPE_F32, {1, k}, tt::random_floats(k, 4));
        tt::DeviceTensor y = tt::poisoned(d, s, TRIT_DTYPE_F32, {1, m});
        st = trit_ternary_gemv(s, t, &x.t, &y.t, nullptr);
        if (st == TRIT_OK)
            st = trit_stream_sync(s);
        trit_ternary_free(t);
    }
    EXPECT_EQ(TRIT_ERROR_BACKEND, st);
    std::string msg = trit_last_error();
    EXPECT_NE(std::string::npos, msg.find("building OpenCL program")) << msg;
    EXPECT_NE(std::string::npos, msg.find("error")) << msg;
    EXPECT_NE(std::string::npos, msg.find("trit_no_such_type")) << msg;
}

} // namespace
