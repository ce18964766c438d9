/* A small Cortex-M3 firmware for QEMU's lm3s6965evb board, programmed by mintflash in its
 * end-to-end tests: prints a greeting, its serial number, its UID and the UID signature bytes on
 * UART0, reading them from the fixed addresses of layout.h, how often it started since power-on
 * and whether the board was reset before this start, then idles. No C library. */
#include "layout.h"

#include <stdbool.h>
#include <stdint.h>

#define UART_DR      (*(volatile uint32_t *)(UART0_BASE + 0x000u))
#define UART_FR      (*(volatile uint32_t *)(UART0_BASE + 0x018u))
#define UART_FR_TXFF (1u << 5)
/* SysTick's reload register: 0 after a reset. Each start leaves a mark in it (the timer stays
 * off), so a start without a reset (SP and PC set by a debugger) finds the mark. */
#define SYST_RVR     (*(volatile uint32_t *)0xE000E014u)
#define SYST_MARK    0x00A5C3E1u /* 24 bits */
#define BOOT_MAGIC   0x4D46424Fu

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end;

void reset_handler(void);
void default_handler(void);
int main(void);

static void put_char(char c)
{
    while (UART_FR & UART_FR_TXFF)
        ;
    UART_DR = (uint32_t)(unsigned char)c;
}

static void put_text(const char *s)
{
    while (*s)
        put_char(*s++);
}

static void put_hex(const volatile uint8_t *bytes, uint32_t length)
{
    static const char digits[] = "0123456789ABCDEF";
    for (uint32_t i = 0; i < length; i++) {
        put_char(digits[bytes[i] >> 4]);
        put_char(digits[bytes[i] & 15u]);
    }
}

static void put_decimal(uint32_t v)
{
    char text[11];
    int n = 0;
    do {
        text[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n)
        put_char(text[--n]);
}

/* Kept in .data so that the start-up copy is exercised too. */
static char greeting[] = "Hello from mintflash on QEMU lm3s6965evb\r\n";

/* Starts since power-on: in RAM that the start-up code leaves alone, so it survives a reset;
 * the magic word tells a count from power-on garbage. */
static struct {
    uint32_t magic, count;
} boot_record __attribute__((section(".noinit")));

int main(void)
{
    if (boot_record.magic != BOOT_MAGIC) {
        boot_record.magic = BOOT_MAGIC;
        boot_record.count = 0;
    }
    boot_record.count++;
    bool reset = SYST_RVR != SYST_MARK;
    SYST_RVR = SYST_MARK;
    put_text(greeting);
    const volatile uint8_t *s = (const volatile uint8_t *)SERIAL_ADDRESS;
    uint32_t serial =
        (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
    put_text("serial: ");
    put_decimal(serial);
    put_text("\r\nuid: ");
    put_hex((const volatile uint8_t *)UID_ADDRESS, UID_LENGTH);
    put_text("\r\nsig: ");
    put_hex((const volatile uint8_t *)SIGNATURE_ADDRESS, SIGNATURE_LENGTH);
    put_text("\r\nboots: ");
    put_decimal(boot_record.count);
    put_text(reset ? "\r\nstarted: after a reset" : "\r\nstarted: without a reset");
    put_text("\r\ndone\r\n");
    /* A busy loop, not wfi: QEMU does not wake a CPU that sleeps in wfi when a debugger sets its
     * PC, so a vector start of a board that already runs this image would never begin. */
    for (;;)
        ;
}

void reset_handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
    main();
    for (;;)
        ;
}

void default_handler(void)
{
    put_text("fault\r\n");
    for (;;)
        ;
}

/* Initial SP, reset, NMI, hard fault, then the other system exceptions. */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top),
    reset_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    0,
    0,
    0,
    0,
    default_handler,
    default_handler,
    0,
    default_handler,
    default_handler,
};
