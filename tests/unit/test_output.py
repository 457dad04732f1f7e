"""The output folder behind ``--out``: never deletes what evgrid did not write, refuses bad
targets before the run with one line, and leaves no temporaries behind (not even after kill -9).

Real files in ``tmp_path``, real processes for dead pids and kills: no mocks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evgrid.evaluation.output import (
    MARKER,
    TMP_PREFIX,
    OutputError,
    prepare_output,
    read_marker,
    tmp_prefix,
)


def writes(files: dict[str, str]) -> Callable[[Path], None]:
    """A fill that writes ``files`` (name -> text)."""

    def fill(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).write_text(text)

    return fill


def temps(*folders: Path) -> list[Path]:
    """Every evgrid temporary in ``folders`` (missing folders have none)."""
    return [p for f in folders if f.is_dir() for p in f.iterdir() if p.name.startswith(TMP_PREFIX)]


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- writing


def test_a_new_folder_appears_whole_with_its_marker(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "latest"  # the parent is created too
    target = prepare_output(out)
    assert not out.exists(), "prepare_output must leave no folder behind before the run"
    assert target.path == out.resolve()
    assert target.write(writes({"results.json": "{}", "a.csv": "1"})) == out.resolve()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.csv", "results.json"]
    marker = read_marker(out)
    assert marker is not None and marker.complete
    assert set(marker.files) == {"a.csv", "results.json"} and marker.folders == ()
    data = json.loads((out / MARKER).read_text())
    assert data["version"] and data["written_at"]
    assert temps(tmp_path / "runs", out) == []


def test_a_user_file_in_an_evgrid_folder_survives_a_rewrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_output(out).write(writes({"results.json": "1", "old.png": "old"}))
    (out / "notes.txt").write_text("mine")
    prepare_output(out).write(writes({"results.json": "2", "new.png": "new"}))
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "results.json").read_text() == "2"
    assert not (out / "old.png").exists(), "a file evgrid wrote and no longer writes goes"
    marker = read_marker(out)
    assert marker is not None and marker.complete
    assert set(marker.files) == {"results.json", "new.png"}, "the user's file is never listed"
    assert temps(tmp_path, out) == []


def test_a_same_named_user_file_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_output(out).write(writes({"results.json": "1"}))
    (out / "plot.png").write_text("the user's")
    with pytest.raises(OutputError, match=r"plot\.png exists and was not written by evgrid"):
        prepare_output(out, files=["results.json", "plot.png"])  # before the run
    target = prepare_output(out)
    with pytest.raises(OutputError, match=r"plot\.png exists"):
        target.write(writes({"results.json": "2", "plot.png": "evgrid's"}))  # and at the end
    assert (out / "plot.png").read_text() == "the user's"
    assert (out / "results.json").read_text() == "1", "a refused write changes nothing"
    assert temps(tmp_path, out) == []


def test_a_folder_evgrid_did_not_write_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "results.json").write_text("my own results")
    with pytest.raises(OutputError) as err:
        prepare_output(out)
    assert str(err.value).startswith(f"--out {out}: folder is not empty and was not written by")
    assert "\n" not in str(err.value)

    prepare_output(out, overwrite=True).write(writes({"results.json": "evgrid", "p.png": "x"}))
    assert (out / "thesis.tex").read_text() == "years of work", "overwrite never deletes"
    assert (out / "results.json").read_text() == "evgrid", "overwrite replaces same-named files"
    marker = read_marker(out)
    assert marker is not None and set(marker.files) == {"results.json", "p.png"}

    # Now evgrid's (it has the marker): a plain re-write is accepted and still keeps the thesis.
    prepare_output(out).write(writes({"results.json": "again"}))
    assert (out / "thesis.tex").read_text() == "years of work"
    assert not (out / "p.png").exists()


def test_an_empty_folder_is_accepted(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    prepare_output(out).write(writes({"results.json": "{}"}))
    assert (out / "results.json").read_text() == "{}"
    assert read_marker(out) is not None


def test_a_forged_marker_cannot_point_outside_the_folder(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("user")
    (out / MARKER).write_text(json.dumps({"evgrid_output": 1, "files": ["../victim.txt"]}))
    assert read_marker(out) is None
    with pytest.raises(OutputError, match="not written by evgrid"):
        prepare_output(out)
    prepare_output(out, overwrite=True).write(writes({"results.json": "{}"}))
    assert victim.read_text() == "keep" and (out / "x").read_text() == "user"


# --------------------------------------------------------------------------- refusals


def test_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "results.txt"
    f.write_text("data")
    with pytest.raises(OutputError, match=r": is a file, not a folder$"):
        prepare_output(f)
    assert f.read_text() == "data"


def test_the_root_is_refused() -> None:
    with pytest.raises(OutputError, match=r"^--out /: is the filesystem root"):
        prepare_output("/")


def test_the_current_folder_and_its_ancestors_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    (here / "code.py").write_text("x")
    monkeypatch.chdir(here)
    for out in [".", str(here), "./", "../b"]:
        with pytest.raises(OutputError, match="is the current folder"):
            prepare_output(out, overwrite=True)  # even with overwrite
    for out in ["..", str(tmp_path), "../.."]:
        with pytest.raises(OutputError, match="is above the current folder"):
            prepare_output(out, overwrite=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "code.py"]


def test_a_folder_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError) as err:
        prepare_output(tmp_path / "f" / "out" / "x")
    assert str(err.value) == (
        f"--out {tmp_path / 'f' / 'out' / 'x'}: cannot create folder: {tmp_path / 'f'} is a file, "
        "not a folder"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through 0o500; see the under-a-file test")
def test_an_unwritable_parent_is_refused_before_the_run(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    existing = parent / "old"
    existing.mkdir()
    parent.chmod(0o500)
    existing.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=r"^--out .*/ro/x: cannot create folder: Permission denied$"):
            prepare_output(parent / "x")
        with pytest.raises(OutputError, match=r"cannot write to folder: Permission denied$"):
            prepare_output(existing)
    finally:
        parent.chmod(0o700)
        existing.chmod(0o700)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("error", [RuntimeError("plot failed"), KeyboardInterrupt()])
def test_a_failing_fill_changes_nothing_and_leaves_no_temp(
    tmp_path: Path, error: BaseException
) -> None:
    def boom(folder: Path) -> None:
        (folder / "results.json").write_text("{half")
        raise error

    new = tmp_path / "new"
    with pytest.raises(type(error)):
        prepare_output(new).write(boom)
    assert list(tmp_path.iterdir()) == [], "a failed first write leaves no folder at all"

    old = tmp_path / "old"
    prepare_output(old).write(writes({"results.json": "complete"}))
    before = {p.name: p.read_text() for p in old.iterdir()}
    with pytest.raises(type(error)):
        prepare_output(old).write(boom)
    assert {p.name: p.read_text() for p in old.iterdir()} == before
    assert temps(tmp_path, old) == []


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_output(out).write(writes({"results.json": "1"}))
    dead = dead_pid()
    stale_next = tmp_path / f"{tmp_prefix('out', dead)}abc123"  # a new folder's stage
    stale_inside = out / f"{tmp_prefix('stage', dead)}def456"  # a re-write's stage
    stale_file = out / f"{tmp_prefix(MARKER, dead)}ghi789"
    live = tmp_path / f"{tmp_prefix('out', os.getpid())}jkl012"
    elsewhere = tmp_path / f"{TMP_PREFIX}out.00000000.{dead}.mno345"  # another host's
    lookalike = tmp_path / f"{TMP_PREFIX}notes"  # not the pattern
    for d in [stale_next, stale_inside, live, elsewhere, lookalike]:
        d.mkdir()
        (d / "half.json").write_text("{")
    stale_file.write_text("{")

    prepare_output(out).write(writes({"results.json": "2"}))
    for p in [stale_next, stale_inside, stale_file]:
        assert not p.exists(), p
    for p in [live, elsewhere, lookalike]:
        assert (p / "half.json").exists(), p
    assert (out / "results.json").read_text() == "2"


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from evgrid.evaluation.output import prepare_output

    def fill(folder):
        (folder / "results.json").write_text("{half")
        Path(sys.argv[2]).write_text("started")
        time.sleep(60)

    prepare_output(sys.argv[1]).write(fill)
    """
)


def start_writer(tmp_path: Path, out: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A process writing ``out`` with a fill that sleeps; returns once it is mid-write."""
    flag = tmp_path / "started.flag"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(out), str(flag)])
    deadline = time.monotonic() + 30
    while not flag.exists():
        assert proc.poll() is None, "the writer died before it started writing"
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.02)
    return proc, flag


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "rewrite"])
def test_after_a_sigkill_mid_write_the_next_write_succeeds_and_cleans_up(
    tmp_path: Path, existing: bool
) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    out = parent / "out"
    if existing:
        prepare_output(out).write(writes({"results.json": "old"}))
    proc, _ = start_writer(tmp_path, out)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    assert len(temps(parent, out)) == 1, "the killed writer left its staging folder"
    if existing:
        assert (out / "results.json").read_text() == "old", "a killed write changes nothing"
    else:
        assert not out.exists()

    prepare_output(out).write(writes({"results.json": "new"}))
    assert (out / "results.json").read_text() == "new"
    assert temps(parent, out) == []


def test_sigterm_inside_sigterm_as_exit_runs_the_cleanup(tmp_path: Path) -> None:
    script = _KILLED_WRITER.replace(
        "prepare_output(sys.argv[1]).write(fill)",
        "from evgrid.evaluation.output import sigterm_as_exit\n"
        "with sigterm_as_exit():\n    prepare_output(sys.argv[1]).write(fill)",
    )
    out = tmp_path / "runs" / "out"
    flag = tmp_path / "started.flag"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out), str(flag)])
    deadline = time.monotonic() + 30
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.terminate()
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert temps(tmp_path / "runs") == [] and not out.exists()


# --------------------------------------------------------------------------- sub-folders


def test_a_claimed_checkpoint_survives_writes_until_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    target = prepare_output(out)
    ckpt = target.claim_folder("checkpoint")
    assert ckpt == out.resolve() / "checkpoint" and ckpt.is_dir()
    marker = read_marker(out)
    assert marker is not None and marker.folders == ("checkpoint",) and not marker.complete
    (ckpt / "step-10.npz").write_text("state")

    assert prepare_output(out).claim_folder("checkpoint") == ckpt, "a resumed run finds it"
    assert (ckpt / "step-10.npz").read_text() == "state"

    target.write(writes({"results.json": "{}"}))
    assert (ckpt / "step-10.npz").exists(), "the final write keeps the checkpoint"
    marker = read_marker(out)
    assert marker is not None and marker.complete and marker.folders == ("checkpoint",)

    assert target.remove_evgrid_path("checkpoint") is True
    assert not ckpt.exists()
    marker = read_marker(out)
    assert marker is not None and marker.folders == () and marker.files == ("results.json",)
    assert temps(tmp_path, out) == []


def test_remove_and_claim_refuse_what_evgrid_did_not_make(tmp_path: Path) -> None:
    out = tmp_path / "out"
    target = prepare_output(out)
    target.write(writes({"results.json": "{}"}))
    (out / "data").mkdir()
    (out / "data" / "keep.csv").write_text("x")
    with pytest.raises(OutputError, match="evgrid removes only what it wrote"):
        target.remove_evgrid_path("data")
    with pytest.raises(OutputError, match="was not made by evgrid"):
        target.claim_folder("data")
    with pytest.raises(ValueError, match="plain file or folder name"):
        target.remove_evgrid_path("../out")
    assert (out / "data" / "keep.csv").read_text() == "x"
