// test_support.cpp — implementation of common.h, and the check that the backends CI requires
// (TRIT_REQUIRE_BACKENDS=cpu,opencl,...) really loaded.
#include "common.h"

#include <mutex>
#include <sstream>

namespace tt {
namespace {

trit_context *g_context = nullptr;
std::once_flag g_once;

class ContextEnvironment : public ::testing::Environment {
  public:
    void TearDown() override
    {
        trit_context_destroy(g_context);
        g_context = nullptr;
    }
};

// Registered at static-init time so it outlives every test.
const auto *g_env = ::testing::AddGlobalTestEnvironment(new ContextEnvironment);

} // namespace

trit_context *context()
{
    std::call_once(g_once, [] {
        trit_context_options opts{};
        opts.size = sizeof(opts);
        if (trit_context_create(&opts, &g_context) != TRIT_OK) {
            ADD_FAILURE() << "trit_context_create failed: " << trit_last_error();
            g_context = nullptr;
        }
    });
    return g_context;
}

std::vector<uint32_t> device_indices()
{
    std::vector<uint32_t> out;
    trit_context *ctx = context();
    if (!ctx)
        return out;
    for (uint32_t i = 0; i < trit_device_count(ctx); i++)
        out.push_back(i);
    return out;
}

trit_device *device(uint32_t index)
{
    trit_device *d = nullptr;
    EXPECT_EQ(TRIT_OK, trit_device_get(context(), index, &d)) << trit_last_error();
    return d;
}

std::string device_param_name(const ::testing::TestParamInfo<uint32_t> &info)
{
    std::string label = trit_device_label(device(info.param));
    std::string out;
    for (char c : label)
        if (std::isalnum((unsigned char)c))
            out += c;
    return out;
}

std::vector<uint8_t> to_bytes(trit_dtype dt, const std::vector<float> &v)
{
    std::vector<uint8_t> out(v.size() * trit_dtype_size(dt));
    for (size_t i = 0; i < v.size(); i++) {
        switch (dt) {
        case TRIT_DTYPE_F32: std::memcpy(&out[i * 4], &v[i], 4); break;
        case TRIT_DTYPE_F16: {
            uint16_t h = trit_float_to_half(v[i]);
            std::memcpy(&out[i * 2], &h, 2);
            break;
        }
        case TRIT_DTYPE_BF16: {
            uint16_t h = trit_float_to_bf16(v[i]);
            std::memcpy(&out[i * 2], &h, 2);
            break;
        }
        case TRIT_DTYPE_I8: out[i] = (uint8_t)(int8_t)std::lrint(v[i]); break;
        case TRIT_DTYPE_I32: {
            int32_t x = (int32_t)std::lrint(v[i]);
            std::memcpy(&out[i * 4], &x, 4);
            break;
        }
        }
    }
    return out;
}

std::vector<float> from_bytes(trit_dtype dt, const std::vector<uint8_t> &bytes)
{
    size_t es = trit_dtype_size(dt);
    std::vector<float> out(bytes.size() / es);
    for (size_t i = 0; i < out.size(); i++) {
        switch (dt) {
        case TRIT_DTYPE_F32: std::memcpy(&out[i], &bytes[i * 4], 4); break;
        case TRIT_DTYPE_F16: {
            uint16_t h;
            std::memcpy(&h, &bytes[i * 2], 2);
            out[i] = trit_half_to_float(h);
            break;
        }
        case TRIT_DTYPE_BF16: {
            uint16_t h;
            std::memcpy(&h, &bytes[i * 2], 2);
            out[i] = trit_bf16_to_float(h);
            break;
        }
        case TRIT_DTYPE_I8: out[i] = (float)(int8_t)bytes[i]; break;
        case TRIT_DTYPE_I32: {
            int32_t x;
            std::memcpy(&x, &bytes[i * 4], 4);
            out[i] = (float)x;
            break;
        }
        }
    }
    return out;
}

static int64_t numel(const std::vector<int64_t> &shape)
{
    int64_t n = 1;
    for (auto s : shape)
        n *= s;
    return n;
}

DeviceTensor upload(trit_device *dev, trit_stream *s, trit_dtype dt, std::vector<int64_t> shape,
                    const std::vector<float> &data)
{
    DeviceTensor out;
    EXPECT_EQ((size_t)numel(shape), data.size());
    std::vector<uint8_t> bytes = to_bytes(dt, data);
    out.buf = Buffer(dev, bytes.size());
    EXPECT_EQ(TRIT_OK, trit_buffer_upload(s, out.buf, 0, bytes.data(), bytes.size()))
        << trit_last_error();
    EXPECT_EQ(TRIT_OK, trit_stream_sync(s)) << trit_last_error();
    EXPECT_EQ(TRIT_OK, trit_tensor_make(out.buf, 0, dt, (uint32_t)shape.size(), shape.data(),
                                        nullptr, &out.t))
        << trit_last_error();
    return out;
}

DeviceTensor poisoned(trit_device *dev, trit_stream *s, trit_dtype dt, std::vector<int64_t> shape)
{
    DeviceTensor out;
    uint64_t bytes = (uint64_t)numel(shape) * trit_dtype_size(dt);
    out.buf = Buffer(dev, bytes);
    EXPECT_EQ(TRIT_OK, trit_buffer_fill(s, out.buf, 0, 0xFF, bytes)) << trit_last_error();
    EXPECT_EQ(TRIT_OK, trit_stream_sync(s)) << trit_last_error();
    EXPECT_EQ(TRIT_OK, trit_tensor_make(out.buf, 0, dt, (uint32_t)shape.size(), shape.data(),
                                        nullptr, &out.t))
        << trit_last_error();
    return out;
}

std::vector<float> download(trit_stream *s, const trit_tensor &t)
{
    int64_t n = 1;
    for (uint32_t d = 0; d < t.rank; d++)
        n *= t.shape[d];
    std::vector<uint8_t> bytes((size_t)n * trit_dtype_size(t.dtype));
    EXPECT_EQ(TRIT_OK, trit_buffer_download(s, t.buffer, t.offset, bytes.data(), bytes.size()))
        << trit_last_error();
    EXPECT_EQ(TRIT_OK, trit_stream_sync(s)) << trit_last_error();
    return from_bytes(t.dtype, bytes);
}

std::vector<uint8_t> download_bytes(trit_stream *s, trit_buffer *b)
{
    std::vector<uint8_t> bytes(trit_buffer_size(b));
    EXPECT_EQ(TRIT_OK, trit_buffer_download(s, b, 0, bytes.data(), bytes.size()))
        << trit_last_error();
    EXPECT_EQ(TRIT_OK, trit_stream_sync(s)) << trit_last_error();
    return bytes;
}

Ternary upload_ternary(trit_device *dev, const std::vector<int8_t> &w, int64_t rows, int64_t cols,
                       trit_scale_kind kind, const std::vector<float> &scales)
{
    Ternary out;
    trit_ternary_desc desc{};
    desc.size = sizeof(desc);
    desc.rows = rows;
    desc.cols = cols;
    desc.format = TRIT_WEIGHTS_I8;
    desc.data = w.data();
    desc.data_bytes = w.size();
    desc.scale_kind = kind;
    desc.scales = scales.empty() ? nullptr : scales.data();
    EXPECT_EQ(TRIT_OK, trit_ternary_upload(dev, &desc, &out.t)) << trit_last_error();
    return out;
}

} // namespace tt

// CI names the backends that must be present; a plugin that fails to load then fails this test
// instead of silently shrinking the conformance suite.
TEST(Backends, RequiredBackendsAreLoaded)
{
    const char *req = std::getenv("TRIT_REQUIRE_BACKENDS");
    trit_context *ctx = tt::context();
    ASSERT_NE(nullptr, ctx);
    if (!req || !*req)
        GTEST_SKIP() << "TRIT_REQUIRE_BACKENDS is not set";
    std::stringstream ss(req);
    std::string name;
    while (std::getline(ss, name, ',')) {
        if (name.empty())
            continue;
        bool found = false;
        std::string reasons;
        for (uint32_t i = 0; i < trit_context_plugin_count(ctx); i++) {
            trit_plugin_info info{};
            info.size = sizeof(info);
            ASSERT_EQ(TRIT_OK, trit_context_plugin_info(ctx, i, &info));
            if (name == info.name) {
                if (info.state == TRIT_PLUGIN_LOADED && info.device_count > 0)
                    found = true;
                else
                    reasons += std::string(info.path) + ": " + info.reason + "; ";
            }
        }
        EXPECT_TRUE(found) << "required backend '" << name << "' is not loaded"
                           << (reasons.empty() ? std::string(" (plugin not found)")
                                               : ": " + reasons);
    }
}
