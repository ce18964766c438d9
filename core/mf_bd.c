/* Checked block-device entry points and partition slices. */
#include "mf_bd.h"

#include "mf_err.h"

#include <assert.h>

static int mf_bd_check(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    assert(bd && bd->block_size >= 512 && (bd->block_size & (bd->block_size - 1)) == 0);
    if (block > bd->block_count || count > bd->block_count - block)
        return MF_EINVAL;
    return 0;
}

int mf_bd_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    int err = mf_bd_check(bd, block, count);
    if (err)
        return err;
    if (count == 0)
        return 0;
    assert(bd->read && buffer);
    return bd->read(bd, block, buffer, count);
}

int mf_bd_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    int err = mf_bd_check(bd, block, count);
    if (err)
        return err;
    if (count == 0)
        return 0;
    assert(bd->prog && buffer);
    return bd->prog(bd, block, buffer, count);
}

int mf_bd_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    int err = mf_bd_check(bd, block, count);
    if (err)
        return err;
    if (count == 0)
        return 0;
    assert(bd->erase);
    return bd->erase(bd, block, count);
}

int mf_bd_reserve(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    int err = mf_bd_check(bd, block, count);
    if (err || count == 0 || !bd->reserve)
        return err;
    return bd->reserve(bd, block, count);
}

int mf_bd_sync(const struct mf_bd *bd)
{
    assert(bd && bd->sync);
    return bd->sync(bd);
}

uint64_t mf_bd_size(const struct mf_bd *bd)
{
    return (uint64_t)bd->block_count * bd->block_size;
}

static int mf_bd_slice_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    const struct mf_bd_slice *slice = bd->context;
    return mf_bd_read(slice->parent, slice->first + block, buffer, count);
}

static int mf_bd_slice_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer,
                            size_t count)
{
    const struct mf_bd_slice *slice = bd->context;
    return mf_bd_prog(slice->parent, slice->first + block, buffer, count);
}

static int mf_bd_slice_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    const struct mf_bd_slice *slice = bd->context;
    return mf_bd_erase(slice->parent, slice->first + block, count);
}

static int mf_bd_slice_sync(const struct mf_bd *bd)
{
    const struct mf_bd_slice *slice = bd->context;
    return mf_bd_sync(slice->parent);
}

static int mf_bd_slice_reserve(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    const struct mf_bd_slice *slice = bd->context;
    return mf_bd_reserve(slice->parent, slice->first + block, count);
}

void mf_bd_slice_init(struct mf_bd_slice *slice, const struct mf_bd *parent, mf_block_t first,
                      mf_block_t count)
{
    assert(slice && parent);
    assert(first <= parent->block_count && count <= parent->block_count - first);
    slice->parent = parent;
    slice->first = first;
    slice->bd = (struct mf_bd){
        .context = slice,
        .read = mf_bd_slice_read,
        .prog = mf_bd_slice_prog,
        .erase = mf_bd_slice_erase,
        .sync = mf_bd_slice_sync,
        .reserve = parent->reserve ? mf_bd_slice_reserve : NULL,
        .block_size = parent->block_size,
        .block_count = count,
    };
}
