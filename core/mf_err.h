/* Error codes shared by every mintflash module.
 * Every call returns 0 on success or a negative MF_E* value; errno-compatible values where one
 * fits, our own in the reserved range from -1000 down. The texts live in one table (mf_err.c). */
#ifndef MF_ERR_H
#define MF_ERR_H

enum mf_error {
    MF_OK = 0,
    MF_EPERM = -1,         /* operation not permitted here */
    MF_ENOENT = -2,        /* no such file or directory */
    MF_EIO = -5,           /* input/output error of the underlying device */
    MF_EBADF = -9,         /* handle not open, or not open for this operation */
    MF_ENOMEM = -12,       /* out of memory (or a fixed-size table is full) */
    MF_EACCES = -13,       /* access denied */
    MF_EBUSY = -16,        /* resource busy */
    MF_EEXIST = -17,       /* file exists */
    MF_ENOTDIR = -20,      /* not a directory */
    MF_EISDIR = -21,       /* is a directory */
    MF_EINVAL = -22,       /* invalid argument */
    MF_EMFILE = -24,       /* too many open files */
    MF_EFBIG = -27,        /* file too large */
    MF_ENOSPC = -28,       /* no space left */
    MF_EROFS = -30,        /* read-only */
    MF_ERANGE = -34,       /* value out of range */
    MF_ENAMETOOLONG = -36, /* name too long */
    MF_ENOTEMPTY = -39,    /* directory not empty */
    MF_ENOTSUP = -95,      /* not supported */

    /* Our own range. */
    MF_ECORRUPT = -1000,   /* on-storage structure is damaged or hostile */
    MF_EFORMAT = -1001,    /* input file is malformed */
    MF_EVERIFY = -1002,    /* verification mismatch */
    MF_EAUTH = -1003,      /* authentication failed (signature, tag, key) */
    MF_ETIMEOUT = -1004,   /* a wait timed out */
    MF_EPROTO = -1005,     /* peer broke the protocol */
    MF_EPOWERLOSS = -1006, /* emulated power loss (fault-injecting device) */
    MF_ENAME = -1007,      /* name is not valid on this volume */
    MF_ECANCELED = -1008,  /* operation cancelled */
    MF_EEXHAUSTED = -1009, /* no programming cycles left */
    MF_ECONFLICT = -1010,  /* conflicting configuration */
    MF_EVERSION = -1011,   /* format version not supported */
};

/* Returns a static, human-readable text for an MF_E* code (or "unknown error"). */
const char *mf_strerror(int err);

#endif
