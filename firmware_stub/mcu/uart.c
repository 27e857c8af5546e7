/* uart.c - CMSDK APB UART0, polled (no interrupts): what qemu's -serial connects to on mps2-an386/an500. */
#include "uart.h"

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t*)(UART0_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t*)(UART0_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t*)(UART0_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t*)(UART0_BASE + 0x10u))
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u

void pae_uart_init(void) {
    UART_BAUDDIV = 16u; /* the smallest divider the UART accepts (qemu refuses to send below 16) */
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
}

int pae_uart_getc(void) { return (UART_STATE & STATE_RX_FULL) ? (int)(UART_DATA & 0xFFu) : -1; }

void pae_uart_write(const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = data[i];
    }
}
