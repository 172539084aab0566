"""The sandbox: every operation starts at a root's directory descriptor and walks down one name at a time.

Each step is `openat(dir_fd, name, O_DIRECTORY | O_NOFOLLOW)`: a symbolic link anywhere in the path
is refused by the kernel at the moment of opening, not by an earlier check a swapped-in link could
race, and the caller's `..` never reaches the kernel (it is resolved on the names, `apps.files.paths`).
Files are opened the same way, relative to the descriptor of their directory, and then checked by
`fstat` on what was opened: a regular file, with one link (a hard link to a file outside the root
shares its inode, so a second name means its content may belong elsewhere), never a FIFO or a device
(opened non-blocking, so a FIFO cannot hang the server).

Roots are compared by device and inode, never by string prefix: at start-up the server refuses roots
that are the same directory or nested inside each other (a read-only root inside a writable one would
be writable through the other).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from apps.files.config import FilesSettings
from apps.files.paths import DenyList, PathRefused, RelPath, split, under
from apps.kit import CallerError, ServerError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class StartupError(Exception):
    """The configured roots cannot be served as configured."""


def kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character-device"
    if stat.S_ISBLK(mode):
        return "block-device"
    return "unknown"


def fs_error(error: OSError, where: str) -> Exception:
    """An OS error as a tool error: the caller's mistake, or the server's (volume full, permissions)."""
    code = error.errno
    caller = {
        errno.ENOENT: "not found",
        errno.ELOOP: "is a symbolic link; links are not followed",
        errno.ENOTDIR: "a component is not a directory",
        errno.EISDIR: "is a directory",
        errno.EEXIST: "already exists",
        errno.ENOTEMPTY: "directory is not empty",
        errno.ENAMETOOLONG: "name too long",
        errno.EINVAL: "invalid operation on this path",
        errno.EXDEV: "crosses a file system boundary",
        errno.EMLINK: "too many links",
    }
    server = {
        errno.EACCES: "permission denied by the file system",
        errno.EPERM: "operation not permitted by the file system",
        errno.ENOSPC: "no space left on the volume",
        errno.EDQUOT: "disk quota exceeded on the volume",
        errno.EROFS: "the volume is mounted read-only",
        errno.EIO: "I/O error on the volume",
    }
    if code in caller:
        return CallerError(f"{where}: {caller[code]}")
    reason = server.get(code or 0, errno.errorcode.get(code or 0, "unknown error"))
    return ServerError(f"{where}: {reason}")


@dataclass
class Root:
    name: str
    writable: bool
    path: str  # as configured (absolute)
    aliases: tuple[tuple[str, ...], ...]  # the configured path and its real path, as names, for absolute paths
    fd: int
    device: int
    inode: int


@dataclass(frozen=True)
class Target:
    """What a caller's path names: a root and the names under it."""

    root: Root
    path: RelPath


class Sandbox:
    def __init__(self, roots: dict[str, Root], deny: DenyList, read_only: bool):
        self.roots, self.deny, self.read_only = roots, deny, read_only
        self.default_root = next(iter(roots))

    @classmethod
    def open(cls, settings: FilesSettings) -> Sandbox:
        """Open every root once (the only paths ever resolved by name); refuse overlapping roots."""
        roots: dict[str, Root] = {}
        try:
            for name, config in settings.files_roots.items():
                path = os.path.abspath(settings.root_path(name))
                writable = config.mode == "rw" and not settings.read_only
                try:
                    if not settings.read_only and not os.path.exists(path):
                        os.makedirs(path, mode=0o755, exist_ok=True)  # a fresh volume: its roots are ours to make
                    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as error:
                    raise StartupError(f"root {name!r} ({path}): {error.strerror}") from None
                info = os.fstat(fd)
                aliases = {split(path)[1], split(os.path.realpath(path))[1]}
                roots[name] = Root(name, writable, path, tuple(aliases), fd, info.st_dev, info.st_ino)
            _refuse_overlaps(roots)
        except BaseException:
            for root in roots.values():
                os.close(root.fd)
            raise
        return cls(roots, DenyList(settings.files_deny), settings.read_only)

    def close(self) -> None:
        for root in self.roots.values():
            os.close(root.fd)

    # --- from the caller's strings to a target ----------------------------------------------------------
    def locate(self, root_name: str | None, path: str) -> Target:
        """The root and names a caller's path designates; refused if outside every root or denied."""
        absolute, names = split(path)
        if absolute:
            matches = [
                (len(alias), root) for root in self.roots.values() for alias in root.aliases if under(alias, names)
            ]
            if not matches:
                raise PathRefused("path is outside every root")
            depth, root = max(matches, key=lambda match: match[0])  # roots never nest; aliases of one may
            rest = names[depth:]
            if root_name is not None and root_name != root.name:
                raise PathRefused(f"path is in root {root.name!r}, not {root_name!r}")
            target = Target(root, RelPath(rest))
        else:
            name = root_name or self.default_root
            if name not in self.roots:
                raise CallerError(f"unknown root {name!r}; roots: {sorted(self.roots)}")
            target = Target(self.roots[name], RelPath(names))
        if pattern := self.deny.denied(target.path):
            raise PathRefused(f"{target.path.text}: denied by the server's policy ({pattern})")
        return target

    def writable(self, target: Target) -> Target:
        if not target.root.writable:
            raise CallerError(f"root {target.root.name!r} is read-only")
        return target

    # --- walking ------------------------------------------------------------------------------------------
    @contextmanager
    def directory(self, root: Root, path: RelPath) -> Iterator[int]:
        """A descriptor of the directory at `path`, opened one name at a time without following links."""
        fd = os.open(".", DIR_FLAGS, dir_fd=root.fd)  # a new open file: offsets are not shared between calls
        try:
            for depth, name in enumerate(path.parts):
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError as error:
                    raise fs_error(_why(error, fd, name), RelPath(path.parts[: depth + 1]).text) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def parent(self, target: Target) -> Iterator[int]:
        """The descriptor of the directory holding the target (the root itself has no parent here)."""
        if not target.path.parts:
            raise CallerError("the root itself cannot be used here; name something under it")
        with self.directory(target.root, target.path.parent) as fd:
            yield fd

    def entry(self, dir_fd: int, target: Target) -> os.stat_result | None:
        """The target's own status, links not followed; None if nothing has that name."""
        try:
            return os.stat(target.path.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise fs_error(error, target.path.text) from None

    @contextmanager
    def regular_file(self, dir_fd: int, target: Target) -> Iterator[tuple[int, os.stat_result]]:
        """Open the target for reading, then check what was opened: one regular file, singly linked."""
        before = self.entry(dir_fd, target)
        where = target.path.text
        if before is None:
            raise CallerError(f"{where}: not found")
        require_regular(before, where)  # FIFOs and devices are refused before they are opened at all
        try:
            fd = os.open(target.path.name, READ_FLAGS, dir_fd=dir_fd)
        except OSError as error:
            raise fs_error(error, where) from None
        try:
            opened = os.fstat(fd)
            require_regular(opened, where)
            if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
                raise CallerError(f"{where}: changed while it was being opened; retry")
            yield fd, opened
        finally:
            os.close(fd)


def _why(error: OSError, dir_fd: int, name: str) -> OSError:
    """O_DIRECTORY wins over O_NOFOLLOW: a link where a directory was expected fails ENOTDIR; say ELOOP."""
    if error.errno == errno.ENOTDIR:
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        except OSError:
            pass
    return error


def require_regular(info: os.stat_result, where: str) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise CallerError(f"{where}: is a symbolic link; links are not followed")
    if not stat.S_ISREG(info.st_mode):
        raise CallerError(f"{where}: not a regular file ({kind(info.st_mode)})")
    if info.st_nlink > 1:
        raise CallerError(f"{where}: has {info.st_nlink} hard links; files with more than one are not served")


def _refuse_overlaps(roots: dict[str, Root]) -> None:
    """Walk up from each root by descriptor to `/`: no other root may be it or one of its ancestors."""
    identities = {(root.device, root.inode): root.name for root in roots.values()}
    if len(identities) != len(roots):
        raise StartupError("two roots are the same directory")
    for root in roots.values():
        fd = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root.fd)
        try:
            seen = (root.device, root.inode)
            while True:
                info = os.fstat(fd)
                identity = (info.st_dev, info.st_ino)
                if identity == seen:
                    break  # `..` of `/` is `/`
                if identity in identities:
                    raise StartupError(f"root {root.name!r} is inside root {identities[identity]!r}")
                seen = identity
                parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = parent
        finally:
            os.close(fd)
