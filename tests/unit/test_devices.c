/* DEVICES.INI: a setup's own device profiles. A valid file gives profiles the job engine can use
 * (found by name, ignoring case, before the built-in ones); every bad value is refused with the
 * file, the line and why. */
#include "mf_devices.h"
#include "mf_err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct mf_devices devices;

static void test_valid_file(void **state)
{
    (void)state;
    static const char text[] = "; our parts\n"
                               "[ACME-M0-128K]\n"
                               "description = ACME M0, 128 KiB in 2 KiB pages\n"
                               "flash = 0x0 64x2K\n"
                               "write_size = 8\n"
                               "uid = 0x1FFF7590 12\n"
                               "protect_levels = 2\n"
                               "\n"
                               "[acme.dual]\n"
                               "flash = 0x08000000 4x16K, 1x64K\n"
                               "flash = 0x08100000 8x128K\n"
                               "write_size = 4\n"
                               "erased = 0x00\n";
    char message[MF_DEVICES_MESSAGE_MAX];
    assert_int_equal(mf_devices_parse(&devices, text, sizeof text - 1, message), 0);
    assert_int_equal(devices.count, 2);
    const struct mf_profile *a = mf_devices_find(&devices, "acme-m0-128k");
    assert_non_null(a);
    assert_string_equal(a->name, "ACME-M0-128K");
    assert_string_equal(a->description, "ACME M0, 128 KiB in 2 KiB pages");
    assert_int_equal(a->flash_count, 1);
    assert_int_equal(a->flash[0].start, 0);
    assert_int_equal(a->flash[0].size, 128u << 10);
    assert_int_equal(a->flash[0].write_size, 8);
    assert_int_equal(a->flash[0].erased_value, 0xFF);
    assert_int_equal(a->uid_address, 0x1FFF7590u);
    assert_int_equal(a->uid_length, 12);
    assert_int_equal(a->protect_levels, 2);
    assert_int_equal(mf_region_sector_count(&a->flash[0]), 64);
    const struct mf_profile *b = mf_devices_find(&devices, "ACME.DUAL");
    assert_non_null(b);
    assert_int_equal(b->flash_count, 2);
    assert_int_equal(b->flash[0].size, (4u * 16 + 64) << 10);
    assert_int_equal(b->flash[1].start, 0x08100000u);
    assert_int_equal(b->flash[1].size, 8u * 128 << 10);
    assert_int_equal(b->flash[1].erased_value, 0x00);
    assert_int_equal(b->uid_length, 0);
    uint64_t start;
    uint32_t size;
    mf_region_sector(mf_profile_region(b, 0x08010001), 0x08010001, &start, &size);
    assert_int_equal(start, 0x08010000u);
    assert_int_equal(size, 64u << 10);
    /* The built-in ones are still found, and an unknown name is not. */
    assert_true(mf_devices_find(&devices, "STM32F103x8") == mf_profile_find("STM32F103x8"));
    assert_null(mf_devices_find(&devices, "ACME-M1"));
    assert_true(mf_devices_find(NULL, "SIM-F4-1M") == mf_profile_find("SIM-F4-1M"));
}

static void test_errors_name_line_and_why(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"flash = 0 1x1K\n", "DEVICES.INI:1: 'flash' is outside a [DEVICE] section"},
        {"[A]\nflash = 0 4x1K\n", "DEVICES.INI:2: [A] write_size is missing"},
        {"[A]\nwrite_size = 4\n", "DEVICES.INI:2: [A] has no flash (flash = START SECTORS)"},
        {"[A]\nflash = 0 4x1K\nwrite_size = 3\n",
         "DEVICES.INI:3: write_size: '3' is not a power of two from 1 to 4096"},
        {"[A]\nflash = 0 4x6\nwrite_size = 4\n",
         "DEVICES.INI:2: flash: sectors of 6 bytes are not a multiple of write_size (4, line 3)"},
        {"[A]\nflash = 0x1000 4x1K\nflash = 0x1800 1x1K\nwrite_size = 4\n",
         "DEVICES.INI:3: flash: the region overlaps the one before it"},
        {"[A]\nflash = 0 1x1K\nflash = 0x10000 1x1K\nflash = 0x20000 1x1K\n",
         "DEVICES.INI:4: [A] has more than 2 flash regions"},
        {"[A]\nflash = 0 1x1K,1x2K,1x4K,1x8K,1x16K\n",
         "DEVICES.INI:2: flash: at most 4 runs of sectors per region"},
        {"[A]\nflash = 0x08000000\n",
         "DEVICES.INI:2: flash: '0x08000000' is not a start address and sectors"},
        {"[A]\nflash = 0 4y1K\n", "DEVICES.INI:2: flash: sectors are COUNTxSIZE"},
        {"[A]\nflash = 0 4x0\n", "DEVICES.INI:2: flash: a sector size from 1 byte"},
        {"[A]\nflash = 0xFFFFFFFFFFFFF000 4x4K\n",
         "DEVICES.INI:2: flash: the region ends past the address space"},
        {"[A]\nuid = 0x100 17\n", "DEVICES.INI:2: uid: '0x100 17' is not an address and a length"},
        {"[A]\nerased = 0x100\n", "DEVICES.INI:2: erased: '0x100' is not a byte value"},
        {"[A]\nprotect_levels = ten\n", "DEVICES.INI:2: protect_levels: 'ten' is not a number"},
        {"[A]\nspeed = 9\n", "DEVICES.INI:2: unknown key 'speed' in [A]"},
        {"[A]\nwrite_size = 4\nwrite_size = 8\n", "DEVICES.INI:3: [A] write_size is given twice"},
        {"[stm32f103X8]\nwrite_size = 4\n",
         "DEVICES.INI:2: [stm32f103X8] is a built-in profile: give yours another name"},
        {"[A]\nflash = 0 1x1K\nwrite_size = 4\n[a]\nflash = 0 1x1K\nwrite_size = 4\n",
         "DEVICES.INI:5: [a] is described twice"},
        {"[A B]\nwrite_size = 4\n", "DEVICES.INI:2: [A B]: a device name is letters, digits"},
        {"[A]\nflash = 0 4x1K\nwrite_size = 4\n[B]\nflash = 0 1x1K\n",
         "DEVICES.INI:5: [B] write_size is missing"},
        {"[A\n", "DEVICES.INI:1: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char message[MF_DEVICES_MESSAGE_MAX];
        int err = mf_devices_parse(&devices, cases[i].text, strlen(cases[i].text), message);
        if (err != MF_EFORMAT || strncmp(message, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: %d '%s', wanted '%s'", i, err, message, cases[i].want);
        assert_int_equal(devices.count, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_errors_name_line_and_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
