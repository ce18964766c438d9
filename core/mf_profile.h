/* Device profiles: what a job needs to know about the part it programs (flash regions and sector
 * maps, where the unique ID is, readout protection), independent of how the programmer reaches it.
 * A job names its profile; the built-in table mirrors a few real parts. */
#ifndef MF_PROFILE_H
#define MF_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_PROFILE_SECTOR_GROUPS 4u
#define MF_PROFILE_FLASH_REGIONS 2u
#define MF_PROFILE_UID_MAX       16u

/* A run of equal sectors. */
struct mf_sector_group {
    uint32_t size;  /* bytes per sector */
    uint32_t count; /* sectors */
};

/* One flash region: [start, start + size) split into sectors, groups in address order. */
struct mf_flash_region {
    uint64_t start;
    uint64_t size; /* the sum of the groups */
    struct mf_sector_group groups[MF_PROFILE_SECTOR_GROUPS];
    unsigned group_count;
    uint32_t write_size;  /* programming granularity in bytes (a power of two) */
    uint8_t erased_value; /* what an erased byte reads as */
};

/* Simulated timing of the part (used by the `sim` back end, scaled by its speed setting). */
struct mf_profile_timing {
    uint32_t erase_us_per_kib;   /* sector erase time per KiB of sector */
    uint32_t program_us_per_kib; /* programming time per KiB */
    uint32_t link_kib_per_s;     /* debug link throughput */
    uint32_t connect_ms;         /* attach and halt */
};

struct mf_profile {
    const char *name; /* as written in job.ini: device = NAME (case-insensitive) */
    const char *description;
    struct mf_flash_region flash[MF_PROFILE_FLASH_REGIONS];
    unsigned flash_count;
    uint64_t uid_address;    /* where the unique ID is read */
    uint32_t uid_length;     /* bytes, at most MF_PROFILE_UID_MAX */
    unsigned protect_levels; /* highest readout-protection level (0 = none) */
    struct mf_profile_timing timing;
};

/* The built-in profile called `name` (case-insensitive), or NULL. */
const struct mf_profile *mf_profile_find(const char *name);

/* The i-th built-in profile, or NULL past the end (for listings). */
const struct mf_profile *mf_profile_at(size_t i);

/* The region holding `address`, or NULL. */
const struct mf_flash_region *mf_profile_region(const struct mf_profile *profile, uint64_t address);

/* The sector of `region` that holds `address`: its start and size. `address` must be inside. */
void mf_region_sector(const struct mf_flash_region *region, uint64_t address, uint64_t *start,
                      uint32_t *size);

/* mf_region_sector, also returning that sector's index in the region (0 for its first sector). */
uint32_t mf_region_sector_index(const struct mf_flash_region *region, uint64_t address,
                                uint64_t *start, uint32_t *size);

/* Number of sectors of a region. */
uint32_t mf_region_sector_count(const struct mf_flash_region *region);

#endif
