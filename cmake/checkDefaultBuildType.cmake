# cmake -DSOURCE_DIR=<repo> -DPROBE_DIR=<empty dir> -DCUDA_COMPILER=<nvcc> -P checkDefaultBuildType.cmake
# Configures the project (kernel library only, no tests) without CMAKE_BUILD_TYPE and fails unless
# the configured build type is Release.
foreach(required SOURCE_DIR PROBE_DIR CUDA_COMPILER)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "checkDefaultBuildType.cmake: -D${required}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${PROBE_DIR}")
execute_process(
  COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${PROBE_DIR}" -G "Unix Makefiles"
    -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER} -DCMAKE_CUDA_ARCHITECTURES=90
    -DSOFTMASK_BUILD_PLUGIN=OFF -DBUILD_TESTING=OFF
  OUTPUT_VARIABLE configure_output
  ERROR_VARIABLE configure_output
  RESULT_VARIABLE configure_result)
if(NOT configure_result EQUAL 0)
  message(FATAL_ERROR "configuring ${SOURCE_DIR} without CMAKE_BUILD_TYPE failed:\n${configure_output}")
endif()
file(STRINGS "${PROBE_DIR}/CMakeCache.txt" build_type REGEX "^CMAKE_BUILD_TYPE:")
file(REMOVE_RECURSE "${PROBE_DIR}")
if(NOT build_type MATCHES "=Release$")
  message(FATAL_ERROR "without -DCMAKE_BUILD_TYPE the project configures '${build_type}', expected Release")
endif()
message(STATUS "default build type: ${build_type}")
