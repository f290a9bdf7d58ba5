/*
 * Logging for softmask's TensorRT plugins through the logger TensorRT hands to the library.
 *
 * A plugin library loaded dynamically (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins)
 * receives an ILoggerFinder through its exported setLoggerFinder(); messages go to the logger it
 * finds, so they appear wherever the application sends TensorRT's own messages. Before a finder is
 * set (or when it finds no logger), warnings and errors go to stderr so they are never lost.
 */
#ifndef SOFTMASK_PLUGIN_LOGGING_H
#define SOFTMASK_PLUGIN_LOGGING_H

#include <NvInferRuntime.h>

#include <string>

namespace softmask
{
namespace plugin
{

//! Stores the finder used by every later log call; nullptr restores the stderr fallback.
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! Logs "[softmask] <message>" at the given severity.
void logMessage(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;

inline void logError(std::string const& message) noexcept
{
    logMessage(nvinfer1::ILogger::Severity::kERROR, message);
}

inline void logWarning(std::string const& message) noexcept
{
    logMessage(nvinfer1::ILogger::Severity::kWARNING, message);
}

} // namespace plugin
} // namespace softmask

#endif // SOFTMASK_PLUGIN_LOGGING_H
