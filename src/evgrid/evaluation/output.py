"""The output folder behind ``--out``: checked before the run, written without destroying data.

Why this module exists: ``--out`` used to replace the folder wholesale, so a user's file inside
it was deleted, an existing file became a folder, ``--out .`` crashed half-way and a SIGKILL left
hidden partial folders behind for ever. The rules here:

* evgrid deletes only what it wrote. A folder evgrid writes carries a marker, ``MARKER``
  (``.evgrid-output.json``), listing the files and folders evgrid put there, the evgrid version
  and the time. A re-write may remove a file the previous write listed and this one does not
  write; every other entry stays. A non-empty folder without the marker is refused unless the
  caller passes ``overwrite=True`` (``--overwrite``), and even then only same-named files are
  replaced: nothing is deleted.
* Bad targets fail at once, with one line naming the cause (``OutputError``): an existing file,
  the filesystem root, the current folder or one above it, a folder that cannot be created or
  written. ``prepare_output`` runs these checks *before* an hour-long simulation, and the
  returned ``OutputTarget`` re-checks when it writes (the disk may change in an hour).
* Temporaries are named ``.evgrid-tmp.<name>.<host>.<pid>.<rand>``; they are removed on every
  exit path that runs Python code (exceptions, Ctrl-C, and SIGTERM inside ``sigterm_as_exit``),
  and those of a process that no longer exists (SIGKILL, power loss) are removed by the next
  ``prepare_output``/write, only in the output folder and its parent, only this host's.

What is atomic and what is not:

* A brand-new folder appears whole: it is filled in a temporary sibling and renamed into place,
  marker included, so a reader sees no folder or the complete one.
* Re-writing an existing folder cannot be one rename without deleting what is not evgrid's, so it
  is atomic per file: every file is written to a temporary and renamed over the old one (a reader
  never sees half a file). results.json is renamed after every other file of the write, and the
  marker says ``"complete": true`` only after that, so a marker that says complete means every
  file it lists is whole and from the same write. While a re-write is in progress (milliseconds)
  the marker says ``"complete": false`` and lists the old and new names, so a crash in that window
  leaves nothing that the next write would mistake for the user's.
* ``OutputTarget.claim_folder`` (a run's ``checkpoint/``) makes the folder exist during the run;
  the final write is then a re-write, atomic per file as above.
* Not guarded: two evgrid processes writing the same folder at the same time (no lock); an
  empty writability probe left by a SIGKILL in the microseconds it exists, when it was made in
  an ancestor above the parent (the parent did not exist yet) and so is not swept.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from evgrid import __version__

#: The file that marks a folder as evgrid's and lists what evgrid wrote there.
MARKER = ".evgrid-output.json"
#: Every temporary evgrid makes next to or inside an output folder starts with this.
TMP_PREFIX = ".evgrid-tmp."
_MARKER_FORMAT = 1
#: The last file of a write: a reader that sees it new sees every other file new.
RESULTS = "results.json"
_OVERWRITE_HINT = "pass --overwrite"
#: Errors of ``fill`` that are the output's fault, reported as ``OutputError``.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES}

# This host, short: a temporary made on another machine sharing the disk is never judged by our
# process table.
_HOST = hashlib.sha1(socket.gethostname().encode(), usedforsecurity=False).hexdigest()[:8]
_TMP_RE = re.compile(
    r"^\.evgrid-tmp\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>[0-9]{1,10})\.(?P<rand>[A-Za-z0-9_]+)$"
)


class OutputError(ValueError):
    """An output folder evgrid refuses or cannot write; the message is one line for the user."""


@dataclass(frozen=True)
class Marker:
    """The content of ``MARKER``: what evgrid wrote in the folder.

    ``files`` are the result files of the last write (a re-write may remove those it does not
    write again); ``folders`` are sub-folders claimed with ``OutputTarget.claim_folder``, kept by
    every write until ``OutputTarget.remove_evgrid_path`` removes them. ``complete`` is true once
    a write has put every listed file in place.
    """

    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    complete: bool = False
    version: str = __version__
    written_at: str = ""

    def owns(self, name: str) -> bool:
        return name in self.files or name in self.folders

    def to_json(self) -> dict[str, object]:
        return {
            "evgrid_output": _MARKER_FORMAT,
            "complete": self.complete,
            "files": sorted(self.files),
            "folders": sorted(self.folders),
            "version": self.version,
            "written_at": self.written_at,
        }


def read_marker(folder: Path) -> Marker | None:
    """The marker of ``folder``, or None if it has none or it is not one evgrid wrote.

    A marker that does not parse, is not a regular file, or lists a name that is not a plain
    entry of the folder (``../x``, ``a/b``) counts as none: it could point evgrid at files it
    never wrote, and the only thing a marker grants is permission to delete.
    """
    path = Path(folder) / MARKER
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("evgrid_output") != _MARKER_FORMAT:
        return None
    lists: list[tuple[str, ...]] = []
    for value in (data.get("files"), data.get("folders", [])):
        if not isinstance(value, list) or not all(
            isinstance(n, str) and _is_plain_name(n) for n in value
        ):
            return None
        lists.append(tuple(value))
    return Marker(
        files=lists[0],
        folders=lists[1],
        complete=data.get("complete") is True,
        version=str(data.get("version", "")),
        written_at=str(data.get("written_at", "")),
    )


def _is_plain_name(name: str) -> bool:
    """A single entry name evgrid may own: no separators, not ``.``/``..``, not its own files."""
    return (
        bool(name)
        and name not in {".", ".."}
        and "/" not in name
        and os.sep not in name
        and "\0" not in name
        and name != MARKER
        and not name.startswith(TMP_PREFIX)
    )


def _check_name(name: str) -> None:
    if not _is_plain_name(name):
        raise ValueError(f"{name!r} is not a plain file or folder name evgrid can own")


# --------------------------------------------------------------------------- temporaries


def tmp_prefix(name: str, pid: int | None = None) -> str:
    """``.evgrid-tmp.<name>.<host>.<pid>.``: recognisable, and tells whether its writer lives
    (``pid`` defaults to this process; a random suffix follows)."""
    return f"{TMP_PREFIX}{name[:100]}.{_HOST}.{os.getpid() if pid is None else pid}."


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists here; anything but a definite "no such process" counts as alive."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or a pid we cannot judge: leave its files alone
    return True


def _remove_entry(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder tree; missing is fine."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def cleanup_stale_temps(folder: Path) -> list[Path]:
    """Remove evgrid temporaries in ``folder`` whose writer process is gone; return them.

    Only names matching ``.evgrid-tmp.<name>.<host>.<pid>.<rand>`` made on this host are
    considered, and only when ``os.kill(pid, 0)`` says the process does not exist: a live
    writer's staging folder is never touched (a recycled pid only delays the clean-up).
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None or m["host"] != _HOST or _pid_alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        _remove_entry(path)
        removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; some filesystems cannot, which only costs durability."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_marker(folder: Path, marker: Marker) -> None:
    """Replace ``folder``'s marker in one rename (a reader sees the old one or the new one)."""
    marker = Marker(
        files=marker.files,
        folders=marker.folders,
        complete=marker.complete,
        version=__version__,
        written_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(MARKER), dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(marker.to_json(), fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the marker is an ordinary file
        os.replace(tmp, folder / MARKER)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- the target


@dataclass(frozen=True)
class _State:
    """What is at the output path now: nothing, or a folder (with evgrid's marker or not)."""

    exists: bool
    marker: Marker | None = None
    empty: bool = True


@dataclass
class OutputTarget:
    """A checked output folder; ``write`` fills it, ``claim_folder`` gives a run a sub-folder.

    Made by ``prepare_output``. ``path`` is absolute and resolved (a later ``chdir`` does not move
    it); ``display`` is the path as the user gave it, used in messages.
    """

    path: Path
    display: str
    overwrite: bool = False
    files: tuple[str, ...] = ()
    label: str = "--out"

    # ---------------------------------------------------------------- checks

    def _fail(self, why: str) -> OutputError:
        return OutputError(f"{self.label} {self.display}: {why}")

    def _inspect(self) -> _State:
        """Classify the path now; raise ``OutputError`` for anything evgrid must not write to."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return _State(exists=False)
        except NotADirectoryError:
            return _State(exists=False)  # a file above it: reported by _check_creatable
        except OSError as exc:
            raise self._fail(f"cannot access: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise self._fail("is a file, not a folder")
        try:
            names = [n for n in os.listdir(self.path) if not n.startswith(TMP_PREFIX)]
        except OSError as exc:
            raise self._fail(f"cannot read folder: {exc.strerror}") from None
        marker = read_marker(self.path)
        state = _State(exists=True, marker=marker, empty=not names)
        if marker is None and not state.empty and not self.overwrite:
            raise self._fail(
                f"folder is not empty and was not written by evgrid (no {MARKER}); choose a new "
                f"folder, or {_OVERWRITE_HINT} to write into it (replaces same-named files, "
                "deletes nothing)"
            )
        return state

    def _check_conflicts(self, state: _State, names: Iterable[str]) -> None:
        """Refuse to replace a folder, or a file evgrid did not write unless ``overwrite``."""
        if not state.exists:
            return
        owned = state.marker.files if state.marker is not None else ()
        claimed = state.marker.folders if state.marker is not None else ()
        for name in names:
            try:
                st = (self.path / name).lstat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._fail(f"cannot access {name}: {exc.strerror}") from None
            if stat.S_ISDIR(st.st_mode) or name in claimed:
                raise self._fail(
                    f"{name} is a folder there; evgrid writes a file of that name and does not "
                    "delete folders it did not write"
                )
            if name not in owned and not self.overwrite:
                raise self._fail(
                    f"{name} exists and was not written by evgrid; {_OVERWRITE_HINT} to replace it"
                )

    def _check_creatable(self) -> None:
        """For a folder that does not exist yet: can its nearest existing ancestor take it?"""
        ancestor = self.path.parent
        while True:
            try:
                st = ancestor.stat()
                break
            except (FileNotFoundError, NotADirectoryError):
                ancestor = ancestor.parent
            except OSError as exc:
                raise self._fail(f"cannot create folder: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise self._fail(f"cannot create folder: {ancestor} is a file, not a folder")
        self._probe(ancestor, "cannot create folder")

    def _probe(self, folder: Path, what: str) -> None:
        """Create and remove a temporary in ``folder``: the only honest test of writability
        (permission bits say nothing of read-only mounts, ACLs or root)."""
        try:
            probe = tempfile.mkdtemp(prefix=tmp_prefix(self.path.name), dir=folder)
        except OSError as exc:
            raise self._fail(f"{what}: {exc.strerror}") from None
        with contextlib.suppress(OSError):
            os.rmdir(probe)

    def _sweep(self) -> None:
        """Remove temporaries of dead evgrid processes in the folder and next to it."""
        cleanup_stale_temps(self.path.parent)
        cleanup_stale_temps(self.path)  # nothing to do if it is not a folder (yet)

    def _mark(self, folder: Path, marker: Marker) -> None:
        try:
            _write_marker(folder, marker)
        except OSError as exc:
            raise self._fail(f"cannot write {MARKER}: {exc.strerror}") from None

    def check(self, files: Iterable[str] = ()) -> None:
        """All of ``prepare_output``'s checks, again (cheap; ``write`` calls it itself)."""
        self._sweep()
        state = self._inspect()
        if state.exists:
            self._probe(self.path, "cannot write to folder")
            self._check_conflicts(state, [*self.files, *files])
        else:
            self._check_creatable()

    # ---------------------------------------------------------------- writing

    def write(self, fill: Callable[[Path], None], *, last: str = RESULTS) -> Path:
        """Call ``fill(folder)`` to write plain files into a private temporary folder, then move
        them into ``path`` (see the module docstring for what is atomic); return ``path``.

        ``last`` (results.json) is moved after every other file. A file listed in the previous
        marker and not written now is removed; folders claimed with ``claim_folder`` stay; no
        other entry is touched. If ``fill`` raises, nothing in ``path`` has changed and the
        temporary is gone.
        """
        self._sweep()
        state = self._inspect()
        if state.exists:
            self._check_conflicts(state, self.files)
            stage_parent = self.path  # same filesystem as the files it replaces
            stage_name = "stage"
        else:
            self._check_creatable()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._fail(f"cannot create folder: {exc.strerror}") from None
            stage_parent = self.path.parent
            stage_name = self.path.name
        try:
            stage = Path(tempfile.mkdtemp(prefix=tmp_prefix(stage_name), dir=stage_parent))
        except OSError as exc:
            raise self._fail(f"cannot write to folder: {exc.strerror}") from None
        try:
            try:
                fill(stage)
            except OSError as exc:
                if exc.errno not in _DISK_ERRORS:
                    raise
                raise self._fail(f"cannot write: {exc.strerror}") from exc
            names = self._staged_names(stage)
            for name in names:
                _fsync_file(stage / name)
            if not state.exists and self._rename_new(stage, names):
                return self.path
            self._commit_in_place(stage, names, last)
        finally:
            _remove_entry(stage)  # already renamed away when the folder was new
        return self.path

    def _staged_names(self, stage: Path) -> list[str]:
        names = []
        for entry in os.scandir(stage):
            if not _is_plain_name(entry.name) or not entry.is_file(follow_symlinks=False):
                raise self._fail(
                    f"the writer made {entry.name!r}: only plain files other than {MARKER} and "
                    f"{TMP_PREFIX}* can be written (sub-folders: claim_folder)"
                )
            names.append(entry.name)
        return names

    def _rename_new(self, stage: Path, names: list[str]) -> bool:
        """Rename the staged folder to ``path`` if nothing took that name meanwhile.

        ``rename`` never replaces a non-empty folder or a file, so a folder that appeared during
        the run is not clobbered: it is handled by the in-place write instead (False).
        """
        self._mark(stage, Marker(files=tuple(names), complete=True))
        os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is an ordinary folder
        try:
            os.rename(stage, self.path)
        except OSError as exc:
            if exc.errno not in {errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR}:
                raise self._fail(f"cannot create folder: {exc.strerror}") from None
            (stage / MARKER).unlink()
            return False
        _fsync_dir(self.path.parent)
        return True

    def _commit_in_place(self, stage: Path, names: list[str], last: str) -> None:
        """Move the staged files into the existing folder one rename each, ``last`` last, then
        drop the previous write's files that this one did not write, then mark it complete."""
        state = self._inspect()  # the folder may have changed while ``fill`` ran
        if not state.exists:
            raise self._fail("the folder disappeared while the results were being written")
        self._check_conflicts(state, names)
        old = state.marker or Marker()
        new = set(names)
        # Claim the new names before moving anything in: a crash from here on leaves every file
        # of this write listed as evgrid's, so the next write replaces them instead of refusing.
        self._mark(self.path, Marker(files=tuple(sorted(new | set(old.files))), folders=old.folders))
        for name in sorted(names, key=lambda n: (n == last, n)):
            try:
                os.replace(stage / name, self.path / name)
            except OSError as exc:
                raise self._fail(f"cannot write {name}: {exc.strerror}") from None
        for name in sorted(set(old.files) - new):
            path = self.path / name
            with contextlib.suppress(OSError):
                if not stat.S_ISDIR(path.lstat().st_mode):  # a folder there now is not ours
                    path.unlink()
        self._mark(self.path, Marker(files=tuple(sorted(new)), folders=old.folders, complete=True))
        _fsync_dir(self.path)

    # ---------------------------------------------------------------- sub-folders

    def claim_folder(self, name: str) -> Path:
        """Create ``path/name`` (e.g. ``checkpoint``) as evgrid's and return it, creating the
        output folder itself now if needed (so a run can keep state in it before the results).

        The name is recorded in the marker, so every later write keeps the folder and
        ``remove_evgrid_path(name)`` may delete it. Claiming a folder the marker already lists
        returns it untouched (a resumed run finds its checkpoint). An entry of that name that
        evgrid did not make is refused, even with ``overwrite`` (it would have to be deleted).
        """
        _check_name(name)
        self._sweep()
        state = self._inspect()
        sub = self.path / name
        if not state.exists:
            self._check_creatable()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                stage = Path(
                    tempfile.mkdtemp(prefix=tmp_prefix(self.path.name), dir=self.path.parent)
                )
            except OSError as exc:
                raise self._fail(f"cannot create folder: {exc.strerror}") from None
            try:
                (stage / name).mkdir()
                self._mark(stage, Marker(folders=(name,)))
                os.chmod(stage, 0o777 & ~_umask())
                try:
                    os.rename(stage, self.path)
                except OSError as exc:
                    if exc.errno not in {errno.EEXIST, errno.ENOTEMPTY}:
                        raise self._fail(f"cannot create folder: {exc.strerror}") from None
                    return self.claim_folder(name)  # appeared meanwhile: claim inside it
                _fsync_dir(self.path.parent)
                return sub
            finally:
                _remove_entry(stage)
        marker = state.marker or Marker()
        if name in marker.folders:
            sub.mkdir(exist_ok=True)
            return sub
        if name in marker.files or sub.exists() or sub.is_symlink():
            raise self._fail(
                f"{name} exists and was not made by evgrid as a folder; evgrid will not use it"
            )
        self._probe(self.path, "cannot write to folder")
        self._mark(
            self.path,
            Marker(files=marker.files, folders=(*marker.folders, name), complete=marker.complete),
        )
        try:
            sub.mkdir()
        except OSError as exc:
            raise self._fail(f"cannot create {name}: {exc.strerror}") from None
        return sub

    def remove_evgrid_path(self, name: str) -> bool:
        """Delete ``path/name`` if the marker lists it as evgrid's (a finished run's
        ``checkpoint``); refuse anything else. Return whether something was there to delete."""
        _check_name(name)
        marker = read_marker(self.path)
        if marker is None or not marker.owns(name):
            raise self._fail(f"{name} is not listed in {MARKER}: evgrid removes only what it wrote")
        path = self.path / name
        existed = path.exists() or path.is_symlink()
        _remove_entry(path)  # before the marker: a crash leaves a listed name that is missing
        self._mark(
            self.path,
            Marker(
                files=tuple(n for n in marker.files if n != name),
                folders=tuple(n for n in marker.folders if n != name),
                complete=marker.complete,
            ),
        )
        return existed


def prepare_output(
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    files: Iterable[str] = (),
    label: str = "--out",
) -> OutputTarget:
    """Check ``out`` before any work is done; return the target that later writes it.

    Raises ``OutputError`` (one line, starting with ``label`` and the path) for the filesystem
    root, the current folder or one above it, an existing file, a non-empty folder evgrid did
    not write (unless ``overwrite``), a folder that cannot be created or written, and a name in
    ``files`` (what the caller will write) that would replace a file evgrid did not write.

    It creates nothing that stays: writability is tested by making and removing a temporary
    (in the folder, or in its nearest existing ancestor). Not creating the folder keeps a new
    folder's appearance atomic (it is renamed into place with its results) and leaves no empty
    folder behind when the run fails; a run that needs the folder early asks for it with
    ``OutputTarget.claim_folder``. Stale temporaries of dead evgrid processes are removed.
    """
    display = os.fspath(out)
    try:
        path = Path(out).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise OutputError(f"{label} {display}: cannot resolve the path: {exc}") from None
    target = OutputTarget(
        path=path, display=display, overwrite=overwrite, files=tuple(files), label=label
    )
    for name in target.files:
        _check_name(name)
    if path.parent == path:
        raise target._fail(
            f"is the filesystem root; give results a folder of their own, e.g. {label} runs/latest"
        )
    if path.name.startswith(TMP_PREFIX):
        raise target._fail(f"names starting with {TMP_PREFIX} are evgrid's temporaries")
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current folder was deleted: nothing to protect
        cwd = None
    if cwd is not None and (path == cwd or path in cwd.parents):
        where = "is the current folder" if path == cwd else f"is above the current folder {cwd}"
        raise target._fail(f"{where}; give results a folder of their own, e.g. {label} runs/latest")
    target.check()
    return target


# --------------------------------------------------------------------------- signals


@contextlib.contextmanager
def sigterm_as_exit(code: int = 128 + signal.SIGTERM) -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(code)`` so ``finally`` blocks run.

    Python's default for SIGTERM is to die at once, leaving temporaries behind (they would only
    be removed by the next run). Only the main thread can install handlers; elsewhere this is a
    no-op. The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(code)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
