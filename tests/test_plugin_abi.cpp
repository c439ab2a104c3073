// test_plugin_abi.cpp — what the loader does with plugins of every ABI vintage and with plugins
// that cannot start, and that a context finds the plugins next to libtrit.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "common.h"
#include "trit/trit_plugin.h"

namespace {

std::string fake_dirs()
{
    std::string dirs;
    for (const char *v :
         {"current", "old", "newer", "future", "ancient", "broken", "nodevice", "noquery"}) {
        if (!dirs.empty())
            dirs += ":";
        dirs += std::string(TRIT_TEST_FAKE_PLUGIN_DIR) + "/" + v;
    }
    return dirs;
}

struct Ctx {
    trit_context *c = nullptr;
    ~Ctx() { trit_context_destroy(c); }
};

std::map<std::string, trit_plugin_info> plugin_infos(trit_context *ctx)
{
    std::map<std::string, trit_plugin_info> out;
    for (uint32_t i = 0; i < trit_context_plugin_count(ctx); i++) {
        trit_plugin_info info{};
        info.size = sizeof(info);
        EXPECT_EQ(TRIT_OK, trit_context_plugin_info(ctx, i, &info));
        out[info.name] = info;
    }
    return out;
}

// A context that sees only the fake plugins (the filter keeps libtrit's own directory out).
trit_status make_fake_context(Ctx &ctx, const char *filter = nullptr)
{
    std::string dirs = fake_dirs();
    trit_context_options o{};
    o.size = sizeof(o);
    o.plugin_path = dirs.c_str();
    o.plugins = filter ? filter
                       : "fake-current,fake-old,fake-newer,fake-future,fake-ancient,fake-broken,"
                         "fake-nodevice,fake-noquery";
    return trit_context_create(&o, &ctx.c);
}

} // namespace

TEST(PluginAbi, CurrentPluginLoadsWithItsDevices)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx, "fake-current"));
    auto infos = plugin_infos(ctx.c);
    ASSERT_EQ(1u, infos.size());
    EXPECT_EQ(TRIT_PLUGIN_LOADED, infos["fake-current"].state) << infos["fake-current"].reason;
    EXPECT_EQ(1u, infos["fake-current"].abi_version);
    EXPECT_EQ(2u, infos["fake-current"].device_count);
    ASSERT_EQ(2u, trit_device_count(ctx.c));
    trit_device *d = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx.c, 1, &d));
    EXPECT_STREQ("fake-current:1", trit_device_label(d));
    trit_device_info info{};
    info.size = sizeof(info);
    TRIT_ASSERT_OK(trit_device_get_info(d, &info));
    EXPECT_EQ(TRIT_BACKEND_OTHER, info.backend);
    EXPECT_STREQ("Fake device 1", info.name);
}

TEST(PluginAbi, OlderPluginWithShorterVtableLoadsAndReportsOpsUnsupported)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx, "fake-old"));
    auto infos = plugin_infos(ctx.c);
    ASSERT_EQ(TRIT_PLUGIN_LOADED, infos["fake-old"].state) << infos["fake-old"].reason;
    ASSERT_EQ(2u, trit_device_count(ctx.c));
    trit_device *d = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx.c, 0, &d));
    // Slots past the plugin's vtable are NULL: ops are unsupported, never called.
    trit_op_desc desc{};
    desc.size = sizeof(desc);
    desc.op = TRIT_OP_GEMV;
    int ok = 1;
    char reason[256] = "";
    TRIT_ASSERT_OK(trit_device_supports(d, &desc, &ok, reason, sizeof(reason)));
    EXPECT_EQ(0, ok);
    EXPECT_NE(std::string(reason).find("does not implement"), std::string::npos) << reason;
    // Uploading a ternary matrix needs a slot the old plugin lacks: a clean error.
    std::vector<int8_t> w(4 * 8, 1);
    trit_ternary_desc td{};
    td.size = sizeof(td);
    td.rows = 4;
    td.cols = 8;
    td.format = TRIT_WEIGHTS_I8;
    td.data = w.data();
    td.data_bytes = w.size();
    trit_ternary *t = nullptr;
    EXPECT_EQ(TRIT_ERROR_UNSUPPORTED, trit_ternary_upload(d, &td, &t));
    EXPECT_EQ(nullptr, t);
    EXPECT_STRNE("", trit_last_error());
    // Buffers still work.
    tt::Stream s(d);
    tt::Buffer b(d, 64);
    std::vector<uint8_t> in(64, 7), out(64, 0);
    TRIT_ASSERT_OK(trit_buffer_upload(s, b, 0, in.data(), 64));
    TRIT_ASSERT_OK(trit_buffer_download(s, b, 0, out.data(), 64));
    TRIT_ASSERT_OK(trit_stream_sync(s));
    EXPECT_EQ(in, out);
    // Events are past its vtable too.
    trit_event *e = nullptr;
    EXPECT_EQ(TRIT_ERROR_UNSUPPORTED, trit_event_create(d, &e));
}

TEST(PluginAbi, NewerPluginServingOlderHostLoads)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx, "fake-newer"));
    auto infos = plugin_infos(ctx.c);
    EXPECT_EQ(TRIT_PLUGIN_LOADED, infos["fake-newer"].state) << infos["fake-newer"].reason;
    EXPECT_EQ(2u, infos["fake-newer"].abi_version);
    EXPECT_EQ(2u, trit_device_count(ctx.c));
}

TEST(PluginAbi, PluginNeedingNewerHostIsSkippedWithReason)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx, "fake-future"));
    auto infos = plugin_infos(ctx.c);
    ASSERT_EQ(1u, infos.size());
    EXPECT_EQ(TRIT_PLUGIN_SKIPPED, infos["fake-future"].state);
    EXPECT_EQ(3u, infos["fake-future"].abi_version);
    EXPECT_NE(std::string(infos["fake-future"].reason).find("needs host ABI 3"), std::string::npos)
        << infos["fake-future"].reason;
    EXPECT_EQ(0u, trit_device_count(ctx.c));
}

TEST(PluginAbi, AncientPluginIsSkippedWithReason)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx, "fake-ancient"));
    auto infos = plugin_infos(ctx.c);
    EXPECT_EQ(TRIT_PLUGIN_SKIPPED, infos["fake-ancient"].state);
    EXPECT_NE(std::string(infos["fake-ancient"].reason).find("older than the oldest"),
              std::string::npos)
        << infos["fake-ancient"].reason;
}

TEST(PluginAbi, PluginWhoseInitFailsIsSkippedWithItsSentence)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx, "fake-broken"));
    auto infos = plugin_infos(ctx.c);
    EXPECT_EQ(TRIT_PLUGIN_SKIPPED, infos["fake-broken"].state);
    EXPECT_NE(std::string(infos["fake-broken"].reason).find("no driver installed"),
              std::string::npos)
        << infos["fake-broken"].reason;
    // A skipped plugin's failure is not left behind as the caller's error.
    EXPECT_STREQ("", trit_last_error());
}

TEST(PluginAbi, PluginWithoutDevicesIsSkipped)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx, "fake-nodevice"));
    auto infos = plugin_infos(ctx.c);
    EXPECT_EQ(TRIT_PLUGIN_SKIPPED, infos["fake-nodevice"].state);
    EXPECT_NE(std::string(infos["fake-nodevice"].reason).find("no device"), std::string::npos);
}

TEST(PluginAbi, LibraryWithoutQuerySymbolIsSkipped)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx, "fake-noquery"));
    auto infos = plugin_infos(ctx.c);
    EXPECT_EQ(TRIT_PLUGIN_SKIPPED, infos["fake-noquery"].state);
    EXPECT_NE(std::string(infos["fake-noquery"].reason).find(TRIT_PLUGIN_QUERY_SYMBOL),
              std::string::npos);
}

TEST(PluginAbi, FileThatIsNotALibraryIsSkippedWithDlopenError)
{
    char tmpl[] = "/tmp/trit-plugin-test-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(tmpl));
    std::string dir = tmpl, path = dir + "/libtrit-plugin-garbage.so";
    {
        std::ofstream f(path);
        f << "this is not an ELF file";
    }
    trit_context_options o{};
    o.size = sizeof(o);
    o.plugin_path = dir.c_str();
    o.plugins = "garbage";
    Ctx ctx;
    TRIT_ASSERT_OK(trit_context_create(&o, &ctx.c));
    auto infos = plugin_infos(ctx.c);
    EXPECT_EQ(TRIT_PLUGIN_SKIPPED, infos["garbage"].state);
    EXPECT_NE(std::string(infos["garbage"].reason).find("cannot be loaded"), std::string::npos)
        << infos["garbage"].reason;
    std::remove(path.c_str());
    rmdir(dir.c_str());
}

TEST(PluginAbi, AllVariantsTogetherLoadOnlyCompatibleOnes)
{
    Ctx ctx;
    TRIT_ASSERT_OK(make_fake_context(ctx));
    auto infos = plugin_infos(ctx.c);
    EXPECT_EQ(8u, infos.size());
    uint32_t loaded = 0;
    for (auto &kv : infos)
        if (kv.second.state == TRIT_PLUGIN_LOADED)
            loaded++;
    EXPECT_EQ(3u, loaded); // current, old, newer
    EXPECT_EQ(6u, trit_device_count(ctx.c));
}

TEST(PluginLoader, FindsPluginsInLibtritsOwnDirectoryWithoutAPath)
{
    // No plugin_path and TRIT_PLUGIN_PATH unset: libtrit's directory holds the CPU plugin.
    std::string saved = getenv("TRIT_PLUGIN_PATH") ? getenv("TRIT_PLUGIN_PATH") : "";
    unsetenv("TRIT_PLUGIN_PATH");
    Ctx ctx;
    trit_context_options o{};
    o.size = sizeof(o);
    o.plugins = "cpu";
    trit_status st = trit_context_create(&o, &ctx.c);
    if (!saved.empty())
        setenv("TRIT_PLUGIN_PATH", saved.c_str(), 1);
    TRIT_ASSERT_OK(st);
    auto infos = plugin_infos(ctx.c);
    ASSERT_EQ(1u, infos.count("cpu"));
    EXPECT_EQ(TRIT_PLUGIN_LOADED, infos["cpu"].state) << infos["cpu"].reason;
}

TEST(PluginLoader, BadBackendOptionMakesThePluginSkipWithReason)
{
    const char *opts[] = {"cpu.threads=lots", nullptr};
    trit_context_options o{};
    o.size = sizeof(o);
    o.plugins = "cpu";
    o.backend_options = opts;
    Ctx ctx;
    TRIT_ASSERT_OK(trit_context_create(&o, &ctx.c));
    auto infos = plugin_infos(ctx.c);
    EXPECT_EQ(TRIT_PLUGIN_SKIPPED, infos["cpu"].state);
    EXPECT_NE(std::string(infos["cpu"].reason).find("threads"), std::string::npos)
        << infos["cpu"].reason;
}

TEST(PluginLoader, MalformedBackendOptionIsRejected)
{
    const char *opts[] = {"threads=2", nullptr};
    trit_context_options o{};
    o.size = sizeof(o);
    o.backend_options = opts;
    trit_context *c = nullptr;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_context_create(&o, &c));
    EXPECT_EQ(nullptr, c);
    EXPECT_NE(std::string(trit_last_error()).find("threads=2"), std::string::npos);
}

TEST(PluginLoader, ThreadOptionReachesTheCpuPlugin)
{
    const char *opts[] = {"cpu.threads=1", nullptr};
    trit_context_options o{};
    o.size = sizeof(o);
    o.plugins = "cpu";
    o.backend_options = opts;
    Ctx ctx;
    TRIT_ASSERT_OK(trit_context_create(&o, &ctx.c));
    ASSERT_EQ(1u, trit_device_count(ctx.c));
    trit_device *d = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx.c, 0, &d));
    trit_device_info info{};
    info.size = sizeof(info);
    TRIT_ASSERT_OK(trit_device_get_info(d, &info));
    EXPECT_EQ(1u, info.compute_units);
}
