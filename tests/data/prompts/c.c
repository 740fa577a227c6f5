#include <stddef.h>

size_t count_char(const char *s, char c) {
    size_t n = 0;
    <CURSOR>
    return n;
}
