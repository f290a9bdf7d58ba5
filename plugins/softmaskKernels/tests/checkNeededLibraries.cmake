# cmake -DOBJDUMP=<objdump> -DLIBRARY=<lib.so> -DFORBIDDEN=<regex> -P checkNeededLibraries.cmake
# Fails when a DT_NEEDED entry of LIBRARY (`objdump -p`) matches FORBIDDEN: with the CUDA runtime
# linked statically, libsoftmask_kernels.so must need neither libcudart nor libcuda, so that it
# never binds to another CUDA runtime in the process (or to a missing one).
foreach(required OBJDUMP LIBRARY FORBIDDEN)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "checkNeededLibraries.cmake: -D${required}=... is required")
  endif()
endforeach()
execute_process(
  COMMAND ${OBJDUMP} -p ${LIBRARY}
  OUTPUT_VARIABLE dump
  ERROR_VARIABLE dump_error
  RESULT_VARIABLE dump_result)
if(NOT dump_result EQUAL 0)
  message(FATAL_ERROR "${OBJDUMP} -p ${LIBRARY} failed (${dump_result}): ${dump_error}")
endif()
string(REGEX MATCHALL "NEEDED +[^\n]+" needed "${dump}")
if(NOT needed)
  message(FATAL_ERROR "no NEEDED entry in ${LIBRARY}: not a dynamic library?")
endif()
foreach(entry IN LISTS needed)
  string(REGEX REPLACE "NEEDED +" "" name "${entry}")
  if(name MATCHES "${FORBIDDEN}")
    message(FATAL_ERROR "${LIBRARY} needs ${name}")
  endif()
  message(STATUS "needs ${name}")
endforeach()
