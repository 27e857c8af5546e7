/* startup.c - reset and fault handling for a Cortex-M4F/M7 firmware (no OS, no C++ runtime).
 *
 * The vector table sits at the start of the image (0x10000, behind the boot stage: boot.c). Reset
 * enables the FPU before any float instruction runs (the kernels are built hard-float), copies .data
 * from flash, zeroes .bss, and calls main. A fault stops the board through semihosting's exit call
 * (qemu exits with status 1) instead of hanging silently, so the host names it.
 */
#include <stdint.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
int main(void);

#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)
#define SCB_VTOR (*(volatile uint32_t*)0xE000ED08u)
static void (*const vectors[16])(void);

/* Semihosting SYS_EXIT: on 32-bit ARM, r1 is the reason itself, ADP_Stopped_ApplicationExit (qemu
 * exits with 0) or ADP_Stopped_RunTimeErrorUnknown (qemu exits with 1). */
void pae_board_exit(int failed) {
    register uint32_t r0 __asm__("r0") = 0x18u; /* SYS_EXIT */
    register uint32_t r1 __asm__("r1") = failed ? 0x20023u : 0x20026u;
    __asm__ volatile("bkpt 0xAB" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

void Reset_Handler(void) {
    SCB_VTOR = (uint32_t)vectors; /* the image is at 0x10000, behind the boot stage (boot.c) */
    SCB_CPACR |= 0xFu << 20; /* CP10 and CP11: full access to the FPU */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    uint32_t* src = &__data_load;
    for (uint32_t* dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
    for (uint32_t* dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
    pae_board_exit(main() != 0);
}

static void Fault_Handler(void) { pae_board_exit(1); }
static void Default_Handler(void) {
    for (;;) {
    }
}

/* The kernels carry ARM unwind tables that name the personality routine; nothing here unwinds. */
void __aeabi_unwind_cpp_pr0(void) {}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), /* initial stack pointer */
    Reset_Handler,
    Fault_Handler,   /* NMI */
    Fault_Handler,   /* HardFault */
    Fault_Handler,   /* MemManage */
    Fault_Handler,   /* BusFault */
    Fault_Handler,   /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    Default_Handler, /* SysTick */
};
