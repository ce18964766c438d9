/* Fuzz target: how the gdb back end (targets/mf_gdb) takes a GDB server's replies. The input is
 * everything the server says, written beforehand into one end of a socketpair (the server's end
 * then closed for writing); the back end runs a fixed session on the other end: connect
 * (qSupported, no-ack mode, a monitor command and vAttach, halt, the memory map), read the UID,
 * unlock (a monitor command with console output), erase and program (vFlash* or X/M with the
 * lazy erase), read back, qCRC, start from the vector table (the target description, P or g/G).
 * Acks and naks, run-length encoding, stop replies and qXfer chunking all come from the input.
 * Every wait ends at once (the bytes are there, or the end of the stream is), and each request
 * consumes input, so an input runs in bounded time. */
#include "mf_gdb.h"
#include "mf_target.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FLASH_SIZE (16u << 10)
#define INPUT_MAX  (64u << 10) /* fits the socket buffer: written before the session starts */

static const struct mf_profile profile = {
    .name = "FUZZ-16K",
    .description = "16 KiB at 0 in 1 KiB pages, UID at 0x20000100",
    .flash = {{.start = 0,
               .size = FLASH_SIZE,
               .groups = {{1024, 16}},
               .group_count = 1,
               .write_size = 4,
               .erased_value = 0xFF}},
    .flash_count = 1,
    .uid_address = 0x20000100u,
    .uid_length = 8,
};

/* Reads (and drops) what the back end sent, so that its requests never fill the socket. */
static void drain(int fd)
{
    uint8_t sink[4096];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    int room = 2 * INPUT_MAX;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    for (size_t done = 0; done < size;) {
        ssize_t n = send(sv[1], data + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n <= 0) { /* the socket does not take it all beforehand: not an input we can run */
            close(sv[0]);
            close(sv[1]);
            return 0;
        }
        done += (size_t)n;
    }
    shutdown(sv[1], SHUT_WR);

    static struct mf_rsp_options options;
    static bool ready;
    if (!ready) {
        char why[160];
        mf_rsp_options_init(&options);
        /* Short: no wait can happen (the input is there or ended), but a bug must not hang. */
        options.timeout_ms = 50;
        options.long_timeout_ms = 50;
        if (mf_rsp_options_set(&options, "connect", "monitor scan && attach 1", why, sizeof why) ||
            mf_rsp_options_set(&options, "unlock", "monitor unlock {level}", why, sizeof why))
            abort();
        ready = true;
    }
    static struct mf_target target;
    memset(&target, 0, sizeof target);
    if (mf_gdb_open_fd(&target, sv[0], &options))
        abort();
    target.profile = &profile;
    static uint8_t image[2048], back[2048];
    for (size_t i = 0; i < sizeof image; i++)
        image[i] = (uint8_t)(i * 7u + (i >> 5)); /* '#', '$', '}' and '*' among them */
    const struct mf_target_ops *ops = target.ops;
    uint8_t uid[8];
    uint32_t crc;
    if (ops->connect(&target) == 0) {
        ops->read_uid(&target, uid, sizeof uid);
        drain(sv[1]);
        ops->unlock(&target);
        ops->erase(&target, 0, 4096);
        ops->program(&target, 1024, image, sizeof image);
        drain(sv[1]);
        ops->read(&target, 0, back, sizeof back); /* flushes the lazy erase first */
        ops->crc(&target, 1024, sizeof image, &crc);
        drain(sv[1]);
        ops->erase_chip(&target);
        ops->start(&target, MF_START_VECTOR);
        ops->disconnect(&target);
    }
    struct mf_gdb_stats stats;
    mf_gdb_stats(&target, &stats);
    /* Never a packet larger than the server allows, nor larger than we ever send. */
    if (stats.packet_size > MF_GDB_PACKET_MAX ||
        (stats.packet_size && stats.largest > stats.packet_size))
        abort();
    if (strnlen(target.error, sizeof target.error) == sizeof target.error)
        abort();
    mf_gdb_close(&target);
    close(sv[1]);
    return 0;
}
