/* uart.h - polled byte I/O on the MPS2 boards' UART0 (an ARM CMSDK APB UART at 0x40004000). */
#ifndef PAE_UART_H
#define PAE_UART_H
#include <stddef.h>
#include <stdint.h>

void pae_uart_init(void);
/* A received byte (0..255), or -1 when none is waiting. */
int pae_uart_getc(void);
void pae_uart_write(const uint8_t* data, size_t n);
#endif
