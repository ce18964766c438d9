/* The production setup of an area, loaded and checked once: FLASHER.INI, the projects under
 * Projects/ and their jobs (job.ini and data files). Everything a cycle needs is decided here, so
 * that a cycle either runs or says at once what is wrong; errors name the file, the line and the
 * key. Loading allocates (bounded by the limits below); a cycle does not. */
#ifndef MF_SETUP_H
#define MF_SETUP_H

#include "mf_area.h"
#include "mf_devices.h"
#include "mf_image.h"
#include "mf_profile.h"
#include "mf_rsp.h"
#include "mf_target.h"

#include <stdbool.h>
#include <stdint.h>

#define MF_SETUP_PROJECTS_MAX 64u
#define MF_PROJECT_JOBS_MAX   16u
#define MF_JOB_FILES_MAX      8u
#define MF_SETUP_PATH_MAX     256u   /* bytes of a path inside the area, with the NUL */
#define MF_SETUP_NAME_MAX     64u    /* bytes of a project or job name, with the NUL */
#define MF_SETUP_INI_MAX      16384u /* bytes of job.ini and FLASHER.INI */
#define MF_SETUP_ERROR_MAX    320u
#define MF_SERIAL_LENGTH_MAX  8u
#define MF_SIGNATURE_SIZE     64u /* bytes of a UID signature ([signature]; MF_UIDSIG_SIZE) */

/* The files the reference product defines, looked up case-insensitively. */
#define MF_FILE_FLASHER_INI "FLASHER.INI"
#define MF_FILE_CNTDOWN     "Cntdown.txt"
#define MF_FILE_SERIAL      "Serial.txt"
#define MF_FILE_SNLIST      "SNList.txt"
#define MF_FILE_PATCHES     "Patches.txt"
#define MF_FILE_JOB_INI     "job.ini"
#define MF_DIR_PROJECTS     "Projects"

enum mf_erase_mode { MF_ERASE_SECTORS, MF_ERASE_CHIP, MF_ERASE_NONE };
enum mf_verify_mode { MF_VERIFY_CRC, MF_VERIFY_READBACK, MF_VERIFY_NONE };
enum mf_serial_encoding {
    MF_SERIAL_LE,        /* binary, least significant byte first */
    MF_SERIAL_BE,        /* binary, most significant byte first */
    MF_SERIAL_ASCII_DEC, /* decimal digits, zero-padded on the left */
    MF_SERIAL_ASCII_HEX, /* upper-case hex digits, zero-padded on the left */
};

/* Data files held in memory get a CRC per window of this many bytes, aligned to it (the job
 * engine's MF_WINDOW_SIZE). */
#define MF_SETUP_CRC_WINDOW (64u << 10)

/* The CRC (mf_target_crc, from MF_TARGET_CRC_INIT), taken at the load, of one block of a held
 * file: its `length` bytes at `bytes` for `address`, the part of one held segment that lies in
 * one MF_SETUP_CRC_WINDOW-aligned window (the whole window, or less at a segment's ends). */
struct mf_held_crc {
    uint64_t address;
    const uint8_t *bytes;
    uint32_t length;
    uint32_t crc;
};

/* [start, end) */
struct mf_range {
    uint64_t start, end;
};

struct mf_datafile {
    char path[MF_SETUP_PATH_MAX]; /* inside the area */
    char name[MF_SETUP_NAME_MAX]; /* as job.ini names it, for messages */
    enum mf_image_format format;
    uint64_t base;  /* raw binary load address */
    uint64_t size;  /* file size */
    uint64_t bytes; /* data bytes it loads */
    /* Files whose records do not ascend are loaded once and held sorted here; so are the others
     * while they fit the area's hold_max (mf_area), the selected project's first. A cycle
     * streams the rest from the area. */
    struct mf_image *held;
    bool held_by_choice; /* held because it fit hold_max (its records are in order) */
    /* Of a held file: the CRCs of all its bytes, block by block in address order. A cycle
     * checks the blocks whose bytes the device's CRC will not be compared with (a bit that
     * flipped in memory would otherwise go into every device), and uses the others' CRCs as
     * what it sends. NULL only for a file out of order when memory ran out. */
    struct mf_held_crc *blocks;
    size_t block_count;
    /* Where another file of the job wins ([job] overlap = first | last): sorted, disjoint ranges
     * of this file's data that a cycle leaves out. Empty (NULL) without overlaps. */
    struct mf_range *excluded;
    size_t excluded_count;
    unsigned line; /* of its `path` in job.ini, for messages */
};

struct mf_job {
    char folder[MF_SETUP_PATH_MAX];
    char name[MF_SETUP_NAME_MAX]; /* the folder name without its NN_ prefix */
    const struct mf_profile *profile;
    enum mf_erase_mode erase;
    enum mf_verify_mode verify;
    unsigned protect;         /* readout protection level set at the end; 0 = none */
    enum mf_start_mode start; /* 0 = do not start */
    bool patches;             /* apply Patches.txt lines (and #AUTO PATCH data) */
    bool operator_patches;    /* from the secure area: #AUTO PATCH data too (the owner allows
                                 the operator to change this job's bytes; default no) */
    /* Which file wins where two hold data for the same address: none (an error, the default),
     * the one listed first or the one listed last in job.ini (also within one file: the record
     * later in the file for `last`), as `mintflash image --overlap` decides. */
    enum mf_image_overlap overlap;
    struct mf_datafile files[MF_JOB_FILES_MAX];
    unsigned file_count;
    bool serial; /* program the serial number */
    uint64_t serial_address;
    unsigned serial_length; /* 1..MF_SERIAL_LENGTH_MAX bytes */
    enum mf_serial_encoding serial_encoding;
    /* [signature]: MF_SIGNATURE_SIZE bytes at signature_address, signed per device with the
     * Ed25519 seed read from the key file at load (wiped by mf_setup_free). */
    bool signature;
    uint64_t signature_address;
    uint8_t signature_seed[32];
    struct mf_range *ranges; /* what the files load: sorted, merged, overlaps resolved */
    size_t range_count;
    uint64_t data_bytes; /* bytes of `ranges`: what a cycle programs besides per-device bytes */
    struct mf_rsp_options gdb; /* [gdb]: how a GDB server reaches the device */
};

struct mf_project {
    char folder[MF_SETUP_PATH_MAX]; /* "Projects/01_Widget" */
    char name[MF_SETUP_NAME_MAX];   /* "Widget" */
    struct mf_job jobs[MF_PROJECT_JOBS_MAX];
    unsigned job_count;
    bool has_cntdown; /* Cntdown.txt in the project folder */
    bool has_serial;  /* Serial.txt */
    bool has_snlist;  /* SNList.txt */
    bool has_patches; /* Patches.txt */
    bool uses_serial; /* some job programs a serial number */
    uint64_t serial_increment;
    int error; /* 0, or why the project cannot run (then `message` says) */
    char message[MF_SETUP_ERROR_MAX];
    bool data_file_error; /* that is a data file that cannot be opened or read (the protocol's
                             102, "Data file could not be opened"), not the setup's text */
};

struct mf_setup {
    struct mf_area *area;
    struct mf_devices *devices;  /* DEVICES.INI's profiles (allocated), NULL without one */
    struct mf_project *projects; /* allocated */
    unsigned project_count;
    unsigned selected;                     /* index into projects */
    bool has_root_cntdown;                 /* Cntdown.txt at the root */
    char selected_name[MF_SETUP_NAME_MAX]; /* FLASHER.INI [CONFIG] Project, "" if unset */
    uint32_t log_max_bytes;                /* FLASHER.INI [CONFIG] LogMaxKiB, in bytes */
    /* FLASHER.INI keys of the reference's that have no effect here ("FLASHER.INI:3:
     * ShowDatCRCAfterProgramming, ..."), for the log; "" when none. */
    char ignored_keys[MF_SETUP_ERROR_MAX];
    uint8_t fingerprint[32]; /* mf_setup_fingerprint of the area, at load */
};

/* Loads and checks the setup at the root of `area`. Returns 0 with every project loaded (a
 * project that cannot run carries its error and message), or an error for the setup as a whole
 * (no Projects folder, malformed FLASHER.INI, ...) with `message` (MF_SETUP_ERROR_MAX bytes)
 * filled. `buffer` is scratch space for streaming data files. */
int mf_setup_load(struct mf_setup *setup, struct mf_area *area, uint8_t *buffer, size_t buffer_size,
                  char *message);

/* Releases what mf_setup_load allocated and wipes the signature keys it read. */
void mf_setup_free(struct mf_setup *setup);

/* The fingerprint of the production setup in `area`: SHA-256 over every file except those the
 * programmer itself changes (FLASHER.INI, FLASHER.LOG, FLASHER.OLD, every Cntdown.txt and
 * Serial.txt), in the order of their upper-cased paths, each as its upper-cased path, a NUL, its
 * size (8 bytes, little endian) and its bytes. It identifies what the owner installed, whatever
 * the counters say now. At most 65536 files, folders at most MF_FAT_DEPTH_MAX deep. */
int mf_setup_fingerprint(struct mf_area *area, uint8_t *buffer, size_t buffer_size,
                         uint8_t fingerprint[32]);

/* The block of `f` that is the whole window at `address` when `bytes` points at its held bytes,
 * else NULL. */
const struct mf_held_crc *mf_datafile_window_crc(const struct mf_datafile *f, uint64_t address,
                                                 const uint8_t *bytes);
/* Finds a project by name, with or without its NN_ prefix, case-insensitively. */
int mf_setup_find(const struct mf_setup *setup, const char *name, unsigned *index);

/* The selected project, or NULL when the setup has none. */
const struct mf_project *mf_setup_project(const struct mf_setup *setup);

/* The public area's allow-list: the one fixed, documented list (docs/jobs.md, "Files the
 * programmer writes") of the files the programmer itself keeps at the public area's root, whatever
 * area the setup lives in:
 *   MF_PUBLIC_LOG      FLASHER.LOG and FLASHER.OLD (written)
 *   MF_PUBLIC_RECORDS  RECORDS.000 .. RECORDS.999, the production records (written)
 *   MF_PUBLIC_TOKEN    *.mft, top-up tokens (read there, applied or refused, and deleted)
 * Names compare ignoring case; `name` is a name at the root, not a path. */
enum mf_public_file {
    MF_PUBLIC_OTHER = 0, /* not the programmer's: the user's, or a conflict (below) */
    MF_PUBLIC_LOG,
    MF_PUBLIC_RECORDS,
    MF_PUBLIC_TOKEN,
};
enum mf_public_file mf_setup_public_file(const char *name);

/* The conflict rule's list: while the secure area holds a setup, the public area's root may hold
 * only the allow-list's files (mf_setup_public_file) and the `_SECURE` folder (MF_SECURE_FOLDER),
 * the input the programmer consumes at start; any other file or folder is a conflict (which setup
 * should run?). A `_SECURE` folder still there after a start is one it did not move: the caller
 * stops cycles for it too, with a message of its own. */
bool mf_setup_public_allowed(const char *name, bool is_dir);

/* Does the setup's fingerprint (and a package's setup id) leave out the file at `path` ("a/b/c")?
 * Every Cntdown.txt and Serial.txt (counters the programmer changes), and at the root
 * FLASHER.INI (its Project line) and the allow-list's log files (MF_PUBLIC_LOG). Production
 * records and tokens count where they appear: a setup never holds them (records are written
 * beside a setup in the secure area; tokens are deleted once read), and the setup id's layout
 * (docs/owner-tools.md) stays as it was. */
bool mf_setup_programmer_file(const char *path);

/* Does a cycle of this project take a serial number? Whenever it has Serial.txt: also when no
 * job programs it, the number advances and FLASHER.LOG names it, so that the log's lines stay
 * distinguishable (as the reference's ATE does). */
bool mf_project_takes_serial(const struct mf_project *project);

/* Data bytes of the project's files that its setup does not hold in memory (mf_area.hold_max):
 * every cycle reads them from the area. */
uint64_t mf_project_unheld_bytes(const struct mf_project *project);
/* Strips an NN_ prefix (digits and one underscore) from a folder name. */
const char *mf_setup_display_name(const char *folder_name);

/* Names used in messages and job.ini values. */
const char *mf_erase_mode_name(enum mf_erase_mode mode);
const char *mf_verify_mode_name(enum mf_verify_mode mode);

#endif
