/* The one table of error texts. */
#include "mf_err.h"

#include <stddef.h>

static const struct {
    int code;
    const char *text;
} mf_error_texts[] = {
    {MF_OK, "success"},
    {MF_EPERM, "operation not permitted"},
    {MF_ENOENT, "no such file or directory"},
    {MF_EIO, "input/output error"},
    {MF_EBADF, "bad file handle"},
    {MF_ENOMEM, "out of memory"},
    {MF_EACCES, "access denied"},
    {MF_EBUSY, "busy"},
    {MF_EEXIST, "file exists"},
    {MF_ENOTDIR, "not a directory"},
    {MF_EISDIR, "is a directory"},
    {MF_EINVAL, "invalid argument"},
    {MF_EMFILE, "too many open files"},
    {MF_EFBIG, "file too large"},
    {MF_ENOSPC, "no space left"},
    {MF_EROFS, "read-only"},
    {MF_ERANGE, "value out of range"},
    {MF_ENAMETOOLONG, "name too long"},
    {MF_ENOTEMPTY, "directory not empty"},
    {MF_ENOTSUP, "not supported"},
    {MF_ECORRUPT, "damaged or invalid on-storage structure"},
    {MF_EFORMAT, "malformed input"},
    {MF_EVERIFY, "verification failed"},
    {MF_EAUTH, "authentication failed"},
    {MF_ETIMEOUT, "timed out"},
    {MF_EPROTO, "protocol error"},
    {MF_EPOWERLOSS, "power lost (emulated)"},
    {MF_ENAME, "invalid name"},
    {MF_ECANCELED, "cancelled"},
    {MF_EEXHAUSTED, "no programming cycles left"},
    {MF_ECONFLICT, "conflicting configuration"},
    {MF_EVERSION, "unsupported format version"},
};

const char *mf_strerror(int err)
{
    for (size_t i = 0; i < sizeof mf_error_texts / sizeof mf_error_texts[0]; i++) {
        if (mf_error_texts[i].code == err)
            return mf_error_texts[i].text;
    }
    return "unknown error";
}
