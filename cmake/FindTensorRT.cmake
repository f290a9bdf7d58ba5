# FindTensorRT: TensorRT's C++ headers (and, when present, libnvinfer).
#
# The plugin talks to TensorRT only through abstract interfaces, so it needs the headers and never
# links libnvinfer; the library is located only to tell a real install from a headers-only copy.
#
# Search order: TensorRT_ROOT (CMake or environment variable), then system paths (Debian/JetPack
# packages put NvInfer.h in /usr/include/<triplet>). Hints: TensorRT_INCLUDE_DIR.
#
# Result variables:
#   TensorRT_FOUND, TensorRT_INCLUDE_DIR, TensorRT_VERSION (e.g. 10.14.1),
#   TensorRT_LIBRARY (libnvinfer; empty for a headers-only copy)
# Imported target:
#   TensorRT::headers (INTERFACE: include directory only)

set(_trt_roots "")
if(DEFINED TensorRT_ROOT)
  list(APPEND _trt_roots "${TensorRT_ROOT}")
endif()
if(DEFINED ENV{TensorRT_ROOT})
  list(APPEND _trt_roots "$ENV{TensorRT_ROOT}")
endif()

find_path(TensorRT_INCLUDE_DIR
  NAMES NvInferRuntime.h NvInferVersion.h
  HINTS ${_trt_roots}
  PATH_SUFFIXES include include/${CMAKE_LIBRARY_ARCHITECTURE}
  DOC "Directory holding NvInferRuntime.h")

find_library(TensorRT_LIBRARY
  NAMES nvinfer
  HINTS ${_trt_roots}
  PATH_SUFFIXES lib lib64 lib/${CMAKE_LIBRARY_ARCHITECTURE}
  DOC "libnvinfer (optional; only used to report a full install)")

if(TensorRT_INCLUDE_DIR AND EXISTS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
  file(STRINGS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" _trt_version_lines
    REGEX "^#define (NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? +[0-9]+")
  foreach(_part MAJOR MINOR PATCH)
    foreach(_line IN LISTS _trt_version_lines)
      if(_line MATCHES "^#define (NV_TENSORRT|TRT)_${_part}(_ENTERPRISE)? +([0-9]+)")
        set(_trt_${_part} "${CMAKE_MATCH_3}")
      endif()
    endforeach()
  endforeach()
  if(DEFINED _trt_MAJOR AND DEFINED _trt_MINOR AND DEFINED _trt_PATCH)
    set(TensorRT_VERSION "${_trt_MAJOR}.${_trt_MINOR}.${_trt_PATCH}")
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT
  REQUIRED_VARS TensorRT_INCLUDE_DIR
  VERSION_VAR TensorRT_VERSION)

if(TensorRT_FOUND AND NOT TARGET TensorRT::headers)
  add_library(TensorRT::headers INTERFACE IMPORTED)
  # SYSTEM: TensorRT's headers use deprecated declarations internally; their warnings are not ours.
  set_target_properties(TensorRT::headers PROPERTIES
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}"
    INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}")
endif()

mark_as_advanced(TensorRT_INCLUDE_DIR TensorRT_LIBRARY)
unset(_trt_roots)
