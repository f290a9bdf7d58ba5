/*
 * Error handling shared by softmask's TensorRT plugins.
 *
 * TensorRT calls every plugin method through a noexcept interface, so an exception must never
 * cross it. Validation code throws PluginError with a message naming the tensor, axis or field;
 * each interface method runs its body through callGuarded(), which logs the message through
 * TensorRT's logger and turns it into the method's error value.
 */
#ifndef SOFTMASK_PLUGIN_CHECKS_H
#define SOFTMASK_PLUGIN_CHECKS_H

#include "softmaskPluginLogging.h"

#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>

namespace softmask
{
namespace plugin
{

//! A plugin method was given fields, shapes or types it does not support.
class PluginError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

//! Status values of IPluginV3 methods that return int32_t.
constexpr int32_t kSTATUS_SUCCESS = 0;
constexpr int32_t kSTATUS_FAILURE = -1;

//! Runs body(); on any exception logs "<where>: <what>" as an error and returns onError instead.
template <typename Result, typename Body>
Result callGuarded(char const* where, Result onError, Body&& body) noexcept
{
    try
    {
        return body();
    }
    catch (std::exception const& error)
    {
        logError(std::string(where) + ": " + error.what());
    }
    catch (...)
    {
        logError(std::string(where) + ": unknown exception");
    }
    return onError;
}

} // namespace plugin
} // namespace softmask

//! Throws softmask::plugin::PluginError with the streamed message when condition is false.
#define SOFTMASK_PLUGIN_VALIDATE(condition, message)                                                                   \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(condition))                                                                                              \
        {                                                                                                              \
            std::ostringstream softmaskValidateStream_;                                                                \
            softmaskValidateStream_ << message;                                                                        \
            throw ::softmask::plugin::PluginError(softmaskValidateStream_.str());                                      \
        }                                                                                                              \
    } while (false)

#endif // SOFTMASK_PLUGIN_CHECKS_H
