/*
 * Dynamic registration: the only two symbols libsoftmask_trt_plugin.so exports (see
 * softmask_trt_plugin.map). IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, Python
 * registry.load_library, softmask.plugins.load_into_tensorrt) calls setLoggerFinder() and then
 * getCreators(), and registers what it returns. The library deliberately has no
 * REGISTER_TENSORRT_PLUGIN: registering both ways would register the creator twice.
 * libsoftmask_trt_plugin_autoregister.so hides both symbols and registers at load time instead
 * (softMaskedAttentionAutoRegistration.cpp).
 */
#include "softMaskedAttentionPlugin.h"
#include "softmaskPluginLogging.h"

#include <NvInferRuntime.h>

#define SOFTMASK_PLUGIN_EXPORT __attribute__((visibility("default")))

extern "C" SOFTMASK_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    softmask::plugin::setLoggerFinder(finder);
}

extern "C" SOFTMASK_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept
{
    static softmask::plugin::SoftMaskedAttentionPluginCreator softMaskedAttentionCreator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&softMaskedAttentionCreator};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}
