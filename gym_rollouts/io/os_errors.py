"""What a file-system error means for the user: the error, its errno name and what to do about it.

Shared by the checks made before a run (input, output folder, lock), the writer thread and the end
of a run, so one failure reads the same wherever it is noticed. ``WRITE_FAILURES`` are the errnos
of a write that fails for a reason outside the run (disk full, quota, read-only file system, I/O
error, file size limit): a run that meets one part-way stops (exit 5) and is resumed after the fix.
"""

from __future__ import annotations

import errno

WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})

_FIXES = {
    errno.ENOSPC: "the disk is full: free space on it, or choose a path on another disk",
    errno.EDQUOT: "your disk quota is used up: free space or raise the quota, or choose a path on another disk",
    errno.EROFS: "the file system is mounted read-only: choose a path on a writable one, or remount it read-write",
    errno.EIO: "the storage reported an I/O error: check the device or mount (dmesg), or choose a path on "
               "another disk",
    errno.EFBIG: "the file reached the largest size allowed (ulimit -f, or the file system's limit): raise the "
                 "limit, or choose a path on another file system",
    errno.EACCES: "permission denied: fix the permissions, or choose a path you may use",
    errno.EPERM: "operation not permitted: fix the permissions, or choose a path you may use",
    errno.ENOTDIR: "a component of the path is a file, not a directory: fix the path",
    errno.EISDIR: "it is a directory: give a file path",
    errno.ENOENT: "no such file or directory: check the path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
    errno.ELOOP: "the path has a symbolic-link loop: fix the links",
    errno.ENOLCK: "the file system does not support file locks: choose a path on one that does (a local disk; "
                  "NFS mounted without 'nolock')",
    errno.EOPNOTSUPP: "the file system does not support this operation (file locks): choose a path on a local disk",
}

# the same failures met part-way through a run that is then resumed on the same output
_FIXES_BEFORE_RESUME = {
    errno.ENOSPC: "free space on that disk",
    errno.EDQUOT: "free space or raise your quota",
    errno.EROFS: "remount that file system read-write",
    errno.EIO: "check the device or mount (dmesg)",
    errno.EFBIG: "raise the file size limit (ulimit -f)",
}


def errno_name(exc: OSError) -> str:
    """``ENOSPC`` for errno 28; the number itself when it has no name."""
    return errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else "no errno"


def explain(exc: OSError) -> str:
    """``"No space left on device (ENOSPC): the disk is full: free space on it, ..."``."""
    reason = exc.strerror or str(exc)
    fix = _FIXES.get(exc.errno) if exc.errno is not None else None
    return f"{reason} ({errno_name(exc)})" + (f": {fix}" if fix else "")


def explain_before_resume(exc: OSError) -> str:
    """Like ``explain``, with the fix for a run that is resumed on the same output afterwards."""
    reason = exc.strerror or str(exc)
    fix = _FIXES_BEFORE_RESUME.get(exc.errno) if exc.errno is not None else None
    return f"{reason} ({errno_name(exc)})" + (f": {fix}" if fix else "")


def is_write_failure(exc: BaseException) -> bool:
    """An ``OSError`` whose errno is one of ``WRITE_FAILURES``."""
    return isinstance(exc, OSError) and exc.errno in WRITE_FAILURES


def find_write_failure(exc: BaseException) -> OSError | None:
    """The first write failure in ``exc``, in its exception groups or its explicit causes (None when
    none; an error merely raised while handling another is not counted)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if is_write_failure(current):
            return current  # type: ignore[return-value]
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
    return None
