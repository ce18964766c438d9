/* Fuzz target: hostile first sectors of a storage image. The MBR parser on its own (with the
 * device size taken from the input, up to past 2^32 sectors), then mf_storage_open over a RAM
 * device, info, recovery of an interrupted layout, and a mount and listing of the public area.
 * Properties checked: a table that parses re-encodes and re-parses to the same entries and
 * record; whatever opens as ours and READY after recovery has a public FAT that mounts.
 * Input: 2 bytes (little-endian) choosing the device size, 1 + n % 16384 blocks of 512 bytes;
 * 512 bytes of sector 0; the rest is placed at partition 1's first block when the raw table's
 * first entry points inside the device (so a FAT boot sector and its tables can follow), else
 * right after sector 0. docs/internals/storage.md says how the seed corpus was made. */
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_mbr.h"
#include "mf_rambd.h"
#include "mf_storage.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BS         512u
#define MAX_BLOCKS 16384u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mf_fat volume;

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Parse, and for a table that parses, encode + parse again: the same table must come back. */
static void check_parser(const uint8_t *sector, uint64_t disk_sectors)
{
    struct mf_mbr mbr, again;
    char reason[MF_MBR_REASON_MAX];
    int err = mf_mbr_parse(sector, disk_sectors, &mbr, reason, sizeof reason);
    if (err) {
        if (err != MF_ECORRUPT && err != MF_EVERSION)
            abort();
        if (reason[0] == '\0' || strlen(reason) >= sizeof reason)
            abort(); /* every refusal says why */
        return;
    }
    uint8_t encoded[MF_MBR_SIZE];
    if (mf_mbr_encode(&mbr, disk_sectors, encoded) != 0)
        abort();
    if (mf_mbr_parse(encoded, disk_sectors, &again, NULL, 0) != 0)
        abort();
    if (memcmp(mbr.entries, again.entries, sizeof mbr.entries) != 0 ||
        mbr.disk_signature != again.disk_signature || mbr.record.state != again.record.state ||
        mbr.record.volume_id != again.record.volume_id ||
        strcmp(mbr.record.label, again.record.label) != 0)
        abort();
}

static void walk_root(void)
{
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    if (mf_fat_opendir(&volume, &dir, "/") != 0)
        return;
    for (int i = 0; i < 64 && mf_fat_readdir(&volume, &dir, &st) == 1; i++)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint16_t selector = (uint16_t)(data[0] | data[1] << 8);
    data += 2;
    size -= 2;
    uint8_t sector[MF_MBR_SIZE] = {0};
    size_t head = size < sizeof sector ? size : sizeof sector;
    memcpy(sector, data, head);

    check_parser(sector, 1u + selector % MAX_BLOCKS);
    check_parser(sector, (uint64_t)selector << 20); /* up to past 2^32 sectors */
    check_parser(sector, 0);

    mf_block_t blocks = 1u + selector % MAX_BLOCKS;
    uint8_t *memory = calloc(blocks, BS);
    if (!memory)
        return 0;
    memcpy(memory, sector, sizeof sector);
    size_t rest = size - head;
    if (rest) {
        uint64_t at = rd32(sector + 446 + 8);
        if (at == 0 || at >= blocks)
            at = 1;
        size_t room = (size_t)(blocks - at) * BS;
        memcpy(memory + at * BS, data + head, rest < room ? rest : room);
    }
    struct mf_rambd ram;
    mf_rambd_init(&ram, memory, BS, blocks);

    struct mf_storage st;
    int err = mf_storage_open(&st, &ram.bd);
    if (!err) {
        struct mf_storage_info info;
        if (mf_storage_info(&st, &info) != 0)
            abort(); /* RAM reads do not fail */
        if (info.public_offset + info.public_bytes > mf_bd_size(&ram.bd))
            abort();
        bool recovered = false;
        if (st.interrupted) {
            /* Recovery formats: it may refuse (too small to format), never write outside. */
            recovered = mf_storage_recover(&st) == 0;
        }
        if (mf_fat_mount(&volume, mf_storage_public_area(&st), NULL, NULL) == 0) {
            walk_root();
            mf_fat_unmount(&volume);
        } else if (recovered) {
            abort(); /* a layout we just formatted must mount */
        }
    } else if (st.reason[0] == '\0') {
        abort();
    }
    free(memory);
    return 0;
}
