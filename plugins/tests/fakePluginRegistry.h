/*
 * A plugin registry with the semantics NvInferRuntimeCommon.h documents for TensorRT's:
 * - registerCreator "returns false if a plugin creator with the same type is already registered"
 *   (same name, version and namespace);
 * - loadLibrary dlopen()s the library, hands it the logger finder (setLoggerFinder), registers
 *   what its getCreators() returns, and "will fail and return nullptr if any of the plugins are
 *   already registered";
 * - getCreator finds a creator of any interface by name, version and namespace (the lookup of
 *   the ONNX parser and of engine deserialisation); getAllCreators lists every creator;
 *   getPluginCreatorList (deprecated, gone in TensorRT 11) lists IPluginCreator (V1/V2-era)
 *   creators only: what ONNX Runtime's TensorRT provider enumerates.
 */
#ifndef SOFTMASK_PLUGIN_FAKE_PLUGIN_REGISTRY_H
#define SOFTMASK_PLUGIN_FAKE_PLUGIN_REGISTRY_H

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <dlfcn.h>

#include <cstring>
#include <string>
#include <vector>

namespace softmask_test
{

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

class FakePluginRegistry final : public nvinfer1::IPluginRegistry
{
public:
    //! Logger finder handed to loaded libraries (setLoggerFinder), as TensorRT hands its own.
    nvinfer1::ILoggerFinder* loggerFinder{nullptr};

    bool registerCreator(nvinfer1::IPluginCreatorInterface& creator, char const* const pluginNamespace) noexcept override
    {
        Entry entry{&creator, nameOf(creator), versionOf(creator), pluginNamespace == nullptr ? "" : pluginNamespace};
        if (find(entry.name, entry.version, entry.nameSpace) != nullptr)
        {
            return false;
        }
        mEntries.push_back(entry);
        return true;
    }

    PluginLibraryHandle loadLibrary(char const* pluginPath) noexcept override
    {
        void* library = dlopen(pluginPath, RTLD_NOW | RTLD_LOCAL);
        if (library == nullptr)
        {
            lastLoadError = dlerror();
            return nullptr;
        }
        using GetCreators = nvinfer1::IPluginCreatorInterface* const* (*) (int32_t&);
        using SetLoggerFinder = void (*)(nvinfer1::ILoggerFinder*);
        auto const getCreators = reinterpret_cast<GetCreators>(dlsym(library, "getCreators"));
        auto const setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(library, "setLoggerFinder"));
        if (getCreators == nullptr)
        {
            lastLoadError = std::string(pluginPath) + " has no getCreators";
            return nullptr;
        }
        if (setLoggerFinder != nullptr)
        {
            setLoggerFinder(loggerFinder);
        }
        int32_t count = 0;
        nvinfer1::IPluginCreatorInterface* const* creators = getCreators(count);
        for (int32_t i = 0; i < count; ++i)
        {
            if (find(nameOf(*creators[i]), versionOf(*creators[i]), namespaceOf(*creators[i])) != nullptr)
            {
                lastLoadError = std::string("a plugin of ") + pluginPath + " is already registered";
                return nullptr;
            }
        }
        for (int32_t i = 0; i < count; ++i)
        {
            registerCreator(*creators[i], namespaceOf(*creators[i]).c_str());
        }
        return library;
    }

    void deregisterLibrary(PluginLibraryHandle) noexcept override {}

    nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        mListing.clear();
        for (Entry const& entry : mEntries)
        {
            mListing.push_back(entry.creator);
        }
        *numCreators = static_cast<int32_t>(mListing.size());
        return mListing.empty() ? nullptr : mListing.data();
    }

    nvinfer1::IPluginCreatorInterface* getCreator(char const* const pluginName, char const* const pluginVersion,
        char const* const pluginNamespace) noexcept override
    {
        Entry const* entry = find(pluginName, pluginVersion, pluginNamespace == nullptr ? "" : pluginNamespace);
        return entry == nullptr ? nullptr : entry->creator;
    }

    bool deregisterCreator(nvinfer1::IPluginCreatorInterface const& creator) noexcept override
    {
        for (auto it = mEntries.begin(); it != mEntries.end(); ++it)
        {
            if (it->creator == &creator)
            {
                mEntries.erase(it);
                return true;
            }
        }
        return false;
    }

#if NV_TENSORRT_MAJOR < 11
    bool registerCreator(nvinfer1::IPluginCreator& creator, char const* const pluginNamespace) noexcept override
    {
        return registerCreator(static_cast<nvinfer1::IPluginCreatorInterface&>(creator), pluginNamespace);
    }

    nvinfer1::IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        mV1Listing.clear();
        for (Entry const& entry : mEntries)
        {
            if (std::strcmp(entry.creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V1") == 0)
            {
                mV1Listing.push_back(static_cast<nvinfer1::IPluginCreator*>(entry.creator));
            }
        }
        *numCreators = static_cast<int32_t>(mV1Listing.size());
        return mV1Listing.empty() ? nullptr : mV1Listing.data();
    }

    nvinfer1::IPluginCreator* getPluginCreator(
        char const* const pluginName, char const* const pluginVersion, char const* const pluginNamespace) noexcept override
    {
        nvinfer1::IPluginCreatorInterface* creator = getCreator(pluginName, pluginVersion, pluginNamespace);
        bool const isV1 = creator != nullptr && std::strcmp(creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V1") == 0;
        return isV1 ? static_cast<nvinfer1::IPluginCreator*>(creator) : nullptr;
    }

    bool deregisterCreator(nvinfer1::IPluginCreator const& creator) noexcept override
    {
        return deregisterCreator(static_cast<nvinfer1::IPluginCreatorInterface const&>(creator));
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
        return getAllCreators(numCreators);
    }
#endif

    std::string lastLoadError;

private:
    struct Entry
    {
        nvinfer1::IPluginCreatorInterface* creator;
        std::string name;
        std::string version;
        std::string nameSpace;
    };

    static std::string nameOf(nvinfer1::IPluginCreatorInterface& creator)
    {
        if (auto* v3 = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(&creator))
        {
            return v3->getPluginName();
        }
#if NV_TENSORRT_MAJOR < 11
        if (auto* v1 = dynamic_cast<nvinfer1::IPluginCreator*>(&creator))
        {
            return v1->getPluginName();
        }
#endif
        return "";
    }

    static std::string versionOf(nvinfer1::IPluginCreatorInterface& creator)
    {
        if (auto* v3 = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(&creator))
        {
            return v3->getPluginVersion();
        }
#if NV_TENSORRT_MAJOR < 11
        if (auto* v1 = dynamic_cast<nvinfer1::IPluginCreator*>(&creator))
        {
            return v1->getPluginVersion();
        }
#endif
        return "";
    }

    static std::string namespaceOf(nvinfer1::IPluginCreatorInterface& creator)
    {
        if (auto* v3 = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(&creator))
        {
            return v3->getPluginNamespace();
        }
#if NV_TENSORRT_MAJOR < 11
        if (auto* v1 = dynamic_cast<nvinfer1::IPluginCreator*>(&creator))
        {
            return v1->getPluginNamespace();
        }
#endif
        return "";
    }

    Entry const* find(std::string const& name, std::string const& version, std::string const& nameSpace) const
    {
        for (Entry const& entry : mEntries)
        {
            if (entry.name == name && entry.version == version && entry.nameSpace == nameSpace)
            {
                return &entry;
            }
        }
        return nullptr;
    }

    std::vector<Entry> mEntries;
    mutable std::vector<nvinfer1::IPluginCreatorInterface*> mListing;
#if NV_TENSORRT_MAJOR < 11
    mutable std::vector<nvinfer1::IPluginCreator*> mV1Listing;
#endif
};

#pragma GCC diagnostic pop

} // namespace softmask_test

#endif // SOFTMASK_PLUGIN_FAKE_PLUGIN_REGISTRY_H
