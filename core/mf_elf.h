/* ELF loader: ELF32 and ELF64, little and big endian. Loads what OpenOCD and pyOCD program:
 * the file bytes of every PT_LOAD segment at its physical address (p_paddr). Bytes past
 * p_filesz (.bss) are not programmed; segments with p_filesz 0 contribute nothing. */
#ifndef MF_ELF_H
#define MF_ELF_H

#include "mf_image.h"

#include <stdint.h>

#define MF_ELF_CHUNK 2048u /* bytes per sink call (stack buffer) */

/* Reads the headers, then each loadable segment, through `read` (random access to a file of
 * `size` bytes) and hands the segment bytes to `sink` in chunks of at most MF_ELF_CHUNK bytes
 * (`where` is the file offset), then e_entry to sink->start. Checks everything before use: a
 * truncated file, a table or segment past the end of the file, an unknown class, encoding or
 * version, p_filesz > p_memsz, an address range past 2^64 - 1 (ELF64) or 4 GiB (ELF32), no
 * program headers, PN_XNUM: MF_EFORMAT with the byte offset of the offending field or header.
 * Segment overlaps are left to the image. No allocation. `err` may be NULL. */
int mf_elf_load(mf_image_read_fn read, void *context, uint64_t size,
                const struct mf_image_sink *sink, struct mf_image_error *err);

#endif
