/* Streams one data file of a job (Intel HEX, S-record, ELF or raw binary) from an area to an image
 * sink, in chunks through a caller-owned buffer: the whole file is never held in memory. */
#ifndef MF_DATAFILE_H
#define MF_DATAFILE_H

#include "mf_area.h"
#include "mf_image.h"

/* Detects the format of `path` from its first bytes (mf_image_detect). */
int mf_datafile_detect(struct mf_area *area, const char *path, uint64_t size,
                       enum mf_image_format *format);

/* Parses `path` (of `size` bytes, in `format`, raw binary placed at `base`) and hands every data
 * record to `sink`. `buffer` (at least 256 bytes; larger is faster) holds one chunk at a time.
 * Errors: the parser's (MF_EFORMAT with line or offset in `err`), the area's, or the sink's. */
int mf_datafile_stream(struct mf_area *area, const char *path, enum mf_image_format format,
                       uint64_t base, uint64_t size, const struct mf_image_sink *sink,
                       uint8_t *buffer, size_t buffer_size, struct mf_image_error *err);

/* The same for a sink that wants the addresses only: a raw binary's records follow from its size,
 * so it is not read and the sink gets them with `bytes` NULL (in the same pieces). The other
 * formats are read and parsed as above. */
int mf_datafile_scan(struct mf_area *area, const char *path, enum mf_image_format format,
                     uint64_t base, uint64_t size, const struct mf_image_sink *sink,
                     uint8_t *buffer, size_t buffer_size, struct mf_image_error *err);

#endif
