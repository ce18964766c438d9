/* ELF loader: header, program header table, then the file bytes of each PT_LOAD segment.
 * Every field comes from an untrusted file: offsets and sizes are checked against the file
 * size (overflow-safe) before anything is read through them. */
#include "mf_elf.h"

#include "mf_err.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#define ELF_IDENT_BYTES   16u
#define ELF_CLASS32       1u
#define ELF_CLASS64       2u
#define ELF_DATA_LITTLE   1u
#define ELF_DATA_BIG      2u
#define ELF_VERSION       1u
#define ELF_PT_LOAD       1u
#define ELF_PN_XNUM       0xFFFFu
#define ELF_ADDRESS_LIMIT 0x100000000ull

/* Field offsets and sizes that differ between ELF32 and ELF64. */
struct elf_layout {
    unsigned header_size;
    unsigned entry, phoff, phentsize, phnum, word;          /* in the file header */
    unsigned ph_size, p_offset, p_paddr, p_filesz, p_memsz; /* in a program header */
};

static const struct elf_layout elf32_layout = {52, 24, 28, 42, 44, 4, 32, 4, 12, 16, 20};
static const struct elf_layout elf64_layout = {64, 24, 32, 54, 56, 8, 56, 8, 24, 32, 40};

static uint64_t elf_get(const uint8_t *p, unsigned bytes, bool big)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v |= (uint64_t)p[big ? i : bytes - 1 - i] << (8 * (bytes - 1 - i));
    return v;
}

static int elf_read(mf_image_read_fn read, void *context, uint64_t offset, void *buffer,
                    size_t length, struct mf_image_error *err, const char *what)
{
    int rc = read(context, offset, buffer, length);
    if (rc)
        mf_image_error_offset(err, offset, "cannot read %s: %s", what, mf_strerror(rc));
    return rc;
}

static int elf_segment(mf_image_read_fn read, void *context, const struct mf_image_sink *sink,
                       unsigned index, uint64_t offset, uint64_t address, uint64_t length,
                       struct mf_image_error *err)
{
    uint8_t buffer[MF_ELF_CHUNK];
    for (uint64_t done = 0; done < length;) {
        size_t n = length - done < sizeof buffer ? (size_t)(length - done) : sizeof buffer;
        int rc = read(context, offset + done, buffer, n);
        if (rc) {
            mf_image_error_offset(err, offset + done, "cannot read segment %u: %s", index,
                                  mf_strerror(rc));
            return rc;
        }
        rc = sink->data(sink->context, address + done, buffer, n, offset + done);
        if (rc)
            return mf_image_error_sink(err, 0, offset + done, rc);
        done += n;
    }
    return 0;
}

int mf_elf_load(mf_image_read_fn read, void *context, uint64_t size,
                const struct mf_image_sink *sink, struct mf_image_error *err)
{
    assert(read && sink && sink->data);
    mf_image_error_clear(err);
    uint8_t header[64];
    if (size < ELF_IDENT_BYTES) {
        mf_image_error_offset(err, size, "file ends inside the ELF identification (%llu bytes)",
                              (unsigned long long)size);
        return MF_EFORMAT;
    }
    int rc = elf_read(read, context, 0, header, ELF_IDENT_BYTES, err, "the ELF header");
    if (rc)
        return rc;
    if (memcmp(header, "\177ELF", 4) != 0) {
        mf_image_error_offset(err, 0, "not an ELF file (bad magic)");
        return MF_EFORMAT;
    }
    if (header[4] != ELF_CLASS32 && header[4] != ELF_CLASS64) {
        mf_image_error_offset(err, 4, "unknown ELF class %u (1: 32-bit, 2: 64-bit)",
                              (unsigned)header[4]);
        return MF_EFORMAT;
    }
    if (header[5] != ELF_DATA_LITTLE && header[5] != ELF_DATA_BIG) {
        mf_image_error_offset(err, 5, "unknown ELF data encoding %u (1: little, 2: big endian)",
                              (unsigned)header[5]);
        return MF_EFORMAT;
    }
    if (header[6] != ELF_VERSION) {
        mf_image_error_offset(err, 6, "unsupported ELF version %u", (unsigned)header[6]);
        return MF_EFORMAT;
    }
    bool is64 = header[4] == ELF_CLASS64;
    bool big = header[5] == ELF_DATA_BIG;
    const struct elf_layout *l = is64 ? &elf64_layout : &elf32_layout;
    if (size < l->header_size) {
        mf_image_error_offset(err, size, "file ends inside the ELF%s header (%u bytes needed)",
                              is64 ? "64" : "32", l->header_size);
        return MF_EFORMAT;
    }
    rc = elf_read(read, context, ELF_IDENT_BYTES, header + ELF_IDENT_BYTES,
                  l->header_size - ELF_IDENT_BYTES, err, "the ELF header");
    if (rc)
        return rc;

    uint64_t entry = elf_get(header + l->entry, l->word, big);
    uint64_t phoff = elf_get(header + l->phoff, l->word, big);
    unsigned phentsize = (unsigned)elf_get(header + l->phentsize, 2, big);
    unsigned phnum = (unsigned)elf_get(header + l->phnum, 2, big);
    if (phnum == 0) {
        mf_image_error_offset(err, l->phnum,
                              "no program headers (e_phnum is 0): nothing to load (an object "
                              "file needs linking first)");
        return MF_EFORMAT;
    }
    if (phnum == ELF_PN_XNUM) {
        mf_image_error_offset(err, l->phnum,
                              "e_phnum is PN_XNUM (65535 or more program headers): not supported");
        return MF_EFORMAT;
    }
    if (phentsize < l->ph_size) {
        mf_image_error_offset(err, l->phentsize,
                              "program header size %u too small (at least %u expected)", phentsize,
                              l->ph_size);
        return MF_EFORMAT;
    }
    uint64_t table = (uint64_t)phnum * phentsize;
    if (phoff > size || table > size - phoff) {
        mf_image_error_offset(err, l->phoff,
                              "program header table (%u entries of %u bytes at 0x%llX) extends "
                              "past the end of the file (%llu bytes)",
                              phnum, phentsize, (unsigned long long)phoff,
                              (unsigned long long)size);
        return MF_EFORMAT;
    }

    uint64_t limit = is64 ? UINT64_MAX : ELF_ADDRESS_LIMIT;
    for (unsigned i = 0; i < phnum; i++) {
        uint64_t where = phoff + (uint64_t)i * phentsize;
        uint8_t ph[56];
        rc = elf_read(read, context, where, ph, l->ph_size, err, "a program header");
        if (rc)
            return rc;
        uint32_t type = (uint32_t)elf_get(ph, 4, big);
        uint64_t offset = elf_get(ph + l->p_offset, l->word, big);
        uint64_t paddr = elf_get(ph + l->p_paddr, l->word, big);
        uint64_t filesz = elf_get(ph + l->p_filesz, l->word, big);
        uint64_t memsz = elf_get(ph + l->p_memsz, l->word, big);
        if (type != ELF_PT_LOAD || filesz == 0)
            continue;
        if (filesz > memsz) {
            mf_image_error_offset(err, where,
                                  "segment %u: p_filesz 0x%llX is larger than p_memsz 0x%llX", i,
                                  (unsigned long long)filesz, (unsigned long long)memsz);
            return MF_EFORMAT;
        }
        if (offset > size || filesz > size - offset) {
            mf_image_error_offset(err, where,
                                  "segment %u: 0x%llX file bytes at offset 0x%llX extend past "
                                  "the end of the file (%llu bytes)",
                                  i, (unsigned long long)filesz, (unsigned long long)offset,
                                  (unsigned long long)size);
            return MF_EFORMAT;
        }
        if (paddr > limit - filesz) {
            mf_image_error_offset(err, where,
                                  "segment %u: 0x%llX bytes at physical address 0x%llX extend "
                                  "past %s",
                                  i, (unsigned long long)filesz, (unsigned long long)paddr,
                                  is64 ? "the 64-bit address space" : "4 GiB");
            return MF_EFORMAT;
        }
        rc = elf_segment(read, context, sink, i, offset, paddr, filesz, err);
        if (rc)
            return rc;
    }
    if (sink->start) {
        rc = sink->start(sink->context, entry);
        if (rc)
            return mf_image_error_sink(err, 0, l->entry, rc);
    }
    return 0;
}
