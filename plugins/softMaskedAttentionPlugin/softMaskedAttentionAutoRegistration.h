/*
 * Registering the plugin's creators into a TensorRT plugin registry directly.
 *
 * Used by libsoftmask_trt_plugin_autoregister.so, the variant for hosts that only dlopen() plugin
 * libraries and expect them to register themselves while loading: ONNX Runtime's TensorRT
 * execution provider (trt_extra_plugin_lib_paths), Triton's TensorRT backend
 * (--backend-config=tensorrt,plugins=... or LD_PRELOAD) and Polygraphy --plugins.
 * libsoftmask_trt_plugin.so never does this: it is loaded through IPluginRegistry::loadLibrary,
 * which registers the creators from getCreators(); doing both would register them twice.
 */
#ifndef SOFTMASK_SOFT_MASKED_ATTENTION_AUTO_REGISTRATION_H
#define SOFTMASK_SOFT_MASKED_ATTENTION_AUTO_REGISTRATION_H

#include <NvInferRuntime.h>

namespace softmask
{
namespace plugin
{

//! Registers every creator of getCreators() under namespace "" in `registry`. Returns true when all
//! were registered; logs which one the registry refused (e.g. already registered) otherwise.
bool registerCreatorsWith(nvinfer1::IPluginRegistry& registry) noexcept;

} // namespace plugin
} // namespace softmask

#endif // SOFTMASK_SOFT_MASKED_ATTENTION_AUTO_REGISTRATION_H
