/*
 * Stand-ins for the TensorRT objects the plugin talks to, so its interface methods can be called
 * without libnvinfer: a logger that records messages, and shape expressions with fixed values.
 * They implement TensorRT's public interface classes (NvInferRuntime.h, NvInferImpl.h) only.
 */
#ifndef SOFTMASK_PLUGIN_FAKE_TENSORRT_H
#define SOFTMASK_PLUGIN_FAKE_TENSORRT_H

#include "softmaskPluginLogging.h"

#include <NvInferRuntime.h>

#include <deque>
#include <string>
#include <utility>
#include <vector>

namespace softmask_test
{

//! Records every message; errors() returns those logged at kERROR or worse.
class RecordingLogger : public nvinfer1::ILogger
{
public:
    void log(Severity severity, char const* message) noexcept override
    {
        mMessages.emplace_back(severity, message == nullptr ? "" : message);
    }

    std::vector<std::string> atMost(Severity worstAllowed) const
    {
        std::vector<std::string> selected;
        for (auto const& entry : mMessages)
        {
            if (entry.first <= worstAllowed)
            {
                selected.push_back(entry.second);
            }
        }
        return selected;
    }

    std::vector<std::string> errors() const
    {
        return atMost(Severity::kERROR);
    }

    //! All messages at kWARNING severity exactly.
    std::vector<std::string> warnings() const
    {
        std::vector<std::string> selected;
        for (auto const& entry : mMessages)
        {
            if (entry.first == Severity::kWARNING)
            {
                selected.push_back(entry.second);
            }
        }
        return selected;
    }

    //! All errors joined by newlines ("" when none).
    std::string errorText() const
    {
        std::string text;
        for (std::string const& message : errors())
        {
            text += message + "\n";
        }
        return text;
    }

private:
    std::vector<std::pair<Severity, std::string>> mMessages;
};

class FixedLoggerFinder : public nvinfer1::ILoggerFinder
{
public:
    explicit FixedLoggerFinder(nvinfer1::ILogger* logger)
        : mLogger(logger)
    {
    }
    ~FixedLoggerFinder() override = default;

    nvinfer1::ILogger* findLogger() override
    {
        return mLogger;
    }

private:
    nvinfer1::ILogger* mLogger;
};

//! Routes the plugin's messages to a RecordingLogger for the lifetime of this object.
class CapturedLog
{
public:
    CapturedLog()
    {
        softmask::plugin::setLoggerFinder(&mFinder);
    }
    ~CapturedLog()
    {
        softmask::plugin::setLoggerFinder(nullptr);
    }
    CapturedLog(CapturedLog const&) = delete;
    CapturedLog& operator=(CapturedLog const&) = delete;

    RecordingLogger const& logger() const
    {
        return mLogger;
    }

private:
    RecordingLogger mLogger;
    FixedLoggerFinder mFinder{&mLogger};
};

//! The value behind a FakeDimension: a build-time constant, or unknown (-1).
class FakeDimensionValue : public nvinfer1::apiv::VDimensionExpr
{
public:
    explicit FakeDimensionValue(int64_t value)
        : mValue(value)
    {
    }
    bool isConstant() const override
    {
        return mValue >= 0;
    }
    int64_t getConstantValue() const override
    {
        return mValue;
    }
    bool isSizeTensor() const override
    {
        return false;
    }

private:
    int64_t mValue;
};

class FakeDimension : public nvinfer1::IDimensionExpr
{
public:
    explicit FakeDimension(int64_t value)
        : mValue(value)
    {
        mImpl = &mValue;
    }
    ~FakeDimension() override = default;

private:
    FakeDimensionValue mValue;
};

//! Owns FakeDimensions and builds DimsExprs from extents (-1 = dynamic).
class FakeShapes
{
public:
    nvinfer1::DimsExprs exprs(std::vector<int64_t> const& extents)
    {
        nvinfer1::DimsExprs result{};
        result.nbDims = static_cast<int32_t>(extents.size());
        for (size_t i = 0; i < extents.size(); ++i)
        {
            mDimensions.emplace_back(extents[i]);
            result.d[i] = &mDimensions.back();
        }
        return result;
    }

private:
    std::deque<FakeDimension> mDimensions;
};

//! The plugin reads its input expressions only; an expression builder that is never called.
class UnusedExprBuilder : public nvinfer1::IExprBuilder
{
public:
    UnusedExprBuilder()
    {
        mImpl = nullptr;
    }
    ~UnusedExprBuilder() override = default;
};

} // namespace softmask_test

#endif // SOFTMASK_PLUGIN_FAKE_TENSORRT_H
