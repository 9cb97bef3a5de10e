# find_package(cqkv): the installed layer libraries (cqkv::cqkv links them all) and the system
# libraries they link.
include(CMakeFindDependencyMacro)
find_dependency(fmt)
find_dependency(nlohmann_json)
find_dependency(Threads)
find_dependency(PkgConfig)
pkg_check_modules(HWY REQUIRED IMPORTED_TARGET libhwy)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
include("${CMAKE_CURRENT_LIST_DIR}/cqkvTargets.cmake")
