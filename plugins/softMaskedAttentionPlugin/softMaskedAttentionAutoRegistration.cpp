#include "softMaskedAttentionAutoRegistration.h"

#include "softMaskedAttentionPlugin.h"
#include "softmaskPluginLogging.h"

#include <string>

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept;

namespace softmask
{
namespace plugin
{

bool registerCreatorsWith(nvinfer1::IPluginRegistry& registry) noexcept
{
    int32_t nbCreators = 0;
    nvinfer1::IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    bool allRegistered = true;
    for (int32_t i = 0; i < nbCreators; ++i)
    {
        if (!registry.registerCreator(*creators[i], kSOFT_MASKED_ATTENTION_NAMESPACE))
        {
            allRegistered = false;
            logWarning(std::string("the TensorRT plugin registry refused creator ") + kSOFT_MASKED_ATTENTION_NAME
                + " version " + kSOFT_MASKED_ATTENTION_VERSION
                + " (already registered? load only one of libsoftmask_trt_plugin.so and "
                  "libsoftmask_trt_plugin_autoregister.so)");
        }
    }
    return allRegistered;
}

} // namespace plugin
} // namespace softmask
