/* The small libc of the test guests: strings, memory, formatted output. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
size_t strnlen(const char* s, size_t max);
int strcmp(const char* a, const char* b);
int strncmp(const char* a, const char* b, size_t n);
char* strchr(const char* s, int c);
char* strrchr(const char* s, int c);
char* strncpy(char* dst, const char* src, size_t n);
bool str_starts_with(const char* s, const char* prefix);
bool str_ends_with(const char* s, const char* suffix);
/* Parses a decimal or 0x-prefixed hexadecimal number; *end (if given) gets the first byte after. */
uint64_t strtou64(const char* s, const char** end);

/* printf family: %d %i %u %x %X %o %c %s %p %%, flags '-' '0' ' ' '+' '#', width, precision for
 * strings, length modifiers hh h l ll z j t. printf() writes to COM1 under a lock, one call at a
 * time, so lines from different CPUs do not mix. */
int vsnprintf(char* buf, size_t size, const char* fmt, va_list ap);
int snprintf(char* buf, size_t size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
int vprintf(const char* fmt, va_list ap);
int printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int puts(const char* s);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
