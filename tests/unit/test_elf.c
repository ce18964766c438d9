/* ELF loader on ELF files built here byte by byte (32/64-bit, little/big endian): what is loaded
 * (PT_LOAD file bytes at p_paddr, never .bss, nothing from other segment types), and every
 * error with its offset: truncation at every length, bad identification, absurd program header
 * tables, segments past the end of the file or the address space, reader and sink errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mf_elf.h"
#include "mf_err.h"
#include "mf_image.h"

/* Capture of sink calls as text. */
struct capture {
    char text[8192];
    size_t length;
    int fail_at;
    int calls;
};

static void cap_printf(struct capture *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void cap_printf(struct capture *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->text + c->length, sizeof c->text - c->length, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof c->text - c->length);
    c->length += (size_t)n;
}

static int cap_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                    uint64_t where)
{
    struct capture *c = context;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return MF_ENOMEM;
    /* Only the first and last byte: enough to see the chunking and contents. */
    cap_printf(c, "D %llX+%zu @%llX %02X..%02X\n", (unsigned long long)address, length,
               (unsigned long long)where, bytes[0], bytes[length - 1]);
    return 0;
}

static int cap_start(void *context, uint64_t address)
{
    struct capture *c = context;
    cap_printf(c, "S %llX\n", (unsigned long long)address);
    return 0;
}

struct mem_file {
    const uint8_t *data;
    uint64_t size;
    uint64_t fail_from; /* reads touching this offset or later fail; UINT64_MAX: none */
};

static int mem_read(void *context, uint64_t offset, void *buffer, size_t length)
{
    const struct mem_file *f = context;
    if (offset > f->size || length > f->size - offset)
        return MF_EIO;
    if (offset + length > f->fail_from)
        return MF_EIO;
    memcpy(buffer, f->data + offset, length);
    return 0;
}

/* Builder. */
struct seg {
    uint32_t type;
    uint64_t offset, vaddr, paddr, filesz, memsz;
};

struct elf {
    uint8_t data[16384];
    size_t size;
    bool is64, big;
};

static void put(struct elf *e, size_t offset, uint64_t value, unsigned bytes)
{
    assert_true(offset + bytes <= sizeof e->data);
    for (unsigned i = 0; i < bytes; i++)
        e->data[offset + (e->big ? bytes - 1 - i : i)] = (uint8_t)(value >> (8 * i));
}

/* Header and program headers (right after the header), then payloads written by the caller. */
static void build(struct elf *e, bool is64, bool big, const struct seg *segs, unsigned n,
                  uint64_t entry)
{
    memset(e, 0, sizeof *e);
    e->is64 = is64;
    e->big = big;
    memcpy(e->data, "\177ELF", 4);
    e->data[4] = is64 ? 2 : 1;
    e->data[5] = big ? 2 : 1;
    e->data[6] = 1;
    unsigned w = is64 ? 8 : 4, ehsize = is64 ? 64 : 52, phsize = is64 ? 56 : 32;
    put(e, 16, 2, 2);  /* ET_EXEC */
    put(e, 18, 40, 2); /* EM_ARM */
    put(e, 20, 1, 4);
    put(e, 24, entry, w);
    put(e, 24 + w, ehsize, w); /* e_phoff */
    put(e, is64 ? 52 : 40, ehsize, 2);
    put(e, is64 ? 54 : 42, phsize, 2);
    put(e, is64 ? 56 : 44, n, 2);
    for (unsigned i = 0; i < n; i++) {
        size_t p = ehsize + i * phsize;
        put(e, p, segs[i].type, 4);
        if (is64) {
            put(e, p + 8, segs[i].offset, 8);
            put(e, p + 16, segs[i].vaddr, 8);
            put(e, p + 24, segs[i].paddr, 8);
            put(e, p + 32, segs[i].filesz, 8);
            put(e, p + 40, segs[i].memsz, 8);
        } else {
            put(e, p + 4, segs[i].offset, 4);
            put(e, p + 8, segs[i].vaddr, 4);
            put(e, p + 12, segs[i].paddr, 4);
            put(e, p + 16, segs[i].filesz, 4);
            put(e, p + 20, segs[i].memsz, 4);
        }
        uint64_t end = segs[i].offset + segs[i].filesz;
        if (segs[i].filesz && end <= sizeof e->data) {
            for (uint64_t k = 0; k < segs[i].filesz; k++)
                e->data[segs[i].offset + k] = (uint8_t)(0x10 * (i + 1) + k);
            if (end > e->size)
                e->size = (size_t)end;
        }
    }
    if (e->size < ehsize + n * phsize)
        e->size = ehsize + n * phsize;
}

static int load(const struct elf *e, uint64_t size, uint64_t fail_from, int fail_at,
                struct capture *c, struct mf_image_error *err)
{
    memset(c, 0, sizeof *c);
    c->fail_at = fail_at;
    struct mem_file f = {e->data, size, fail_from};
    struct mf_image_sink sink = {cap_data, cap_start, c};
    return mf_elf_load(mem_read, &f, size, &sink, err);
}

/* A firmware-shaped file: text, initialised data stored after it (p_paddr != p_vaddr), a .bss
 * (p_filesz 0), a note, and a data segment whose memsz is larger than its filesz. */
static const struct seg firmware[] = {
    {1, 0x200, 0x08000000, 0x08000000, 0x40, 0x40},
    {1, 0x240, 0x20000000, 0x08000040, 0x10, 0x30},
    {1, 0x250, 0x20000030, 0x20000030, 0, 0x100},
    {4, 0x250, 0, 0, 0x20, 0x20},
};

static void test_loads_pt_load_file_bytes_at_paddr(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        struct elf e;
        build(&e, variant & 1, variant & 2, firmware, 4, 0x08000101);
        struct capture c;
        struct mf_image_error err;
        int rc = load(&e, e.size, UINT64_MAX, 0, &c, &err);
        assert_int_equal(rc, 0);
        assert_string_equal(c.text, "D 8000000+64 @200 10..4F\n"
                                    "D 8000040+16 @240 20..2F\n"
                                    "S 8000101\n");
    }
}

static void test_large_segment_in_chunks(void **state)
{
    (void)state;
    struct seg big[] = {{1, 0x100, 0, 0xFFFFFFFFull - 6000 + 1, 6000, 6000}};
    struct elf e;
    build(&e, false, false, big, 1, 0);
    struct capture c;
    assert_int_equal(load(&e, e.size, UINT64_MAX, 0, &c, NULL), 0);
    /* Up to the last byte below 4 GiB, in chunks of MF_ELF_CHUNK (2048). */
    assert_string_equal(c.text, "D FFFFE890+2048 @100 10..0F\n"
                                "D FFFFF090+2048 @900 10..0F\n"
                                "D FFFFF890+1904 @1100 10..7F\n"
                                "S 0\n");
    /* ELF64 above 4 GiB. */
    struct seg high[] = {{1, 0x100, 0, 0xFFFFFFFF00000000ull, 4, 4}};
    build(&e, true, true, high, 1, 0x1122334455667788ull);
    assert_int_equal(load(&e, e.size, UINT64_MAX, 0, &c, NULL), 0);
    assert_string_equal(c.text, "D FFFFFFFF00000000+4 @100 10..13\nS 1122334455667788\n");
}

static void expect_error(const struct elf *e, uint64_t size, int code, const char *message)
{
    struct capture c;
    struct mf_image_error err;
    int rc = load(e, size, UINT64_MAX, 0, &c, &err);
    if (rc != code || strcmp(err.text, message) != 0) {
        fprintf(stderr, "want %d \"%s\"\ngot  %d \"%s\"\n", code, message, rc, err.text);
        fail();
    }
    assert_int_equal(err.line, 0);
}

static void test_truncated_at_every_length(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        struct elf e;
        build(&e, variant & 1, variant & 2, firmware, 4, 0);
        /* Up to the end of the last PT_LOAD's bytes (the note after it is not loaded). */
        for (uint64_t size = 0; size < 0x250; size++) {
            struct capture c;
            struct mf_image_error err;
            int rc = load(&e, size, UINT64_MAX, 0, &c, &err);
            assert_int_equal(rc, MF_EFORMAT);
            assert_true(err.text[0] != '\0');
        }
    }
    struct elf e;
    build(&e, false, false, firmware, 4, 0);
    expect_error(&e, 10, MF_EFORMAT,
                 "offset 0xA: file ends inside the ELF identification (10 "
                 "bytes)");
    expect_error(&e, 40, MF_EFORMAT,
                 "offset 0x28: file ends inside the ELF32 header (52 bytes "
                 "needed)");
    expect_error(&e, 100, MF_EFORMAT,
                 "offset 0x1C: program header table (4 entries of 32 bytes at 0x34) extends past "
                 "the end of the file (100 bytes)");
    expect_error(&e, 0x220, MF_EFORMAT,
                 "offset 0x34: segment 0: 0x40 file bytes at offset 0x200 extend past the end of "
                 "the file (544 bytes)");
    build(&e, true, false, firmware, 4, 0);
    expect_error(&e, 63, MF_EFORMAT,
                 "offset 0x3F: file ends inside the ELF64 header (64 bytes "
                 "needed)");
}

static void test_bad_identification(void **state)
{
    (void)state;
    struct elf e;
    build(&e, false, false, firmware, 4, 0);
    e.data[0] = 0x7E;
    expect_error(&e, e.size, MF_EFORMAT, "offset 0x0: not an ELF file (bad magic)");
    build(&e, false, false, firmware, 4, 0);
    e.data[4] = 3;
    expect_error(&e, e.size, MF_EFORMAT, "offset 0x4: unknown ELF class 3 (1: 32-bit, 2: 64-bit)");
    build(&e, false, false, firmware, 4, 0);
    e.data[5] = 0;
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x5: unknown ELF data encoding 0 (1: little, 2: big endian)");
    build(&e, false, false, firmware, 4, 0);
    e.data[6] = 2;
    expect_error(&e, e.size, MF_EFORMAT, "offset 0x6: unsupported ELF version 2");
}

static void test_program_header_table(void **state)
{
    (void)state;
    struct elf e;
    build(&e, false, false, firmware, 0, 0);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x2C: no program headers (e_phnum is 0): nothing to load (an object "
                 "file needs linking first)");
    build(&e, true, false, firmware, 4, 0);
    put(&e, 56, 0xFFFF, 2);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x38: e_phnum is PN_XNUM (65535 or more program headers): not supported");
    build(&e, true, true, firmware, 4, 0);
    put(&e, 54, 32, 2);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x36: program header size 32 too small (at least 56 expected)");
    /* An absurd count in a small file. */
    build(&e, false, true, firmware, 4, 0);
    put(&e, 44, 60000, 2);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x1C: program header table (60000 entries of 32 bytes at 0x34) extends "
                 "past the end of the file (624 bytes)");
    /* A table offset near 2^64 must not wrap around. */
    build(&e, true, false, firmware, 4, 0);
    put(&e, 32, UINT64_MAX - 8, 8);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x20: program header table (4 entries of 56 bytes at 0xFFFFFFFFFFFFFFF7) "
                 "extends past the end of the file (624 bytes)");
    /* Larger entries than the structure are fine (the rest is skipped). */
    struct seg one[] = {{1, 0x200, 0x1000, 0x1000, 4, 4}};
    build(&e, false, false, one, 1, 0);
    put(&e, 42, 48, 2);
    struct capture c;
    assert_int_equal(load(&e, e.size, UINT64_MAX, 0, &c, NULL), 0);
    assert_string_equal(c.text, "D 1000+4 @200 10..13\nS 0\n");
}

static void test_bad_segments(void **state)
{
    (void)state;
    struct elf e;
    struct seg past_end[] = {{1, 0x200, 0, 0x1000, 0x10, 0x10}};
    build(&e, false, false, past_end, 1, 0);
    put(&e, 52 + 4, 0x7FFFFFF0, 4);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x34: segment 0: 0x10 file bytes at offset 0x7FFFFFF0 extend past the end "
                 "of the file (528 bytes)");
    struct seg wrap[] = {{1, 0x200, 0, 0x1000, 0x10, 0x10}};
    build(&e, true, false, wrap, 1, 0);
    put(&e, 64 + 8, UINT64_MAX - 4, 8);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x40: segment 0: 0x10 file bytes at offset 0xFFFFFFFFFFFFFFFB extend past "
                 "the end of the file (528 bytes)");
    struct seg mem[] = {{1, 0x200, 0, 0x1000, 0x10, 0x8}};
    build(&e, false, false, mem, 1, 0);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x34: segment 0: p_filesz 0x10 is larger than p_memsz 0x8");
    struct seg top32[] = {{1, 0x200, 0, 0xFFFFFFF8u, 0x10, 0x10}};
    build(&e, false, true, top32, 1, 0);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x34: segment 0: 0x10 bytes at physical address 0xFFFFFFF8 extend past "
                 "4 GiB");
    struct seg top64[] = {{4, 0, 0, 0, 0, 0}, {1, 0x200, 0, UINT64_MAX - 8, 0x10, 0x10}};
    build(&e, true, false, top64, 2, 0);
    expect_error(&e, e.size, MF_EFORMAT,
                 "offset 0x78: segment 1: 0x10 bytes at physical address 0xFFFFFFFFFFFFFFF7 "
                 "extend past the 64-bit address space");
    /* p_filesz 0 and non-LOAD segments contribute nothing, even when their fields are absurd. */
    struct seg nothing[] = {{1, UINT32_MAX, 0, UINT32_MAX, 0, UINT32_MAX},
                            {6, UINT32_MAX, 0, UINT32_MAX, UINT32_MAX, 0}};
    build(&e, false, false, nothing, 2, 7);
    struct capture c;
    assert_int_equal(load(&e, e.size, UINT64_MAX, 0, &c, NULL), 0);
    assert_string_equal(c.text, "S 7\n");
}

static void test_reader_and_sink_errors(void **state)
{
    (void)state;
    struct elf e;
    struct seg big[] = {{1, 0x100, 0, 0x1000, 5000, 5000}};
    build(&e, false, false, big, 1, 0);
    struct capture c;
    struct mf_image_error err;
    assert_int_equal(load(&e, e.size, 0x100 + 3000, 0, &c, &err), MF_EIO);
    assert_string_equal(err.text, "offset 0x900: cannot read segment 0: input/output error");
    assert_int_equal(err.offset, 0x900);
    assert_string_equal(c.text, "D 1000+2048 @100 10..0F\n");
    assert_int_equal(load(&e, e.size, 10, 0, &c, &err), MF_EIO);
    assert_string_equal(err.text, "offset 0x0: cannot read the ELF header: input/output error");
    assert_int_equal(load(&e, e.size, 60, 0, &c, &err), MF_EIO);
    assert_string_equal(err.text, "offset 0x34: cannot read a program header: input/output "
                                  "error");
    assert_int_equal(load(&e, e.size, UINT64_MAX, 2, &c, &err), MF_ENOMEM);
    assert_string_equal(err.text, "offset 0x900: out of memory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_pt_load_file_bytes_at_paddr),
        cmocka_unit_test(test_large_segment_in_chunks),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_bad_identification),
        cmocka_unit_test(test_program_header_table),
        cmocka_unit_test(test_bad_segments),
        cmocka_unit_test(test_reader_and_sink_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
