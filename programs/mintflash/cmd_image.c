/* `mintflash image`: inspect and convert firmware images (Intel HEX, S-record, ELF, raw binary)
 * with the same parsers and writers the programmer uses when it loads a job.
 * The printed formats are documented in docs/image-formats.md; scripts rely on them. */
#include "cli.h"

#include "mf_err.h"
#include "mf_image.h"
#include "mf_ihex.h"
#include "mf_srec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A raw binary output fills gaps, so a sparse image can be huge; beyond this, refuse. */
#define IMAGE_BIN_OUTPUT_MAX (1ull << 30)

static const char image_usage_text[] =
    "usage: mintflash image info FILE [--format-in FORMAT] [--base ADDR] [--overlap POLICY]\n"
    "       mintflash image convert IN -o OUT --format bin|ihex|srec [--format-in FORMAT]\n"
    "                               [--base ADDR] [--overlap POLICY]\n"
    "\n"
    "Reads Intel HEX, Motorola S-record, ELF (the file bytes of each PT_LOAD segment at its\n"
    "physical address) or raw binary; the input format is detected from the content.\n"
    "\n"
    "  info      print the format, one 'segment START END SIZE' line per run of loaded bytes\n"
    "            (END is the last address), the start address if the file has one, the\n"
    "            number of segments, the loaded size and the CRC-32 of the loaded bytes\n"
    "  convert   write the image as bin (from the lowest address, gaps filled with 0xFF),\n"
    "            ihex or srec\n"
    "\n"
    "options:\n"
    "  --format-in FORMAT  input format: bin, ihex, srec or elf (default: detected)\n"
    "  --base ADDR         address of the first byte of raw binary input (default 0)\n"
    "  --overlap POLICY    where records overlap: error (default), first or last wins\n"
    "  -o, --output OUT    output file of convert ('-' for standard output)\n"
    "  --format FORMAT     output format of convert: bin, ihex or srec\n";

struct image_options {
    const char *input;
    const char *output;
    enum mf_image_format format_in;
    enum mf_image_format format_out;
    bool has_format_out;
    uint64_t base;
    bool has_base;
    enum mf_image_overlap overlap;
};

static int image_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int image_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mintflash: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (try 'mintflash image --help')\n", stderr);
    va_end(ap);
    return 2;
}

static bool image_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

/* Parses argv[2..]; returns 0 or the exit status of a usage error. */
static int image_parse(int argc, char **argv, bool convert, struct image_options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = strcmp(a, "--format-in") == 0 || strcmp(a, "--base") == 0 ||
                           strcmp(a, "--overlap") == 0 ||
                           (convert && (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 ||
                                        strcmp(a, "--format") == 0));
        if (takes_value && !value)
            return image_usage_error("option '%s' needs a value", a);
        if (strcmp(a, "--format-in") == 0) {
            if (mf_image_format_parse(value, &o->format_in) != 0)
                return image_usage_error("unknown input format '%s' (bin, ihex, srec, elf)", value);
        } else if (strcmp(a, "--base") == 0) {
            if (mf_cli_parse_u64(value, &o->base) != 0)
                return image_usage_error("bad address '%s' (decimal, or hex with 0x)", value);
            o->has_base = true;
        } else if (strcmp(a, "--overlap") == 0) {
            if (strcmp(value, "error") == 0)
                o->overlap = MF_IMAGE_OVERLAP_ERROR;
            else if (strcmp(value, "first") == 0)
                o->overlap = MF_IMAGE_OVERLAP_FIRST_WINS;
            else if (strcmp(value, "last") == 0)
                o->overlap = MF_IMAGE_OVERLAP_LAST_WINS;
            else
                return image_usage_error("unknown overlap policy '%s' (error, first, last)", value);
        } else if (convert && (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)) {
            o->output = value;
        } else if (convert && strcmp(a, "--format") == 0) {
            if (mf_image_format_parse(value, &o->format_out) != 0 ||
                o->format_out == MF_IMAGE_FORMAT_ELF || o->format_out == MF_IMAGE_FORMAT_AUTO)
                return image_usage_error("unknown output format '%s' (bin, ihex, srec)", value);
            o->has_format_out = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            return image_usage_error("unknown option '%s'", a);
        } else if (!o->input) {
            o->input = a;
            continue;
        } else {
            return image_usage_error("unexpected argument '%s'", a);
        }
        i++; /* the option's value */
    }
    if (!o->input)
        return image_usage_error("%s", convert ? "missing input file" : "missing file");
    if (convert && !o->output)
        return image_usage_error("%s", "missing output file (-o OUT)");
    if (convert && !o->has_format_out)
        return image_usage_error("%s", "missing output format (--format bin|ihex|srec)");
    return 0;
}

static int image_pread(void *context, uint64_t offset, void *buffer, size_t length)
{
    int fd = *(const int *)context;
    size_t done = 0;
    while (done < length) {
        ssize_t n = pread(fd, (char *)buffer + done, length - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return MF_EIO;
        done += (size_t)n;
    }
    return 0;
}

/* Loads and finishes the image; prints the error and returns 1 on failure. */
static int image_load_file(const struct image_options *o, struct mf_image *image,
                           enum mf_image_format *format)
{
    int fd = open(o->input, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mf_cli_error("%s: %s", o->input, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        mf_cli_error("%s: %s", o->input, strerror(errno));
        close(fd);
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        mf_cli_error("%s: %s", o->input,
                     S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
        close(fd);
        return 1;
    }
    uint64_t size = (uint64_t)st.st_size;
    *format = o->format_in;
    if (*format == MF_IMAGE_FORMAT_AUTO) {
        uint8_t head[MF_IMAGE_DETECT_BYTES];
        size_t n = size < sizeof head ? (size_t)size : sizeof head;
        if (n && image_pread(&fd, 0, head, n) != 0) {
            mf_cli_error("%s: cannot read: %s", o->input, strerror(errno));
            close(fd);
            return 1;
        }
        *format = mf_image_detect(head, n);
    }
    if (o->has_base && *format != MF_IMAGE_FORMAT_BIN) {
        mf_cli_error("%s: --base applies to raw binary input only (this file is %s)", o->input,
                     mf_image_format_title(*format));
        close(fd);
        return 2;
    }
    struct mf_image_config config = {.overlap = o->overlap};
    mf_image_init(image, &config);
    struct mf_image_error err;
    int rc = mf_image_load(image, o->input, *format, o->base, image_pread, &fd, size, &err);
    close(fd);
    if (!rc)
        rc = mf_image_finish(image, &err);
    if (rc) {
        mf_cli_error("%s", err.text);
        mf_image_free(image);
        return 1;
    }
    return 0;
}

static int image_info(int argc, char **argv)
{
    struct image_options o;
    int status = image_parse(argc, argv, false, &o);
    if (status)
        return status;
    struct mf_image image;
    enum mf_image_format format;
    status = image_load_file(&o, &image, &format);
    if (status)
        return status;
    size_t count;
    const struct mf_image_segment *segments = mf_image_segments(&image, &count);
    printf("format %s\n", mf_image_format_name(format));
    for (size_t i = 0; i < count; i++)
        printf("segment 0x%08llX 0x%08llX %llu\n", (unsigned long long)segments[i].address,
               (unsigned long long)(segments[i].address + segments[i].size - 1),
               (unsigned long long)segments[i].size);
    uint64_t start;
    if (mf_image_start(&image, &start))
        printf("start 0x%08llX\n", (unsigned long long)start);
    printf("segments %zu\n", count);
    printf("size %llu\n", (unsigned long long)mf_image_size(&image));
    printf("crc32 0x%08X\n", (unsigned)mf_image_crc32(&image));
    mf_image_free(&image);
    if (fflush(stdout) != 0) {
        mf_cli_error("cannot write to standard output: %s", strerror(errno));
        return 1;
    }
    return 0;
}

static int image_fwrite(void *context, const void *bytes, size_t length)
{
    return fwrite(bytes, 1, length, (FILE *)context) == length ? 0 : MF_EIO;
}

static int image_convert(int argc, char **argv)
{
    struct image_options o;
    int status = image_parse(argc, argv, true, &o);
    if (status)
        return status;
    struct mf_image image;
    enum mf_image_format format;
    status = image_load_file(&o, &image, &format);
    if (status)
        return status;
    uint64_t low, end;
    mf_image_span(&image, &low, &end);
    if (o.format_out == MF_IMAGE_FORMAT_BIN && end - low > IMAGE_BIN_OUTPUT_MAX) {
        mf_cli_error("%s: a raw binary from 0x%llX to 0x%llX would be %llu bytes with the gaps "
                     "filled, more than the 1 GiB limit; use ihex or srec for sparse images",
                     o.input, (unsigned long long)low, (unsigned long long)(end - 1),
                     (unsigned long long)(end - low));
        mf_image_free(&image);
        return 1;
    }
    bool to_stdout = strcmp(o.output, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(o.output, "wb");
    if (!out) {
        mf_cli_error("%s: %s", o.output, strerror(errno));
        mf_image_free(&image);
        return 1;
    }
    struct mf_image_error err = {0};
    int rc;
    if (o.format_out == MF_IMAGE_FORMAT_BIN)
        rc = mf_image_write_bin(&image, 0xFF, image_fwrite, out);
    else if (o.format_out == MF_IMAGE_FORMAT_IHEX)
        rc = mf_ihex_write(&image, 16, image_fwrite, out, &err);
    else
        rc = mf_srec_write(&image, 16, image_fwrite, out, &err);
    mf_image_free(&image);
    int saved_errno = errno;
    if (to_stdout) {
        if (fflush(out) != 0 && !rc) {
            rc = MF_EIO;
            saved_errno = errno;
        }
    } else if (fclose(out) != 0 && !rc) {
        rc = MF_EIO;
        saved_errno = errno;
    }
    if (rc) {
        if (err.text[0])
            mf_cli_error("%s: %s", o.input, err.text);
        else
            mf_cli_error("%s: cannot write: %s", o.output, strerror(saved_errno));
        if (!to_stdout)
            unlink(o.output);
        return 1;
    }
    return 0;
}

int mf_cli_image(int argc, char **argv)
{
    if (argc < 2) {
        fputs(image_usage_text, stderr);
        return 2;
    }
    if (image_wants_help(argc, argv)) {
        fputs(image_usage_text, stdout);
        return 0;
    }
    if (strcmp(argv[1], "info") == 0)
        return image_info(argc, argv);
    if (strcmp(argv[1], "convert") == 0)
        return image_convert(argc, argv);
    return image_usage_error("unknown image command '%s' (info, convert)", argv[1]);
}
