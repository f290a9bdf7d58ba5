// libsoftmask_trt_plugin.so (its twin on the fake CUDA driver: plugins/tests/CMakeLists.txt), loaded
// into a registry with TensorRT's semantics, driven
// the way TensorRT drives it: the ONNX parser's attribute conversion (fakeOnnxImport.h), the
// builder's clones and the runtime's plugin made from serialised fields only (fakeEngine.h), and
// enqueue against the fake CUDA runtime (fakeCudaRuntime.h; this executable exports it).
#include "fakeCudaRuntime.h"
#include "fakeEngine.h"
#include "fakeOnnxImport.h"
#include "fakePluginRegistry.h"
#include "fakeTensorRT.h"
#include "testHarness.h"

#include <memory>
#include <string>

namespace
{

using nvinfer1::DataType;
using softmask_test::AttentionShape;
using softmask_test::OnnxAttribute;
using softmask_test::Profile;

constexpr int kFirstGpu = 0;
constexpr int kSecondGpu = 1;

//! One registry (with the shipped library loaded) and one logger for the whole executable: a
//! process loads the library once.
struct Process
{
    softmask_test::RecordingLogger logger;
    softmask_test::FixedLoggerFinder finder{&logger};
    softmask_test::FakePluginRegistry registry;

    Process()
    {
        fake_cuda::setDevices({90, 90});
        registry.loggerFinder = &finder;
        if (registry.loadLibrary(SOFTMASK_PLUGIN_LIBRARY) == nullptr)
        {
            ::softmask_test::fail(__FILE__, __LINE__, "loadLibrary failed: " + registry.lastLoadError);
        }
    }
};

Process& process()
{
    static Process instance;
    return instance;
}

//! The HODOR encoder's call (E = 256, H = 8) over a profile of B in [1, 2], I in [1, 40], S in [1, 6420].
Profile hodorProfile(DataType data, DataType mask, int64_t embed = 256)
{
    return Profile{{1, 1, 1, embed, 8}, {2, 40, 6420, embed, 8}, true, data, mask, DataType::kFLOAT};
}

//! Parse, build and deserialise: the plugin a fresh engine holds.
std::unique_ptr<nvinfer1::IPluginV3> engineFor(Profile const& profile, softmask_test::SerializedPlugin& engine)
{
    softmask_test::ImportedPlugin imported
        = softmask_test::importPluginNode(process().registry, softmask_test::exportedNode(profile.maximum.heads));
    if (imported.plugin == nullptr)
    {
        ::softmask_test::fail(__FILE__, __LINE__, "import failed: " + imported.error);
    }
    std::string error;
    if (!softmask_test::buildEngine(*imported.plugin, profile, engine, error))
    {
        ::softmask_test::fail(__FILE__, __LINE__, "build failed: " + error + "\n" + process().logger.errorText());
    }
    imported.plugin.reset(); // the network and every build object are gone before the engine runs
    std::unique_ptr<nvinfer1::IPluginV3> plugin = softmask_test::deserializePlugin(process().registry, engine);
    CHECK(plugin != nullptr);
    return plugin;
}

} // namespace

SOFTMASK_TEST(theExportedNodeReachesTheCreatorWithTheFieldsTheParserMakes)
{
    process();
    size_t const warningsBefore = process().logger.warnings().size();
    softmask_test::ImportedPlugin imported
        = softmask_test::importPluginNode(process().registry, softmask_test::exportedNode(8));
    CHECK(imported.plugin != nullptr);
    CHECK_EQ(imported.layerName, std::string("SoftMaskedAttention_0"));
    // plugin_version and plugin_namespace select the creator and are never fields: no warning.
    CHECK_EQ(process().logger.warnings().size(), warningsBefore);
    CHECK(process().logger.errors().empty());

    // An unnamed node's layer is named after its output, so nothing says "SoftMaskedAttention".
    softmask_test::OnnxNode unnamed = softmask_test::exportedNode(8, "");
    CHECK_EQ(softmask_test::importPluginNode(process().registry, unnamed).layerName, std::string("node_of_attention_out"));
}

SOFTMASK_TEST(aHardModeNodesAttributeBecomesTheHardMaskField)
{
    // softmask/ops/onnx_op.py writes hard_mask = 1 (an INT attribute) on hard-mode nodes only.
    process();
    size_t const warningsBefore = process().logger.warnings().size();
    softmask_test::OnnxNode node = softmask_test::exportedNode(8);
    node.attributes.push_back(OnnxAttribute{"hard_mask", OnnxAttribute::Kind::kINT, {1}});
    softmask_test::ImportedPlugin imported = softmask_test::importPluginNode(process().registry, node);
    CHECK(imported.plugin != nullptr);
    CHECK_EQ(process().logger.warnings().size(), warningsBefore); // a known field, not ignored
    auto* runtime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
        imported.plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
    CHECK(runtime != nullptr);
    nvinfer1::PluginFieldCollection const* serialized = runtime->getFieldsToSerialize();
    int32_t hardMask = -1;
    for (int32_t i = 0; i < serialized->nbFields; ++i)
    {
        if (std::string(serialized->fields[i].name) == "hard_mask")
        {
            hardMask = *static_cast<int32_t const*>(serialized->fields[i].data);
        }
    }
    CHECK_EQ(hardMask, 1);
}

SOFTMASK_TEST(attributesOfAnotherTypeFailWithAMessageNamingThem)
{
    process();
    softmask_test::OnnxNode asFloat = softmask_test::exportedNode(8);
    asFloat.attributes[0] = OnnxAttribute{"num_heads", OnnxAttribute::Kind::kFLOAT, {}, 8.0F};
    CHECK(softmask_test::importPluginNode(process().registry, asFloat).plugin == nullptr);
    CHECK_CONTAINS(process().logger.errorText(), "num_heads");
    CHECK_CONTAINS(process().logger.errorText(), "kFLOAT32");

    softmask_test::OnnxNode otherVersion = softmask_test::exportedNode(8);
    otherVersion.attributes[1].text = "2";
    CHECK_CONTAINS(softmask_test::importPluginNode(process().registry, otherVersion).error, "Plugin not found");
}

SOFTMASK_TEST(theRuntimePluginRunsFromItsSerialisedFieldsAlone)
{
    CHECK_EQ(cudaSetDevice(kFirstGpu), cudaSuccess);
    Profile const profile = hodorProfile(DataType::kHALF, DataType::kHALF);
    softmask_test::SerializedPlugin engine;
    std::unique_ptr<nvinfer1::IPluginV3> plugin = engineFor(profile, engine);
    softmask_test::ExecutionContext context(*plugin);
    CHECK_EQ(context.setShapes(profile, AttentionShape{1, 13, 6420, 256, 8}), 0);
    fake_cuda::clearLog();
    CHECK_EQ(context.enqueue(engine.workspaceBytes), 0);
    CHECK_EQ(fake_cuda::launches().size(), size_t{1}); // one kernel: splits and their merge
}

SOFTMASK_TEST(enqueueLoadsNothingTheShapeCallbacksHaveNotLoaded)
{
    CHECK_EQ(cudaSetDevice(kFirstGpu), cudaSuccess);
    Profile const profile = hodorProfile(DataType::kFLOAT, DataType::kHALF, 128);
    softmask_test::SerializedPlugin engine;
    std::unique_ptr<nvinfer1::IPluginV3> plugin = engineFor(profile, engine);
    softmask_test::ExecutionContext context(*plugin);
    CHECK_EQ(context.setShapes(profile, AttentionShape{2, 40, 1000, 128, 8}), 0);
    fake_cuda::clearLog();
    CHECK_EQ(context.enqueue(engine.workspaceBytes), 0);
    CHECK_EQ(fake_cuda::loadCalls(), 0); // no module load, PTX JIT or attribute change in enqueue
    CHECK_EQ(fake_cuda::launches().size(), size_t{1});
}

SOFTMASK_TEST(anExecutionContextOnASecondGpuRunsKernelsAboveTheDefaultSharedMemory)
{
    // fp32 with D = 64 needs more than 48 KiB of dynamic shared memory on sm_90 (set per device).
    CHECK_EQ(cudaSetDevice(kFirstGpu), cudaSuccess);
    Profile const profile = hodorProfile(DataType::kFLOAT, DataType::kFLOAT, 512);
    softmask_test::SerializedPlugin engine;
    std::unique_ptr<nvinfer1::IPluginV3> plugin = engineFor(profile, engine);
    for (int device : {kFirstGpu, kSecondGpu})
    {
        CHECK_EQ(cudaSetDevice(device), cudaSuccess);
        softmask_test::ExecutionContext context(*plugin);
        CHECK_EQ(context.setShapes(profile, AttentionShape{1, 13, 6420, 512, 8}), 0);
        fake_cuda::clearLog();
        if (context.enqueue(engine.workspaceBytes) != 0)
        {
            ::softmask_test::fail(__FILE__, __LINE__, "enqueue on device " + std::to_string(device) + " failed:\n"
                    + process().logger.errorText());
        }
        CHECK_EQ(fake_cuda::loadCalls(), 0);
        CHECK_EQ(fake_cuda::launches().size(), size_t{1});
        CHECK_EQ(fake_cuda::launches()[0].device, device);
    }
    CHECK_EQ(cudaSetDevice(kFirstGpu), cudaSuccess);
}

SOFTMASK_TEST_MAIN()
