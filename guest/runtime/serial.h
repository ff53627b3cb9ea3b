/* COM1, a 16550 UART at 0x3f8, driven by polling. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define COM1 0x3f8
/* Register offsets (PC16550D data sheet, Table 2). */
#define UART_RBR 0 /* receive buffer (read, DLAB = 0) */
#define UART_THR 0 /* transmit holding (write, DLAB = 0) */
#define UART_DLL 0 /* divisor latch low (DLAB = 1) */
#define UART_IER 1
#define UART_DLM 1 /* divisor latch high (DLAB = 1) */
#define UART_IIR 2 /* interrupt identification (read) */
#define UART_FCR 2 /* FIFO control (write) */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7
#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_LCR_DLAB 0x80

void serial_init(void);
void serial_putc(char c);
void serial_write(const char* s, size_t n);
