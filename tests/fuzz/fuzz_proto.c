/* Fuzz target: the protocol's framer and command parser on a hostile byte stream, fed in pieces
 * whose sizes come from the input itself. */
#include "mf_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mf_proto_framer framer;
    mf_proto_framer_init(&framer);
    size_t off = 0, step = size ? (size_t)(data[0] % 7) + 1 : 1;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        size_t used = 0;
        while (used < n) {
            enum mf_proto_event ev;
            used += mf_proto_framer_feed(&framer, data + off + used, n - used, &ev);
            if (ev == MF_PROTO_LINE) {
                if (framer.line[0] != '#' || strlen(framer.line) > MF_PROTO_LINE_MAX)
                    abort();
                const char *args;
                mf_proto_parse(framer.line, &args);
                /* Escaped for a reply: never a control byte, whatever the line held. */
                static char escaped[MF_PROTO_ESCAPED_SIZE(MF_PROTO_LINE_MAX)];
                size_t shown =
                    mf_proto_escape(framer.line, data[0] & 1, escaped, 1 + (size % sizeof escaped));
                for (size_t k = 0; k < shown; k++) {
                    if ((unsigned char)escaped[k] < 0x20 || escaped[k] == 0x7f)
                        abort();
                }
                uint64_t a, b;
                const char *p = args;
                if (mf_proto_hex(&p, &a) == 0 && *p == ',') {
                    p++;
                    if (mf_proto_hex(&p, &b) == 0 && *p == ':' && b <= MF_PROTO_FILE_CHUNK) {
                        uint8_t bytes[MF_PROTO_FILE_CHUNK];
                        mf_proto_hex_bytes(p + 1, bytes, (size_t)b);
                    }
                }
            }
        }
        off += n;
    }
    return 0;
}
