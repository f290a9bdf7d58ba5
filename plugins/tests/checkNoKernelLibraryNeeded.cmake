# Fails when LIBRARY needs libsoftmask_kernels.so (a DT_NEEDED entry): the plugin libraries carry
# the kernels themselves, so TensorRT's copy of an embedded plugin (--setPluginsToSerialize) and
# Triton's plugins= list need no second file.
execute_process(COMMAND ${OBJDUMP} -p ${LIBRARY} OUTPUT_VARIABLE headers RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${OBJDUMP} -p ${LIBRARY} failed (${status})")
endif()
if(headers MATCHES "NEEDED[ \t]+libsoftmask_kernels")
  message(FATAL_ERROR "${LIBRARY} needs libsoftmask_kernels.so; link the kernels into it")
endif()
if(NOT headers MATCHES "NEEDED")
  message(FATAL_ERROR "${OBJDUMP} -p ${LIBRARY} listed no NEEDED entry at all; cannot check")
endif()
