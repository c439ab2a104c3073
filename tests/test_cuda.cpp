// test_cuda.cpp — the CUDA plugin on machines with and without a GPU. Without a driver it must
// load, negotiate its ABI, and then be skipped with a sentence that says why (the static CUDA
// runtime fails softly); with a GPU it must list CUDA devices.
#include <string>

#include "common.h"

TEST(CudaPlugin, LoadsWithADriverOrIsSkippedSayingWhy)
{
#ifndef TRIT_TEST_CUDA_PLUGIN_BUILT
    GTEST_SKIP() << "the CUDA plugin is not built here (no CUDA toolchain found by CMake)";
#else
    trit_context *ctx = tt::context();
    ASSERT_NE(nullptr, ctx);
    bool found = false;
    for (uint32_t i = 0; i < trit_context_plugin_count(ctx); i++) {
        trit_plugin_info info{};
        info.size = sizeof(info);
        ASSERT_EQ(TRIT_OK, trit_context_plugin_info(ctx, i, &info));
        if (std::string(info.name) != "cuda")
            continue;
        found = true;
        // The library loaded and answered the query: a skip can only come from init.
        EXPECT_EQ(1u, info.abi_version) << info.reason;
        if (info.state == TRIT_PLUGIN_SKIPPED) {
            std::string reason = info.reason;
            EXPECT_TRUE(reason.find("no CUDA driver") != std::string::npos ||
                        reason.find("no CUDA device") != std::string::npos ||
                        reason.find("no usable CUDA device") != std::string::npos)
                << reason;
        } else {
            EXPECT_GT(info.device_count, 0u);
            uint32_t cuda_devices = 0;
            for (uint32_t d = 0; d < trit_device_count(ctx); d++) {
                trit_device_info di{};
                di.size = sizeof(di);
                ASSERT_EQ(TRIT_OK, trit_device_get_info(tt::device(d), &di));
                if (di.backend == TRIT_BACKEND_CUDA)
                    cuda_devices++;
            }
            EXPECT_EQ(info.device_count, cuda_devices);
        }
    }
    EXPECT_TRUE(found) << "libtrit-plugin-cuda.so was built but the loader did not find it";
#endif
}
