# shmutils_add_component(NAME SOURCES ... DEPENDS ...)
# One library per component: public headers under <component>/include, exported
# as shmutils::<NAME>, installed with its headers.
function(shmutils_add_component name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPENDS;PRIVATE_DEPENDS" ${ARGN})
  add_library(shmutils_${name} ${ARG_SOURCES})
  add_library(shmutils::${name} ALIAS shmutils_${name})
  set_target_properties(shmutils_${name} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME shmutils_${name})
  target_include_directories(shmutils_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(shmutils_${name} PUBLIC cxx_std_20)
  target_link_libraries(shmutils_${name} PUBLIC ${ARG_PUBLIC_DEPENDS}
                        PRIVATE ${ARG_PRIVATE_DEPENDS} $<BUILD_INTERFACE:shmutils_warnings>)
  install(TARGETS shmutils_${name} EXPORT shmutilsTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  # shmutils::sys is ours alone: no installed header includes it (lint.sh
  # checks), so it is not installed. The other detail/ headers are, because
  # public templates need them.
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          PATTERN "sys.hpp" EXCLUDE)
endfunction()
