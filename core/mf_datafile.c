/* Data file streaming (see mf_datafile.h). */
#include "mf_datafile.h"

#include "mf_elf.h"
#include "mf_err.h"
#include "mf_ihex.h"
#include "mf_srec.h"

struct area_file {
    struct mf_area *area;
    const char *path;
};

static int area_read(void *context, uint64_t offset, void *buffer, size_t length)
{
    struct area_file *f = context;
    return f->area->read(f->area, f->path, offset, buffer, length);
}

int mf_datafile_detect(struct mf_area *area, const char *path, uint64_t size,
                       enum mf_image_format *format)
{
    uint8_t head[MF_IMAGE_DETECT_BYTES];
    size_t n = size < sizeof head ? (size_t)size : sizeof head;
    int err = area->read(area, path, 0, head, n);
    if (err)
        return err;
    *format = mf_image_detect(head, n);
    return 0;
}

/* With `read_raw` false, a raw binary is not read: the sink gets NULL bytes. */
static int stream(struct mf_area *area, const char *path, enum mf_image_format format,
                  uint64_t base, uint64_t size, const struct mf_image_sink *sink, uint8_t *buffer,
                  size_t buffer_size, bool read_raw, struct mf_image_error *err)
{
    mf_image_error_clear(err);
    if (format == MF_IMAGE_FORMAT_ELF) {
        struct area_file f = {area, path};
        return mf_elf_load(area_read, &f, size, sink, err);
    }
    union {
        struct mf_ihex_parser ihex;
        struct mf_srec_parser srec;
    } parser;
    if (format == MF_IMAGE_FORMAT_IHEX)
        mf_ihex_init(&parser.ihex, sink);
    else if (format == MF_IMAGE_FORMAT_SREC)
        mf_srec_init(&parser.srec, sink);
    else if (format != MF_IMAGE_FORMAT_BIN)
        return MF_EINVAL;
    for (uint64_t offset = 0; offset < size;) {
        size_t n = size - offset < buffer_size ? (size_t)(size - offset) : buffer_size;
        bool read = read_raw || format != MF_IMAGE_FORMAT_BIN;
        int e = read ? area->read(area, path, offset, buffer, n) : 0;
        if (e) {
            mf_image_error_offset(err, offset, "cannot read: %s", mf_strerror(e));
            return e;
        }
        if (format == MF_IMAGE_FORMAT_IHEX)
            e = mf_ihex_feed(&parser.ihex, buffer, n, err);
        else if (format == MF_IMAGE_FORMAT_SREC)
            e = mf_srec_feed(&parser.srec, buffer, n, err);
        else if (base + offset + n < base) {
            mf_image_error_offset(err, offset, "address past 2^64 - 1");
            e = MF_ERANGE;
        } else {
            e = sink->data(sink->context, base + offset, read ? buffer : NULL, n, offset);
            if (e)
                e = mf_image_error_sink(err, 0, offset, e);
        }
        if (e)
            return e;
        offset += n;
    }
    if (format == MF_IMAGE_FORMAT_IHEX)
        return mf_ihex_finish(&parser.ihex, err);
    if (format == MF_IMAGE_FORMAT_SREC)
        return mf_srec_finish(&parser.srec, err);
    return 0;
}

int mf_datafile_stream(struct mf_area *area, const char *path, enum mf_image_format format,
                       uint64_t base, uint64_t size, const struct mf_image_sink *sink,
                       uint8_t *buffer, size_t buffer_size, struct mf_image_error *err)
{
    return stream(area, path, format, base, size, sink, buffer, buffer_size, true, err);
}

int mf_datafile_scan(struct mf_area *area, const char *path, enum mf_image_format format,
                     uint64_t base, uint64_t size, const struct mf_image_sink *sink,
                     uint8_t *buffer, size_t buffer_size, struct mf_image_error *err)
{
    return stream(area, path, format, base, size, sink, buffer, buffer_size, false, err);
}
