/* The built-in device profiles are consistent (every region's sectors add up to its size, the
 * write size divides every sector, regions do not overlap, names are unique ignoring case and
 * found by mf_profile_find), and the real parts' maps are the reference manuals'. */
#include "mf_profile.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

static void check_region(const struct mf_profile *p, const struct mf_flash_region *r)
{
    assert_true(r->group_count >= 1 && r->group_count <= MF_PROFILE_SECTOR_GROUPS);
    assert_true(r->write_size >= 1 && (r->write_size & (r->write_size - 1)) == 0);
    uint64_t sum = 0;
    uint32_t sectors = 0;
    for (unsigned g = 0; g < r->group_count; g++) {
        assert_true(r->groups[g].size > 0 && r->groups[g].count > 0);
        assert_int_equal(r->groups[g].size % r->write_size, 0);
        sum += (uint64_t)r->groups[g].size * r->groups[g].count;
        sectors += r->groups[g].count;
    }
    if (sum != r->size)
        fail_msg("%s: sectors add up to %llu, the region is %llu", p->name, (unsigned long long)sum,
                 (unsigned long long)r->size);
    assert_int_equal(mf_region_sector_count(r), sectors);
    /* Walking the sectors by mf_region_sector covers the region without gaps, and
     * mf_region_sector_index numbers them in order. */
    uint64_t at = r->start;
    for (uint32_t n = 0; n < sectors; n++) {
        uint64_t start, last_start;
        uint32_t size, last_size;
        mf_region_sector(r, at + 1, &start, &size);
        assert_int_equal(start, at);
        assert_int_equal(mf_region_sector_index(r, at + size - 1, &last_start, &last_size), n);
        assert_int_equal(last_start, at);
        assert_int_equal(last_size, size);
        assert_true(mf_profile_region(p, at) == r);
        at += size;
    }
    assert_int_equal(at, r->start + r->size);
}

static void test_every_profile_is_consistent(void **state)
{
    (void)state;
    size_t count = 0;
    for (const struct mf_profile *p; (p = mf_profile_at(count)) != NULL; count++) {
        assert_non_null(p->name);
        assert_true(mf_profile_find(p->name) == p);
        char lower[64];
        size_t n = strlen(p->name);
        assert_true(n < sizeof lower);
        for (size_t i = 0; i <= n; i++)
            lower[i] =
                (char)(p->name[i] >= 'A' && p->name[i] <= 'Z' ? p->name[i] + 32 : p->name[i]);
        assert_true(mf_profile_find(lower) == p);
        for (size_t k = 0; k < count; k++)
            assert_true(strcasecmp(mf_profile_at(k)->name, p->name) != 0);
        assert_true(p->flash_count >= 1 && p->flash_count <= MF_PROFILE_FLASH_REGIONS);
        for (unsigned i = 0; i < p->flash_count; i++) {
            check_region(p, &p->flash[i]);
            for (unsigned j = 0; j < i; j++) {
                const struct mf_flash_region *a = &p->flash[i], *b = &p->flash[j];
                assert_true(a->start >= b->start + b->size || b->start >= a->start + a->size);
            }
        }
        assert_true(p->uid_length <= MF_PROFILE_UID_MAX);
    }
    assert_true(count >= 12);
    assert_null(mf_profile_find("STM32F103"));
}

/* A few of the real parts, by their manuals: the sector holding an address, the UID. */
static void test_real_parts(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        uint64_t address, sector_start;
        uint32_t sector_size, write_size;
        uint64_t uid_address;
        uint32_t uid_length, size_kib;
    } parts[] = {
        {"STM32F103x8", 0x0800FC10, 0x0800FC00, 1024, 2, 0x1FFFF7E8, 12, 64},
        {"STM32F103xB", 0x0801FFFF, 0x0801FC00, 1024, 2, 0x1FFFF7E8, 12, 128},
        {"STM32F103xC", 0x08000900, 0x08000800, 2048, 2, 0x1FFFF7E8, 12, 256},
        {"STM32F103xE", 0x0807F800, 0x0807F800, 2048, 2, 0x1FFFF7E8, 12, 512},
        {"STM32F401xE", 0x08010000, 0x08010000, 65536, 4, 0x1FFF7A10, 12, 512},
        {"STM32F401xE", 0x0807FFFF, 0x08060000, 131072, 4, 0x1FFF7A10, 12, 512},
        {"STM32F407xG", 0x0800C000, 0x0800C000, 16384, 4, 0x1FFF7A10, 12, 1024},
        {"STM32F407xG", 0x080E0001, 0x080E0000, 131072, 4, 0x1FFF7A10, 12, 1024},
        {"nRF52832_xxAA", 0x7F123, 0x7F000, 4096, 4, 0x10000060, 8, 512},
        {"nRF52840_xxAA", 0xFFFFF, 0xFF000, 4096, 4, 0x10000060, 8, 1024},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        const struct mf_profile *p = mf_profile_find(parts[i].name);
        assert_non_null(p);
        const struct mf_flash_region *r = mf_profile_region(p, parts[i].address);
        assert_non_null(r);
        uint64_t start;
        uint32_t size;
        mf_region_sector(r, parts[i].address, &start, &size);
        if (start != parts[i].sector_start || size != parts[i].sector_size)
            fail_msg("%s at 0x%llx: sector 0x%llx+%u", parts[i].name,
                     (unsigned long long)parts[i].address, (unsigned long long)start, size);
        assert_int_equal(r->write_size, parts[i].write_size);
        assert_int_equal(p->uid_address, parts[i].uid_address);
        assert_int_equal(p->uid_length, parts[i].uid_length);
        assert_int_equal(r->size, (uint64_t)parts[i].size_kib << 10);
        assert_null(mf_profile_region(p, r->start + r->size));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_profile_is_consistent),
        cmocka_unit_test(test_real_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
