# cmake -DNM=<nm> -DLIBRARY=<lib.so> "-DEXPECTED=a;b" [-DPATTERN=<regex>] -P checkExportedSymbols.cmake
# Fails unless `nm -D --defined-only LIBRARY` lists exactly the EXPECTED symbols, or, with PATTERN,
# unless every exported symbol matches PATTERN and the EXPECTED ones are among them.
foreach(required NM LIBRARY EXPECTED)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "checkExportedSymbols.cmake: -D${required}=... is required")
  endif()
endforeach()

execute_process(
  COMMAND ${NM} -D --defined-only ${LIBRARY}
  OUTPUT_VARIABLE nm_output
  ERROR_VARIABLE nm_error
  RESULT_VARIABLE nm_result)
if(NOT nm_result EQUAL 0)
  message(FATAL_ERROR "${NM} -D --defined-only ${LIBRARY} failed (${nm_result}): ${nm_error}")
endif()

set(exported "")
string(REPLACE "\n" ";" nm_lines "${nm_output}")
foreach(line IN LISTS nm_lines)
  # "<address> <type> <name>[@version]"
  if(line MATCHES "^[0-9a-fA-F]+ [A-Za-z] ([^@ ]+)")
    list(APPEND exported "${CMAKE_MATCH_1}")
  endif()
endforeach()
list(SORT exported)
set(expected ${EXPECTED})
list(SORT expected)

if(DEFINED PATTERN)
  set(unexpected "")
  foreach(symbol IN LISTS exported)
    if(NOT symbol MATCHES "${PATTERN}")
      list(APPEND unexpected "${symbol}")
    endif()
  endforeach()
  set(missing ${expected})
  list(REMOVE_ITEM missing ${exported})
  if(unexpected OR missing)
    message(FATAL_ERROR "${LIBRARY}: exported symbols not matching '${PATTERN}': [${unexpected}]; "
      "missing: [${missing}]")
  endif()
  message(STATUS "${LIBRARY} exports only '${PATTERN}' symbols: ${exported}")
  return()
endif()

if(NOT "${exported}" STREQUAL "${expected}")
  message(FATAL_ERROR "${LIBRARY} exports [${exported}], expected exactly [${expected}]\n${nm_output}")
endif()
message(STATUS "${LIBRARY} exports exactly: ${exported}")
