/*
 * Load-time registration: what makes libsoftmask_trt_plugin_autoregister.so register itself while
 * it is dlopen()ed. For hosts that only dlopen plugin libraries: ONNX Runtime's TensorRT provider
 * (trt_extra_plugin_lib_paths), Triton's TensorRT backend (--backend-config=tensorrt,plugins=...
 * or LD_PRELOAD), Polygraphy --plugins. Only that library compiles this file.
 *
 * TensorRT's REGISTER_TENSORRT_PLUGIN calls getPluginRegistry() from libnvinfer, which would make
 * this library link libnvinfer. Looking the two C functions up at load time instead keeps it
 * buildable against the public headers alone, and uses whichever libnvinfer the host runs.
 */
#include "softMaskedAttentionPlugin.h"
#include "softmaskPluginLogging.h"

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <dlfcn.h>

#include <string>

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept;

namespace
{

#define SOFTMASK_STRINGIFY_VALUE(x) #x
#define SOFTMASK_STRINGIFY(x) SOFTMASK_STRINGIFY_VALUE(x)
//! The libnvinfer this library was compiled for (its headers' major version).
constexpr char const* kNVINFER_SONAME = "libnvinfer.so." SOFTMASK_STRINGIFY(NV_TENSORRT_MAJOR);

using GetPluginRegistryFunction = nvinfer1::IPluginRegistry* (*) ();
using GetLoggerFunction = nvinfer1::ILogger* (*) ();

void* findTensorRTSymbol(char const* name) noexcept
{
    if (void* symbol = dlsym(RTLD_DEFAULT, name))
    {
        return symbol;
    }
    // Not globally visible: the host loaded libnvinfer with RTLD_LOCAL (Python extensions do), or
    // this library was preloaded before TensorRT. dlopen by soname returns the already loaded copy,
    // or loads the one the host would load later.
    void* library = dlopen(kNVINFER_SONAME, RTLD_NOW | RTLD_GLOBAL);
    return library == nullptr ? nullptr : dlsym(library, name);
}

//! Finds TensorRT's global logger (libnvinfer's getLogger()) each time it is asked.
class GlobalLoggerFinder final : public nvinfer1::ILoggerFinder
{
public:
    explicit GlobalLoggerFinder(GetLoggerFunction getLogger)
        : mGetLogger(getLogger)
    {
    }
    ~GlobalLoggerFinder() override = default;

    nvinfer1::ILogger* findLogger() override
    {
        return mGetLogger == nullptr ? nullptr : mGetLogger();
    }

private:
    GetLoggerFunction mGetLogger;
};

//! Registers every creator of getCreators() under namespace ""; the registry refuses a creator
//! whose (name, version, namespace) it holds already, which is reported, not fatal.
void registerCreators(nvinfer1::IPluginRegistry& registry) noexcept
{
    int32_t nbCreators = 0;
    nvinfer1::IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    for (int32_t i = 0; i < nbCreators; ++i)
    {
        if (!registry.registerCreator(*creators[i], softmask::plugin::kSOFT_MASKED_ATTENTION_NAMESPACE))
        {
            softmask::plugin::logWarning(std::string("the TensorRT plugin registry refused creator ")
                + softmask::plugin::kSOFT_MASKED_ATTENTION_NAME + " version "
                + softmask::plugin::kSOFT_MASKED_ATTENTION_VERSION
                + ": one of that name, version and namespace is registered already (is libsoftmask_trt_plugin.so "
                  "loaded too?); the registered one stays in use");
        }
    }
}

class LoadTimeRegistrar
{
public:
    LoadTimeRegistrar() noexcept
        : mLoggerFinder(reinterpret_cast<GetLoggerFunction>(findTensorRTSymbol("getLogger")))
    {
        softmask::plugin::setLoggerFinder(&mLoggerFinder);
        auto const getPluginRegistry
            = reinterpret_cast<GetPluginRegistryFunction>(findTensorRTSymbol("getPluginRegistry"));
        nvinfer1::IPluginRegistry* registry = getPluginRegistry == nullptr ? nullptr : getPluginRegistry();
        if (registry == nullptr)
        {
            softmask::plugin::logError(std::string("libsoftmask_trt_plugin_autoregister.so: TensorRT's getPluginRegistry() "
                                                   "was not found (is ")
                + kNVINFER_SONAME + " on the library path?); the SoftMaskedAttention plugin is not registered");
            return;
        }
        registerCreators(*registry);
    }

    ~LoadTimeRegistrar()
    {
        softmask::plugin::setLoggerFinder(nullptr);
    }

    LoadTimeRegistrar(LoadTimeRegistrar const&) = delete;
    LoadTimeRegistrar& operator=(LoadTimeRegistrar const&) = delete;

private:
    GlobalLoggerFinder mLoggerFinder;
};

LoadTimeRegistrar const gLoadTimeRegistrar;

} // namespace
