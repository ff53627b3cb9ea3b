#include "runtime/serial.h"

#include "runtime/x86.h"

void serial_init(void) {
  outb(COM1 + UART_IER, 0x00);
  outb(COM1 + UART_LCR, UART_LCR_DLAB);
  outb(COM1 + UART_DLL, 0x01); /* 115200 baud */
  outb(COM1 + UART_DLM, 0x00);
  outb(COM1 + UART_LCR, 0x03); /* 8N1 */
  outb(COM1 + UART_FCR, 0xc7); /* FIFOs on and cleared, 14-byte trigger */
  outb(COM1 + UART_MCR, 0x0b); /* DTR, RTS, OUT2 */
}

void serial_putc(char c) {
  /* Wait for the transmitter, but not forever: a machine without a UART reads 0xff. */
  for (int i = 0; i < 1000000; ++i) {
    uint8_t lsr = inb(COM1 + UART_LSR);
    if (lsr == 0xff || (lsr & UART_LSR_THRE)) break;
    pause();
  }
  outb(COM1 + UART_THR, (uint8_t)c);
}

void serial_write(const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) serial_putc(s[i]);
}
