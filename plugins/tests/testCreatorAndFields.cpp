// Creator, fields, serialisation round trip, clone and registration of the SoftMaskedAttention plugin.
#include "fakeTensorRT.h"
#include "softMaskedAttentionPlugin.h"
#include "testHarness.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;
extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept;

namespace
{

using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using softmask::plugin::SoftMaskedAttentionPlugin;
using softmask::plugin::SoftMaskedAttentionPluginCreator;

//! Owns the storage of a PluginFieldCollection built in a test.
struct Fields
{
    std::vector<int32_t> ints;
    std::vector<float> floats;
    std::vector<PluginField> fields;
    PluginFieldCollection collection{};

    Fields()
    {
        ints.reserve(16);
        floats.reserve(16);
    }

    Fields& addInt32(char const* name, std::vector<int32_t> const& values)
    {
        size_t const first = ints.size();
        ints.insert(ints.end(), values.begin(), values.end());
        fields.emplace_back(name, ints.data() + first, PluginFieldType::kINT32, static_cast<int32_t>(values.size()));
        return bind();
    }

    Fields& addFloat32(char const* name, float value)
    {
        floats.push_back(value);
        fields.emplace_back(name, &floats.back(), PluginFieldType::kFLOAT32, 1);
        return bind();
    }

    Fields& bind()
    {
        collection.nbFields = static_cast<int32_t>(fields.size());
        collection.fields = fields.data();
        return *this;
    }
};

std::unique_ptr<nvinfer1::IPluginV3> create(
    PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase = nvinfer1::TensorRTPhase::kBUILD)
{
    SoftMaskedAttentionPluginCreator creator;
    return std::unique_ptr<nvinfer1::IPluginV3>(creator.createPlugin("layer0", fc, phase));
}

SoftMaskedAttentionPlugin& asPlugin(nvinfer1::IPluginV3& plugin)
{
    auto* concrete = dynamic_cast<SoftMaskedAttentionPlugin*>(&plugin);
    CHECK(concrete != nullptr);
    return *concrete;
}

//! Reads the kINT32 scalar `name` from a serialised collection, independently of the plugin's accessors.
int32_t serializedInt32(PluginFieldCollection const& fc, char const* name)
{
    for (int32_t i = 0; i < fc.nbFields; ++i)
    {
        if (std::strcmp(fc.fields[i].name, name) == 0)
        {
            CHECK(fc.fields[i].type == PluginFieldType::kINT32);
            CHECK_EQ(fc.fields[i].length, 1);
            return *static_cast<int32_t const*>(fc.fields[i].data);
        }
    }
    ::softmask_test::fail(__FILE__, __LINE__, std::string("no serialised field ") + name);
}

//! createPlugin must fail, return nullptr and log an error containing every fragment.
void expectRejected(PluginFieldCollection const* fc, std::vector<std::string> const& fragments)
{
    softmask_test::CapturedLog log;
    std::unique_ptr<nvinfer1::IPluginV3> plugin = create(fc);
    CHECK(plugin == nullptr);
    CHECK_EQ(log.logger().errors().size(), size_t{1});
    for (std::string const& fragment : fragments)
    {
        CHECK_CONTAINS(log.logger().errorText(), fragment);
    }
}

} // namespace

SOFTMASK_TEST(creatorIdentityMatchesTheOnnxNode)
{
    SoftMaskedAttentionPluginCreator creator;
    CHECK_EQ(std::string(creator.getPluginName()), std::string("SoftMaskedAttention"));
    CHECK_EQ(std::string(creator.getPluginVersion()), std::string("1"));
    CHECK_EQ(std::string(creator.getPluginNamespace()), std::string(""));
    CHECK_EQ(std::string(creator.getInterfaceInfo().kind), std::string("PLUGIN CREATOR_V3ONE"));
}

SOFTMASK_TEST(creatorFieldNamesAndTypes)
{
    SoftMaskedAttentionPluginCreator creator;
    PluginFieldCollection const* names = creator.getFieldNames();
    CHECK(names != nullptr);
    // The ONNX parser passes a node's attributes named here (and only those) as fields: hard_mask
    // must be listed for a hard-mode node's attribute to reach the plugin.
    CHECK_EQ(names->nbFields, 3);
    CHECK_EQ(std::string(names->fields[0].name), std::string("num_heads"));
    CHECK_EQ(std::string(names->fields[1].name), std::string("num_splits"));
    CHECK_EQ(std::string(names->fields[2].name), std::string("hard_mask"));
    for (int32_t i = 0; i < names->nbFields; ++i)
    {
        CHECK(names->fields[i].type == PluginFieldType::kINT32);
        CHECK_EQ(names->fields[i].length, 1);
    }
}

SOFTMASK_TEST(createPluginFromFieldsUsesDefaults)
{
    Fields fields;
    fields.addInt32("num_heads", {8});
    std::unique_ptr<nvinfer1::IPluginV3> plugin = create(&fields.collection);
    CHECK(plugin != nullptr);
    CHECK_EQ(asPlugin(*plugin).fields().numHeads, 8);
    CHECK_EQ(asPlugin(*plugin).fields().numSplits, 0);
    CHECK_EQ(asPlugin(*plugin).fields().hardMask, 0);

    auto* core = static_cast<nvinfer1::IPluginV3OneCore*>(
        plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE));
    CHECK(core != nullptr);
    CHECK_EQ(std::string(core->getPluginName()), std::string("SoftMaskedAttention"));
    CHECK_EQ(std::string(core->getPluginVersion()), std::string("1"));
    CHECK_EQ(std::string(core->getPluginNamespace()), std::string(""));
    CHECK_EQ(std::string(core->getInterfaceInfo().kind), std::string("PLUGIN_V3ONE_CORE"));
    auto* build = static_cast<nvinfer1::IPluginV3OneBuild*>(
        plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
    CHECK(build != nullptr);
    CHECK_EQ(std::string(build->getInterfaceInfo().kind), std::string("PLUGIN_V3ONE_BUILD"));
    CHECK_EQ(build->getNbOutputs(), 1);
    auto* runtime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
        plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
    CHECK(runtime != nullptr);
    CHECK_EQ(std::string(runtime->getInterfaceInfo().kind), std::string("PLUGIN_V3ONE_RUNTIME"));
}

SOFTMASK_TEST(unknownCapabilityIsRefusedWithAMessage)
{
    Fields fields;
    fields.addInt32("num_heads", {8});
    std::unique_ptr<nvinfer1::IPluginV3> plugin = create(&fields.collection);
    CHECK(plugin != nullptr);
    softmask_test::CapturedLog log;
    CHECK(plugin->getCapabilityInterface(static_cast<nvinfer1::PluginCapabilityType>(7)) == nullptr);
    CHECK_CONTAINS(log.logger().errorText(), "unknown PluginCapabilityType 7");
}

SOFTMASK_TEST(serializeThenRecreateGivesIdenticalFields)
{
    for (int32_t const numHeads : {1, 8, 16})
    {
        for (int32_t const numSplits : {0, 3, 64})
        {
            int32_t const hardMask = numSplits == 3 ? 1 : 0;
            Fields fields;
            fields.addInt32("num_splits", {numSplits}).addInt32("num_heads", {numHeads});
            if (hardMask != 0)
            {
                fields.addInt32("hard_mask", {hardMask});
            }
            std::unique_ptr<nvinfer1::IPluginV3> built = create(&fields.collection);
            CHECK(built != nullptr);
            auto* runtime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
                built->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
            PluginFieldCollection const* serialized = runtime->getFieldsToSerialize();
            CHECK(serialized != nullptr);
            CHECK_EQ(serializedInt32(*serialized, "num_heads"), numHeads);
            CHECK_EQ(serializedInt32(*serialized, "num_splits"), numSplits);
            CHECK_EQ(serializedInt32(*serialized, "hard_mask"), hardMask);

            std::unique_ptr<nvinfer1::IPluginV3> loaded = create(serialized, nvinfer1::TensorRTPhase::kRUNTIME);
            CHECK(loaded != nullptr);
            CHECK_EQ(asPlugin(*loaded).fields().numHeads, numHeads);
            CHECK_EQ(asPlugin(*loaded).fields().numSplits, numSplits);
            CHECK_EQ(asPlugin(*loaded).fields().hardMask, hardMask);
            auto* loadedRuntime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
                loaded->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
            PluginFieldCollection const* again = loadedRuntime->getFieldsToSerialize();
            CHECK_EQ(again->nbFields, serialized->nbFields);
            CHECK_EQ(serializedInt32(*again, "num_heads"), numHeads);
            CHECK_EQ(serializedInt32(*again, "num_splits"), numSplits);
        }
    }
}

SOFTMASK_TEST(cloneAndAttachToContextAreIndependentCopies)
{
    Fields fields;
    fields.addInt32("num_heads", {4}).addInt32("num_splits", {2});
    std::unique_ptr<nvinfer1::IPluginV3> original = create(&fields.collection);
    CHECK(original != nullptr);
    std::unique_ptr<nvinfer1::IPluginV3> cloned(original->clone());
    auto* runtime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
        original->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
    std::unique_ptr<nvinfer1::IPluginV3> attached(runtime->attachToContext(nullptr));
    CHECK(cloned != nullptr && attached != nullptr);
    CHECK(cloned.get() != original.get() && attached.get() != original.get() && attached.get() != cloned.get());
    original.reset();

    // The copies' serialised fields must point into the copies, not into the destroyed original.
    for (nvinfer1::IPluginV3* copy : {cloned.get(), attached.get()})
    {
        auto* copyRuntime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
            copy->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
        PluginFieldCollection const* serialized = copyRuntime->getFieldsToSerialize();
        CHECK_EQ(serializedInt32(*serialized, "num_heads"), 4);
        CHECK_EQ(serializedInt32(*serialized, "num_splits"), 2);
    }
}

SOFTMASK_TEST(missingNumHeadsIsRejected)
{
    Fields fields;
    fields.addInt32("num_splits", {1});
    expectRejected(&fields.collection, {"num_heads", "missing", "layer0"});
}

SOFTMASK_TEST(nonPositiveNumHeadsIsRejected)
{
    for (int32_t const numHeads : {0, -8})
    {
        Fields fields;
        fields.addInt32("num_heads", {numHeads});
        expectRejected(&fields.collection, {"num_heads", ">= 1", std::to_string(numHeads)});
    }
}

SOFTMASK_TEST(hardMaskOtherThanZeroOrOneIsRejected)
{
    Fields fields;
    fields.addInt32("num_heads", {8}).addInt32("hard_mask", {2});
    expectRejected(&fields.collection, {"hard_mask", "0 (soft mask) or 1", "got 2"});
}

SOFTMASK_TEST(negativeNumSplitsIsRejected)
{
    Fields fields;
    fields.addInt32("num_heads", {8}).addInt32("num_splits", {-1});
    expectRejected(&fields.collection, {"num_splits", ">= 0", "-1"});
}

SOFTMASK_TEST(wrongFieldTypeOrLengthIsRejected)
{
    Fields asFloat;
    asFloat.addFloat32("num_heads", 8.0F);
    expectRejected(&asFloat.collection, {"num_heads", "kINT32", "kFLOAT32"});

    Fields twoValues;
    twoValues.addInt32("num_heads", {8, 8});
    expectRejected(&twoValues.collection, {"num_heads", "length 2"});

    Fields noData;
    noData.fields.emplace_back("num_heads", nullptr, PluginFieldType::kINT32, 1);
    noData.bind();
    expectRejected(&noData.collection, {"num_heads", "no data"});

    expectRejected(nullptr, {"PluginFieldCollection", "null"});
}

SOFTMASK_TEST(unknownFieldIsIgnoredWithAWarning)
{
    softmask_test::CapturedLog log;
    Fields fields;
    fields.addInt32("num_heads", {8}).addInt32("dropout_seed", {7});
    std::unique_ptr<nvinfer1::IPluginV3> plugin = create(&fields.collection);
    CHECK(plugin != nullptr);
    CHECK(log.logger().errors().empty());
    CHECK_EQ(log.logger().warnings().size(), size_t{1});
    CHECK_CONTAINS(log.logger().warnings()[0], "dropout_seed");
}

SOFTMASK_TEST(getCreatorsExposesTheOneCreator)
{
    int32_t count = -1;
    nvinfer1::IPluginCreatorInterface* const* creators = getCreators(count);
    CHECK_EQ(count, 1);
    CHECK(creators != nullptr && creators[0] != nullptr);
    CHECK_EQ(std::string(creators[0]->getInterfaceInfo().kind), std::string("PLUGIN CREATOR_V3ONE"));
    auto* creator = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(creators[0]);
    CHECK(creator != nullptr);
    CHECK_EQ(std::string(creator->getPluginName()), std::string("SoftMaskedAttention"));
    int32_t secondCount = -1;
    CHECK(getCreators(secondCount) == creators);
}

SOFTMASK_TEST(setLoggerFinderRoutesMessagesToTensorRTsLogger)
{
    softmask_test::RecordingLogger logger;
    softmask_test::FixedLoggerFinder finder(&logger);
    setLoggerFinder(&finder);
    std::unique_ptr<nvinfer1::IPluginV3> plugin = create(nullptr);
    setLoggerFinder(nullptr);
    CHECK(plugin == nullptr);
    CHECK_EQ(logger.errors().size(), size_t{1});
    CHECK_CONTAINS(logger.errors()[0], "[softmask]");
    CHECK_CONTAINS(logger.errors()[0], "createPlugin");
}

SOFTMASK_TEST_MAIN()
