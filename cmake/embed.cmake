# Turns a binary file into a C++ source defining a byte array.
#   cmake -DINPUT=file.bin -DOUTPUT=file.cpp -DSYMBOL=name -P embed.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" len)
math(EXPR size "${len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}" "// Generated from ${INPUT} by cmake/embed.cmake.\n#include <cstddef>\n#include <cstdint>\nextern const uint8_t ${SYMBOL}[];\nextern const size_t ${SYMBOL}_size;\nalignas(16) const uint8_t ${SYMBOL}[] = {\n${bytes}\n};\nconst size_t ${SYMBOL}_size = ${size};\n")
