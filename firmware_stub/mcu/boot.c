/* boot.c - the boot stage of the Cortex-M firmware: check the application image's ed25519 signature,
 * then start it. ../SIGNING.md says what this protects and what it does not.
 *
 * Flash (the MPS2 boards' code memory at 0x0, as qemu emulates them):
 *   0x00000000  this boot stage (vector table first), built with the public key in it (boot_key.h)
 *   0x0000FF80  the boot record, 128 bytes: signature[64], zero[48], magic "PAEIMG01", u32 base, u32 length
 *   0x00010000  the application: the bundle's <target>.elf (linked there by mcu.ld), `length` bytes
 * The signature (Monocypher's crypto_ed25519_check, RFC 8032 ed25519) is over the 16 header bytes at
 * 0xFFF0 followed by the image: magic, base and length are signed along with every byte of the image.
 * Built without a key (PAE_BOOT_KEY undefined: unsigned bundles), it starts the image unchecked.
 * Refusal stops the board through semihosting SYS_EXIT_EXTENDED with status 6 (qemu exits with 6),
 * before a single instruction of the image has run.
 */
#include <stdint.h>

#include "boot_key.h" /* generated next to the build: PAE_BOOT_KEY {32 bytes}, or nothing */
#include "monocypher-ed25519.h"

#define APP_BASE 0x00010000u
#define RECORD_ADDR (APP_BASE - 128u)
#define FLASH_END 0x00400000u
#define SCB_VTOR (*(volatile uint32_t*)0xE000ED08u)
#define EXIT_SIGNATURE_REFUSED 6u

typedef struct {
    uint8_t signature[64];
    uint8_t zero[48];
    uint8_t magic[8];
    uint32_t base;
    uint32_t length;
} boot_record;

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;

/* Semihosting SYS_EXIT_EXTENDED: reason ADP_Stopped_ApplicationExit with a status (qemu exits with it). */
static void board_exit(uint32_t status) {
    static uint32_t block[2];
    block[0] = 0x20026u;
    block[1] = status;
    register uint32_t r0 __asm__("r0") = 0x20u;
    register uint32_t r1 __asm__("r1") = (uint32_t)block;
    __asm__ volatile("bkpt 0xAB" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

#ifdef PAE_BOOT_KEY
static const uint8_t public_key[32] = PAE_BOOT_KEY;

static int image_is_signed(void) {
    const boot_record* r = (const boot_record*)RECORD_ADDR;
    static const uint8_t magic[8] = {'P', 'A', 'E', 'I', 'M', 'G', '0', '1'};
    for (int i = 0; i < 8; i++)
        if (r->magic[i] != magic[i]) return 0;
    if (r->base != APP_BASE || r->length < 8u || r->length > FLASH_END - APP_BASE) return 0;
    return crypto_ed25519_check(r->signature, public_key, r->magic, 16u + r->length) == 0;
}
#endif

__attribute__((noreturn)) static void start_image(void) {
    const uint32_t* vectors = (const uint32_t*)APP_BASE;
    SCB_VTOR = APP_BASE;
    __asm__ volatile("dsb\n\tisb\n\tmsr msp, %0\n\tbx %1" : : "r"(vectors[0]), "r"(vectors[1]) : "memory");
    __builtin_unreachable();
}

void Boot_Reset_Handler(void) {
    uint32_t* src = &__data_load;
    for (uint32_t* dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
    for (uint32_t* dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
#ifdef PAE_BOOT_KEY
    if (!image_is_signed()) board_exit(EXIT_SIGNATURE_REFUSED);
#endif
    start_image();
}

static void Boot_Fault_Handler(void) { board_exit(1); }

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), Boot_Reset_Handler, Boot_Fault_Handler, Boot_Fault_Handler, Boot_Fault_Handler,
    Boot_Fault_Handler, Boot_Fault_Handler, 0, 0, 0, 0, Boot_Fault_Handler, Boot_Fault_Handler, 0,
    Boot_Fault_Handler, Boot_Fault_Handler,
};
