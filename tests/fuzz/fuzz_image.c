/* Fuzz target: a whole file through format detection, the parsers, the image model and the
 * writers. Whatever loads must survive a round trip: written as Intel HEX and as S-records (when
 * below 4 GiB) and loaded again, it gives the same segments and CRC-32. The overlap policy comes
 * from the first byte, so all three are exercised. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mf_err.h"
#include "mf_ihex.h"
#include "mf_image.h"
#include "mf_srec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct buffer {
    uint8_t *data;
    size_t size, capacity;
};

static int read_at(void *context, uint64_t offset, void *out, size_t length)
{
    const struct buffer *in = context;
    if (offset > in->size || length > in->size - offset)
        return MF_EIO;
    memcpy(out, in->data + offset, length);
    return 0;
}

static int append(void *context, const void *bytes, size_t length)
{
    struct buffer *b = context;
    if (b->size + length > b->capacity) {
        size_t capacity = (b->size + length) * 2;
        uint8_t *grown = realloc(b->data, capacity);
        if (!grown)
            return MF_ENOMEM;
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->size, bytes, length);
    b->size += length;
    return 0;
}

static void same_image(const struct mf_image *a, const struct mf_image *b)
{
    size_t na, nb;
    const struct mf_image_segment *sa = mf_image_segments(a, &na);
    const struct mf_image_segment *sb = mf_image_segments(b, &nb);
    if (na != nb || mf_image_crc32(a) != mf_image_crc32(b) || mf_image_size(a) != mf_image_size(b))
        abort();
    for (size_t i = 0; i < na; i++) {
        if (sa[i].address != sb[i].address || sa[i].size != sb[i].size ||
            memcmp(sa[i].data, sb[i].data, (size_t)sa[i].size) != 0)
            abort();
    }
}

static void round_trip(const struct mf_image *image, bool hex)
{
    struct buffer out = {0};
    int rc = hex ? mf_ihex_write(image, 16, append, &out, NULL)
                 : mf_srec_write(image, 16, append, &out, NULL);
    if (rc == 0) {
        struct mf_image again;
        mf_image_init(&again, NULL);
        struct mf_image_error err;
        if (mf_image_load(&again, "again", MF_IMAGE_FORMAT_AUTO, 0, read_at, &out, out.size,
                          &err) != 0 ||
            mf_image_finish(&again, &err) != 0)
            abort();
        same_image(image, &again);
        mf_image_free(&again);
    } else if (rc != MF_ERANGE) {
        abort();
    }
    free(out.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mf_image_config config = {
        .overlap = size ? (enum mf_image_overlap)(data[0] % 3) : MF_IMAGE_OVERLAP_ERROR,
        .max_bytes = 1u << 22,
    };
    struct mf_image image;
    mf_image_init(&image, &config);
    struct buffer in = {(uint8_t *)(uintptr_t)data, size, size};
    struct mf_image_error err;
    int rc = mf_image_load(&image, "fuzz", MF_IMAGE_FORMAT_AUTO, 0, read_at, &in, size, &err);
    if (rc && strncmp(err.text, "fuzz: ", 6) != 0)
        abort(); /* a load error names the file */
    if (!rc) {
        rc = mf_image_finish(&image, &err);
        if (rc && err.text[0] == '\0')
            abort();
    }
    if (rc) {
        mf_image_free(&image);
        return 0;
    }
    round_trip(&image, true);
    round_trip(&image, false);
    uint8_t window[64];
    uint64_t low, end;
    mf_image_span(&image, &low, &end);
    if (mf_image_read(&image, low, window, sizeof window, 0xFF) != 0 && low < UINT64_MAX - 64)
        abort();
    mf_image_free(&image);
    return 0;
}
