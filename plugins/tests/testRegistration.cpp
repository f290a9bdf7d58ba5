// Registration of the two plugin libraries into a registry with TensorRT's semantics
// (fakePluginRegistry.h). This executable defines libnvinfer's getPluginRegistry and getLogger
// (exported), where libsoftmask_trt_plugin_autoregister.so looks for them when it is dlopen()ed.
// With SOFTMASK_PREREGISTERED, a creator of the same name, version and namespace is in the global
// registry before that library loads (the case of both libraries in one process).
#include "fakePluginRegistry.h"
#include "fakeTensorRT.h"
#include "softMaskedAttentionPlugin.h"
#include "testHarness.h"

#include <NvInferVersion.h>

#include <dlfcn.h>

#include <cstring>
#include <string>

namespace
{

softmask_test::FakePluginRegistry gGlobalRegistry;
softmask_test::RecordingLogger gGlobalLogger;

void* dlopenOrFail(char const* path)
{
    void* library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr)
    {
        ::softmask_test::fail(__FILE__, __LINE__, std::string("dlopen failed: ") + dlerror());
    }
    return library;
}

} // namespace

// Stand-ins for libnvinfer's exported C functions (NvInferRuntime.h).
extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
{
    return &gGlobalRegistry;
}

extern "C" __attribute__((visibility("default"))) nvinfer1::ILogger* getLogger() noexcept
{
    return &gGlobalLogger;
}

#ifndef SOFTMASK_PREREGISTERED

SOFTMASK_TEST(loadLibraryRegistersTheCreatorAndRefusesASecondLoad)
{
    softmask_test::FakePluginRegistry registry;
    if (registry.loadLibrary(SOFTMASK_PLUGIN_LIBRARY) == nullptr)
    {
        ::softmask_test::fail(__FILE__, __LINE__, "loadLibrary failed: " + registry.lastLoadError);
    }
    nvinfer1::IPluginCreatorInterface* creator = registry.getCreator("SoftMaskedAttention", "1", "");
    CHECK(creator != nullptr);
    CHECK_EQ(std::string(creator->getInterfaceInfo().kind), std::string("PLUGIN CREATOR_V3ONE"));
    // What TensorRT does with a library whose creators it holds: softmask.plugins.load_into_tensorrt
    // therefore looks the creator up before loading.
    CHECK(registry.loadLibrary(SOFTMASK_PLUGIN_LIBRARY) == nullptr);
    int32_t count = 0;
    registry.getAllCreators(&count);
    CHECK_EQ(count, 1);
}

#if NV_TENSORRT_MAJOR < 11
SOFTMASK_TEST(theDeprecatedCreatorListOfOnnxRuntimesProviderDoesNotShowTheV3Creator)
{
    // ONNX Runtime's TensorRT provider builds its "trt.plugins" custom ops from
    // getPluginCreatorList, which holds IPluginCreator (V1/V2) creators only.
    softmask_test::FakePluginRegistry registry;
    CHECK(registry.loadLibrary(SOFTMASK_PLUGIN_LIBRARY) != nullptr);
    int32_t v1 = -1;
    registry.getPluginCreatorList(&v1);
    CHECK_EQ(v1, 0);
    CHECK(registry.getPluginCreator("SoftMaskedAttention", "1", "") == nullptr);
}
#endif

SOFTMASK_TEST(theAutoregisterLibraryRegistersItselfWhenDlopened)
{
    CHECK(gGlobalRegistry.getCreator("SoftMaskedAttention", "1", "") == nullptr);
    dlopenOrFail(SOFTMASK_AUTOREGISTER_LIBRARY);
    nvinfer1::IPluginCreatorInterface* creator = gGlobalRegistry.getCreator("SoftMaskedAttention", "1", "");
    CHECK(creator != nullptr);
    CHECK_EQ(std::string(creator->getInterfaceInfo().kind), std::string("PLUGIN CREATOR_V3ONE"));
    CHECK(gGlobalLogger.errors().empty());
    CHECK(gGlobalLogger.warnings().empty());
}

SOFTMASK_TEST(loadingTheDynamicLibraryAfterTheAutoregisterOneIsRefused)
{
    CHECK(gGlobalRegistry.loadLibrary(SOFTMASK_PLUGIN_LIBRARY) == nullptr);
    CHECK_CONTAINS(gGlobalRegistry.lastLoadError, "already registered");
}

#else

SOFTMASK_TEST(theAutoregisterLibraryReportsARefusalAndKeepsTheRegisteredCreator)
{
    softmask::plugin::SoftMaskedAttentionPluginCreator registeredFirst;
    CHECK(gGlobalRegistry.registerCreator(registeredFirst, ""));
    dlopenOrFail(SOFTMASK_AUTOREGISTER_LIBRARY);
    CHECK(gGlobalRegistry.getCreator("SoftMaskedAttention", "1", "") == &registeredFirst);
    CHECK(gGlobalLogger.errors().empty());
    CHECK_EQ(gGlobalLogger.warnings().size(), size_t{1});
    CHECK_CONTAINS(gGlobalLogger.warnings()[0], "registered already");
}

#endif

SOFTMASK_TEST_MAIN()
