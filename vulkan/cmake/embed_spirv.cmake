# embed_spirv.cmake — turns a SPIR-V binary (IN) into a C file (OUT) defining
# `const uint32_t trit_vk_spv_<NAME>[]` and its size in bytes. SPIR-V is a stream of
# little-endian 32-bit words, which this writes back as words.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR rem "${n} % 8")
if(n EQUAL 0 OR NOT rem EQUAL 0)
  message(FATAL_ERROR "${IN}: not a whole number of 32-bit words")
endif()
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "(..)(..)(..)(..)" "0x\\4\\3\\2\\1u," words "${hex}")
string(REGEX REPLACE "(([^,]*,){8})" "\\1\n    " words "${words}")
file(WRITE ${OUT} "/* Generated from ${NAME}.spv by vulkan/cmake/embed_spirv.cmake. */
#include <stddef.h>
#include <stdint.h>
extern const uint32_t trit_vk_spv_${NAME}[];
extern const size_t trit_vk_spv_${NAME}_bytes;
const uint32_t trit_vk_spv_${NAME}[] = {
    ${words}
};
const size_t trit_vk_spv_${NAME}_bytes = ${bytes};
")
