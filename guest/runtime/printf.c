/* Formatted output into a buffer; printf() sends the result to COM1 under a lock. */
#include "runtime/libc.h"
#include "runtime/serial.h"
#include "runtime/x86.h"

struct out {
  char* buf;
  size_t size;
  size_t len;
};

static void put(struct out* o, char c) {
  if (o->len + 1 < o->size) o->buf[o->len] = c;
  o->len++;
}

static void put_number(struct out* o, uint64_t v, bool negative, unsigned base, bool upper, int width,
                       bool left, char pad, char sign_char) {
  char tmp[24];
  int n = 0;
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  do {
    tmp[n++] = digits[v % base];
    v /= base;
  } while (v);
  char sign = negative ? '-' : sign_char;
  int len = n + (sign ? 1 : 0);
  if (!left && pad == ' ')
    for (; width > len; --width) put(o, ' ');
  if (sign) put(o, sign);
  if (!left && pad == '0')
    for (; width > len; --width) put(o, '0');
  while (n) put(o, tmp[--n]);
  if (left)
    for (; width > len; --width) put(o, ' ');
}

int vsnprintf(char* buf, size_t size, const char* fmt, va_list ap) {
  struct out o = {buf, size, 0};
  for (; *fmt; ++fmt) {
    if (*fmt != '%') {
      put(&o, *fmt);
      continue;
    }
    ++fmt;
    bool left = false, alt = false;
    char pad = ' ', sign_char = 0;
    for (;; ++fmt) {
      if (*fmt == '-') left = true;
      else if (*fmt == '#') alt = true;
      else if (*fmt == '0') pad = '0';
      else if (*fmt == '+') sign_char = '+';
      else if (*fmt == ' ') { if (!sign_char) sign_char = ' '; }
      else break;
    }
    int width = 0;
    if (*fmt == '*') {
      width = va_arg(ap, int);
      ++fmt;
    } else {
      while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    }
    int precision = -1;
    if (*fmt == '.') {
      ++fmt;
      precision = 0;
      if (*fmt == '*') {
        precision = va_arg(ap, int);
        ++fmt;
      } else {
        while (*fmt >= '0' && *fmt <= '9') precision = precision * 10 + (*fmt++ - '0');
      }
    }
    int size_mod = 0; /* -2 hh, -1 h, 0 int, 1 long, 2 long long */
    for (;; ++fmt) {
      if (*fmt == 'h') size_mod = size_mod == -1 ? -2 : -1;
      else if (*fmt == 'l') size_mod = size_mod == 1 ? 2 : 1;
      else if (*fmt == 'z' || *fmt == 'j' || *fmt == 't') size_mod = 2;
      else break;
    }
    switch (*fmt) {
      case 'd':
      case 'i': {
        int64_t v = size_mod >= 1 ? va_arg(ap, int64_t) : va_arg(ap, int);
        if (size_mod == -1) v = (int16_t)v;
        if (size_mod == -2) v = (int8_t)v;
        uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;
        put_number(&o, mag, v < 0, 10, false, width, left, pad, sign_char);
        break;
      }
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        uint64_t v = size_mod >= 1 ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
        if (size_mod == -1) v = (uint16_t)v;
        if (size_mod == -2) v = (uint8_t)v;
        unsigned base = *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16;
        if (alt && base == 16 && v) { /* "0x" counts toward the width, as in C */
          put(&o, '0');
          put(&o, *fmt == 'X' ? 'X' : 'x');
          width = width > 2 ? width - 2 : 0;
        }
        put_number(&o, v, false, base, *fmt == 'X', width, left, pad, 0);
        break;
      }
      case 'p':
        put(&o, '0');
        put(&o, 'x');
        put_number(&o, (uint64_t)va_arg(ap, void*), false, 16, false, width > 2 ? width - 2 : 0, left, pad, 0);
        break;
      case 'c':
        put(&o, (char)va_arg(ap, int));
        break;
      case 's': {
        const char* s = va_arg(ap, const char*);
        if (!s) s = "(null)";
        int n = (int)strnlen(s, precision >= 0 ? (size_t)precision : (size_t)-1);
        if (!left)
          for (int i = n; i < width; ++i) put(&o, ' ');
        for (int i = 0; i < n; ++i) put(&o, s[i]);
        if (left)
          for (int i = n; i < width; ++i) put(&o, ' ');
        break;
      }
      case '%':
        put(&o, '%');
        break;
      case 0:
        --fmt;
        break;
      default:
        put(&o, '%');
        put(&o, *fmt);
        break;
    }
  }
  if (o.size) o.buf[o.len < o.size ? o.len : o.size - 1] = 0;
  return (int)o.len;
}

int snprintf(char* buf, size_t size, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  return n;
}

static struct spinlock print_lock;

int vprintf(const char* fmt, va_list ap) {
  char buf[512];
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  uint64_t f = spin_lock_irqsave(&print_lock);
  serial_write(buf, strlen(buf));
  spin_unlock_irqrestore(&print_lock, f);
  return n;
}

int printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vprintf(fmt, ap);
  va_end(ap);
  return n;
}

int puts(const char* s) { return printf("%s\n", s); }
