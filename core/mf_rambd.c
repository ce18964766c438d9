/* RAM block device over caller-owned memory (see mf_rambd.h). */
#include "mf_rambd.h"

#include "mf_err.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

static bool mf_rambd_fits(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    return block <= bd->block_count && count <= bd->block_count - block;
}

static uint8_t *mf_rambd_at(const struct mf_bd *bd, mf_block_t block)
{
    const struct mf_rambd *ram = bd->context;
    return ram->memory + (size_t)block * bd->block_size;
}

static int mf_rambd_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    if (!mf_rambd_fits(bd, block, count))
        return MF_EINVAL;
    if (count)
        memcpy(buffer, mf_rambd_at(bd, block), count * bd->block_size);
    return 0;
}

static int mf_rambd_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    if (!mf_rambd_fits(bd, block, count))
        return MF_EINVAL;
    if (count)
        memmove(mf_rambd_at(bd, block), buffer, count * bd->block_size);
    return 0;
}

static int mf_rambd_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    if (!mf_rambd_fits(bd, block, count))
        return MF_EINVAL;
    if (count)
        memset(mf_rambd_at(bd, block), 0, count * bd->block_size);
    return 0;
}

static int mf_rambd_sync(const struct mf_bd *bd)
{
    (void)bd;
    return 0;
}

void mf_rambd_init(struct mf_rambd *ram, void *memory, uint32_t block_size, mf_block_t block_count)
{
    assert(ram && memory);
    assert(block_size >= 512 && (block_size & (block_size - 1)) == 0);
    assert(block_count > 0 && block_count <= SIZE_MAX / block_size);
    ram->memory = memory;
    ram->bd = (struct mf_bd){
        .context = ram,
        .read = mf_rambd_read,
        .prog = mf_rambd_prog,
        .erase = mf_rambd_erase,
        .sync = mf_rambd_sync,
        .block_size = block_size,
        .block_count = block_count,
    };
}

size_t mf_rambd_size(const struct mf_rambd *ram)
{
    return (size_t)ram->bd.block_count * ram->bd.block_size;
}

int mf_rambd_load(struct mf_rambd *ram, const void *data, size_t size)
{
    size_t total = mf_rambd_size(ram);
    if (size > total)
        return MF_EINVAL;
    if (size)
        memcpy(ram->memory, data, size);
    memset(ram->memory + size, 0, total - size);
    return 0;
}

int mf_rambd_save(const struct mf_rambd *ram, void *data, size_t size)
{
    if (size > mf_rambd_size(ram))
        return MF_EINVAL;
    if (size)
        memcpy(data, ram->memory, size);
    return 0;
}
