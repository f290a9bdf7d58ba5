// Registration into TensorRT's global plugin registry, as libsoftmask_trt_plugin_autoregister.so
// does when a host dlopen()s it. The registry and libnvinfer's two C entry points are fakes defined
// here: this executable exports getPluginRegistry and getLogger, where the library looks for them.
#include "fakeTensorRT.h"
#include "softMaskedAttentionAutoRegistration.h"
#include "testHarness.h"

#include <NvInferVersion.h>

#include <dlfcn.h>

#include <string>
#include <utility>
#include <vector>

namespace
{

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
//! Records registerCreator calls; every other method is unused by the code under test.
class RecordingRegistry final : public nvinfer1::IPluginRegistry
{
public:
    bool accept{true};
    std::vector<std::pair<std::string, std::string>> registered; //!< (creator name, namespace)

    bool registerCreator(nvinfer1::IPluginCreatorInterface& creator, char const* const pluginNamespace) noexcept override
    {
        auto* v3 = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(&creator);
        registered.emplace_back(v3 == nullptr ? std::string("(not a V3 creator)") : std::string(v3->getPluginName()),
            pluginNamespace == nullptr ? std::string("(null)") : std::string(pluginNamespace));
        return accept;
    }

    // IPluginRegistry's pure virtual methods differ between TensorRT versions: the IPluginCreator
    // (V1) ones are gone in 11, getAllCreatorsRecursive arrived in 10.10.
#if NV_TENSORRT_MAJOR < 11
    bool registerCreator(nvinfer1::IPluginCreator&, char const* const) noexcept override
    {
        registered.emplace_back("(IPluginCreator V1)", "");
        return false;
    }
    nvinfer1::IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    nvinfer1::IPluginCreator* getPluginCreator(char const* const, char const* const, char const* const) noexcept override
    {
        return nullptr;
    }
    bool deregisterCreator(nvinfer1::IPluginCreator const&) noexcept override
    {
        return false;
    }
#endif
    void setErrorRecorder(nvinfer1::IErrorRecorder* const) noexcept override {}
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(char const*) noexcept override
    {
        return nullptr;
    }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
    nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    nvinfer1::IPluginCreatorInterface* getCreator(char const* const, char const* const, char const* const) noexcept override
    {
        return nullptr;
    }
    bool deregisterCreator(nvinfer1::IPluginCreatorInterface const&) noexcept override
    {
        return false;
    }
    nvinfer1::IPluginResource* acquirePluginResource(char const*, nvinfer1::IPluginResource*) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(char const*) noexcept override
    {
        return 0;
    }
#if NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 10)
    nvinfer1::IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
#endif
};
#pragma GCC diagnostic pop

RecordingRegistry gGlobalRegistry;
softmask_test::RecordingLogger gGlobalLogger;

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

SOFTMASK_TEST(registerCreatorsWithRegistersUnderTheEmptyNamespace)
{
    RecordingRegistry registry;
    CHECK(softmask::plugin::registerCreatorsWith(registry));
    CHECK_EQ(registry.registered.size(), size_t{1});
    CHECK_EQ(registry.registered[0].first, std::string("SoftMaskedAttention"));
    CHECK_EQ(registry.registered[0].second, std::string(""));
}

SOFTMASK_TEST(refusedRegistrationIsReportedNotFatal)
{
    RecordingRegistry registry;
    registry.accept = false;
    softmask_test::CapturedLog log;
    CHECK(!softmask::plugin::registerCreatorsWith(registry));
    CHECK_EQ(log.logger().warnings().size(), size_t{1});
    CHECK_CONTAINS(log.logger().warnings()[0], "already registered");
}

SOFTMASK_TEST(loadingTheAutoregisterLibraryRegistersTheCreator)
{
    CHECK(gGlobalRegistry.registered.empty());
    void* library = dlopen(SOFTMASK_AUTOREGISTER_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr)
    {
        ::softmask_test::fail(__FILE__, __LINE__, std::string("dlopen failed: ") + dlerror());
    }
    CHECK_EQ(gGlobalRegistry.registered.size(), size_t{1});
    CHECK_EQ(gGlobalRegistry.registered[0].first, std::string("SoftMaskedAttention"));
    CHECK_EQ(gGlobalRegistry.registered[0].second, std::string(""));
    CHECK(gGlobalLogger.errors().empty());
    dlclose(library);
}

SOFTMASK_TEST_MAIN()
