/* Built-in device profiles (see mf_profile.h): the SIM- ones written for the simulator after real
 * parts, real parts by their names, and QEMU's board. The timings are typical data-sheet values
 * (only the simulator uses them). */
#include "mf_profile.h"

#include "mf_ini.h"

#include <assert.h>

static const struct mf_profile mf_profiles[] = {
    {
        .name = "SIM-F4-1M",
        .description = "1 MiB flash at 0x08000000, sectors 4x16K 1x64K 7x128K, "
                       "96-bit UID at 0x1FFF7A10 (STM32F4-like)",
        .flash = {{.start = 0x08000000u,
                   .size = 1u << 20,
                   .groups = {{16u << 10, 4}, {64u << 10, 1}, {128u << 10, 7}},
                   .group_count = 3,
                   .write_size = 4,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x1FFF7A10u,
        .uid_length = 12,
        .protect_levels = 2,
        .timing = {.erase_us_per_kib = 8000,
                   .program_us_per_kib = 4000,
                   .link_kib_per_s = 1000,
                   .connect_ms = 30},
    },
    {
        .name = "SIM-N52-512K",
        .description = "512 KiB flash at 0x0 in 4 KiB pages, 64-bit UID at 0x10000060 "
                       "(nRF52-like)",
        .flash = {{.start = 0,
                   .size = 512u << 10,
                   .groups = {{4u << 10, 128}},
                   .group_count = 1,
                   .write_size = 4,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x10000060u,
        .uid_length = 8,
        .protect_levels = 1,
        .timing = {.erase_us_per_kib = 22000,
                   .program_us_per_kib = 10000,
                   .link_kib_per_s = 800,
                   .connect_ms = 20},
    },
    {
        .name = "SIM-F1-64K",
        .description = "64 KiB flash at 0x08000000 in 1 KiB pages, 96-bit UID at 0x1FFFF7E8 "
                       "(STM32F1-like)",
        .flash = {{.start = 0x08000000u,
                   .size = 64u << 10,
                   .groups = {{1u << 10, 64}},
                   .group_count = 1,
                   .write_size = 2,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x1FFFF7E8u,
        .uid_length = 12,
        .protect_levels = 1,
        .timing = {.erase_us_per_kib = 20000,
                   .program_us_per_kib = 30000,
                   .link_kib_per_s = 500,
                   .connect_ms = 20},
    },
    /* Real parts (maps, write sizes and UID addresses from their reference manuals). */
    {
        .name = "STM32F103x8",
        .description = "STM32F103 medium density: 64 KiB flash at 0x08000000 in 1 KiB pages, "
                       "96-bit UID at 0x1FFFF7E8",
        .flash = {{.start = 0x08000000u,
                   .size = 64u << 10,
                   .groups = {{1u << 10, 64}},
                   .group_count = 1,
                   .write_size = 2,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x1FFFF7E8u,
        .uid_length = 12,
        .protect_levels = 1,
        .timing = {.erase_us_per_kib = 20000,
                   .program_us_per_kib = 30000,
                   .link_kib_per_s = 500,
                   .connect_ms = 20},
    },
    {
        .name = "STM32F103xB",
        .description = "STM32F103 medium density: 128 KiB flash at 0x08000000 in 1 KiB pages, "
                       "96-bit UID at 0x1FFFF7E8",
        .flash = {{.start = 0x08000000u,
                   .size = 128u << 10,
                   .groups = {{1u << 10, 128}},
                   .group_count = 1,
                   .write_size = 2,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x1FFFF7E8u,
        .uid_length = 12,
        .protect_levels = 1,
        .timing = {.erase_us_per_kib = 20000,
                   .program_us_per_kib = 30000,
                   .link_kib_per_s = 500,
                   .connect_ms = 20},
    },
    {
        .name = "STM32F103xC",
        .description = "STM32F103 high density: 256 KiB flash at 0x08000000 in 2 KiB pages, 96-bit "
                       "UID at 0x1FFFF7E8",
        .flash = {{.start = 0x08000000u,
                   .size = 256u << 10,
                   .groups = {{2u << 10, 128}},
                   .group_count = 1,
                   .write_size = 2,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x1FFFF7E8u,
        .uid_length = 12,
        .protect_levels = 1,
        .timing = {.erase_us_per_kib = 20000,
                   .program_us_per_kib = 30000,
                   .link_kib_per_s = 500,
                   .connect_ms = 20},
    },
    {
        .name = "STM32F103xE",
        .description = "STM32F103 high density: 512 KiB flash at 0x08000000 in 2 KiB pages, 96-bit "
                       "UID at 0x1FFFF7E8",
        .flash = {{.start = 0x08000000u,
                   .size = 512u << 10,
                   .groups = {{2u << 10, 256}},
                   .group_count = 1,
                   .write_size = 2,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x1FFFF7E8u,
        .uid_length = 12,
        .protect_levels = 1,
        .timing = {.erase_us_per_kib = 20000,
                   .program_us_per_kib = 30000,
                   .link_kib_per_s = 500,
                   .connect_ms = 20},
    },
    {
        .name = "STM32F401xE",
        .description = "STM32F401: 512 KiB flash at 0x08000000, sectors 4x16K 1x64K 3x128K, 96-bit "
                       "UID at 0x1FFF7A10",
        .flash = {{.start = 0x08000000u,
                   .size = 512u << 10,
                   .groups = {{16u << 10, 4}, {64u << 10, 1}, {128u << 10, 3}},
                   .group_count = 3,
                   .write_size = 4,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x1FFF7A10u,
        .uid_length = 12,
        .protect_levels = 2,
        .timing = {.erase_us_per_kib = 8000,
                   .program_us_per_kib = 4000,
                   .link_kib_per_s = 1000,
                   .connect_ms = 30},
    },
    {
        .name = "STM32F407xG",
        .description = "STM32F405/407/415/417: 1 MiB flash at 0x08000000, sectors 4x16K 1x64K "
                       "7x128K, 96-bit UID at 0x1FFF7A10",
        .flash = {{.start = 0x08000000u,
                   .size = 1u << 20,
                   .groups = {{16u << 10, 4}, {64u << 10, 1}, {128u << 10, 7}},
                   .group_count = 3,
                   .write_size = 4,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x1FFF7A10u,
        .uid_length = 12,
        .protect_levels = 2,
        .timing = {.erase_us_per_kib = 8000,
                   .program_us_per_kib = 4000,
                   .link_kib_per_s = 1000,
                   .connect_ms = 30},
    },
    {
        .name = "nRF52832_xxAA",
        .description =
            "nRF52832: 512 KiB flash at 0x0 in 4 KiB pages, 64-bit FICR DEVICEID at 0x10000060",
        .flash = {{.start = 0,
                   .size = 512u << 10,
                   .groups = {{4u << 10, 128}},
                   .group_count = 1,
                   .write_size = 4,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x10000060u,
        .uid_length = 8,
        .protect_levels = 1,
        .timing = {.erase_us_per_kib = 22000,
                   .program_us_per_kib = 10000,
                   .link_kib_per_s = 800,
                   .connect_ms = 20},
    },
    {
        .name = "nRF52840_xxAA",
        .description =
            "nRF52840: 1 MiB flash at 0x0 in 4 KiB pages, 64-bit FICR DEVICEID at 0x10000060",
        .flash = {{.start = 0,
                   .size = 1u << 20,
                   .groups = {{4u << 10, 256}},
                   .group_count = 1,
                   .write_size = 4,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x10000060u,
        .uid_length = 8,
        .protect_levels = 1,
        .timing = {.erase_us_per_kib = 22000,
                   .program_us_per_kib = 10000,
                   .link_kib_per_s = 800,
                   .connect_ms = 20},
    },
    {
        .name = "LM3S6965",
        .description = "256 KiB flash at 0x0 in 1 KiB pages; no UID register: 8 bytes at "
                       "0x2000FF00 placed there by the test bench (QEMU lm3s6965evb)",
        .flash = {{.start = 0,
                   .size = 256u << 10,
                   .groups = {{1u << 10, 256}},
                   .group_count = 1,
                   .write_size = 4,
                   .erased_value = 0xFF}},
        .flash_count = 1,
        .uid_address = 0x2000FF00u,
        .uid_length = 8,
        .protect_levels = 0,
        .timing =
            {.erase_us_per_kib = 0, .program_us_per_kib = 0, .link_kib_per_s = 0, .connect_ms = 0},
    },
};

const struct mf_profile *mf_profile_find(const char *name)
{
    for (size_t i = 0; i < sizeof mf_profiles / sizeof mf_profiles[0]; i++) {
        if (mf_ini_name_is(name, mf_profiles[i].name))
            return &mf_profiles[i];
    }
    return NULL;
}

const struct mf_profile *mf_profile_at(size_t i)
{
    return i < sizeof mf_profiles / sizeof mf_profiles[0] ? &mf_profiles[i] : NULL;
}

const struct mf_flash_region *mf_profile_region(const struct mf_profile *profile, uint64_t address)
{
    for (unsigned i = 0; i < profile->flash_count; i++) {
        const struct mf_flash_region *r = &profile->flash[i];
        if (address >= r->start && address - r->start < r->size)
            return r;
    }
    return NULL;
}

uint32_t mf_region_sector_index(const struct mf_flash_region *region, uint64_t address,
                                uint64_t *start, uint32_t *size)
{
    assert(address >= region->start && address - region->start < region->size);
    uint64_t at = region->start;
    uint32_t index = 0;
    for (unsigned g = 0; g < region->group_count; g++) {
        const struct mf_sector_group *grp = &region->groups[g];
        uint64_t span = (uint64_t)grp->size * grp->count;
        if (address < at + span) {
            uint64_t n = (address - at) / grp->size;
            *start = at + n * grp->size;
            *size = grp->size;
            return index + (uint32_t)n;
        }
        at += span;
        index += grp->count;
    }
    assert(0 && "region groups do not cover its size");
    return index;
}

void mf_region_sector(const struct mf_flash_region *region, uint64_t address, uint64_t *start,
                      uint32_t *size)
{
    mf_region_sector_index(region, address, start, size);
}

uint32_t mf_region_sector_count(const struct mf_flash_region *region)
{
    uint32_t n = 0;
    for (unsigned g = 0; g < region->group_count; g++)
        n += region->groups[g].count;
    return n;
}
