"""Checkpoints: a run that is killed continues where it stopped, never repeating a step.

``evgrid run`` and ``evgrid coordinator`` keep a ``checkpoint/`` folder inside their output
folder while they run:

* ``run.json``: what was asked (the command, the scenario as validated, the seed, the policies,
  the routing and the options) and the fingerprint of the drawn sessions, so ``--resume DIR``
  needs nothing else and refuses a checkpoint whose sessions it cannot reproduce;
* ``done/<policy>.npz``: every policy that finished, its executed run and its KPIs, so the
  baselines already computed are never lost;
* ``progress.npz``: the policy in flight, after its last executed step: the simulator's state
  (every array that changes as it steps) and the controller's (``state_dict``: for the
  coordinated policy, ρ, the duals, each station's envelope, the ADMM history and the warm
  starts), written after every step of a controller that has state;
* ``rows/<policy>/*.npy``: the simulator's per-step arrays (executed power, the step records),
  written in place row by row: a step adds its row, so a checkpoint costs what the step
  changed, not the whole run so far (rewriting them every step made a week at 5 min write 67 GB).

``progress.npz`` is the commit: it is written to a temporary name, flushed to disk and renamed
over the old one, after the rows up to its step are flushed, so a checkpoint is the step before
or the step after, never half of one, also after a power loss (rows beyond its step are
ignored). A run resumed from it continues at the step after the checkpoint's, so no step is
executed twice by the simulator; an edge node refuses to apply a step twice on its side too.

Arrays only, read back with ``allow_pickle=False``: resuming from a folder never runs code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np

from evgrid.envs.simulator import SimResult, Simulator, StepRecord
from evgrid.envs.world import World

FORMAT = 1
RUN = "run.json"
PROGRESS = "progress.npz"
DONE = "done"
ROWS = "rows"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed (one line, names the folder and the reason)."""


@dataclass(frozen=True)
class Progress:
    """The policy in flight: its name, the step it continues at, and both states."""

    policy: str
    step: int
    sim: dict[str, np.ndarray]
    controller: dict[str, np.ndarray]


def _atomic(path: Path, write: Any) -> None:
    """Write ``path`` whole or not at all: a temporary, flushed to disk, renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _atomic(path, lambda fh: np.savez(fh, **cast(dict[str, Any], arrays)))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint file ({exc}); start a new run "
                              "instead") from None


class Checkpoint:
    """One run's ``checkpoint/`` folder (module docstring)."""

    def __init__(self, folder: Path, spec: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.spec = spec
        self._rows: dict[str, np.memmap] = {}  # the policy in flight's per-step arrays
        self._rows_policy = ""
        self._rows_done = 0  # rows written so far

    @classmethod
    def start(cls, folder: Path, spec: dict[str, Any]) -> Checkpoint:
        """Begin a fresh checkpoint in ``folder`` (anything of an earlier run there is reset)."""
        folder = Path(folder)
        (folder / DONE).mkdir(parents=True, exist_ok=True)
        for old in (folder / DONE).glob("*.npz"):
            old.unlink()
        (folder / PROGRESS).unlink(missing_ok=True)
        shutil.rmtree(folder / ROWS, ignore_errors=True)
        spec = {"format": FORMAT, **spec}
        _atomic(folder / RUN, lambda fh: fh.write(json.dumps(spec, indent=1).encode()))
        return cls(folder, spec)

    @classmethod
    def open(cls, folder: Path) -> Checkpoint:
        """An existing checkpoint; ``CheckpointError`` names what is wrong with it."""
        folder = Path(folder)
        try:
            spec = json.loads((folder / RUN).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{folder}: no checkpoint here (no {RUN}): nothing to "
                                  "resume; a finished run removes its checkpoint") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{folder / RUN}: unreadable ({exc})") from None
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise CheckpointError(f"{folder / RUN}: not a checkpoint of this evgrid "
                                  f"(format {spec.get('format') if isinstance(spec, dict) else '?'}"
                                  f", expected {FORMAT})")
        return cls(folder, spec)

    def note(self, **values: Any) -> None:
        """Add facts learnt once the run started (e.g. the sessions' fingerprint)."""
        self.spec.update(values)
        _atomic(self.folder / RUN, lambda fh: fh.write(json.dumps(self.spec, indent=1).encode()))

    def check_sessions(self, fingerprint: str) -> None:
        got = self.spec.get("sessions")
        if got is not None and got != fingerprint:
            raise CheckpointError(
                f"{self.folder}: the sessions drawn now differ from the checkpoint's (a changed "
                "scenario file, sessions_csv or evgrid version): start a new run instead")

    # -- finished policies ----------------------------------------------------------------------
    def finished(self) -> list[str]:
        """Policies that finished, in the order they did."""
        return [p for p in self.spec.get("finished", []) if self._done_path(p).exists()]

    def _safe(self, policy: str) -> str:
        """A file name for a policy name, one to one ("a.b" and "a_b" stay apart)."""
        return "".join(c if c.isalnum() or c in "-_" else f"%{ord(c):02x}" for c in policy)

    def _done_path(self, policy: str) -> Path:
        return self.folder / DONE / f"{self._safe(policy)}.npz"

    def save_finished(self, result: SimResult, kpis: dict[str, float]) -> None:
        arrays = {f"record.{f.name}": getattr(result.record, f.name) for f in fields(StepRecord)}
        arrays.update(delivered_kwh=result.delivered_kwh, connect_step=result.connect_step,
                      slot=result.slot, ev_at_charger=result.ev_at_charger,
                      power_kw=result.power_kw,
                      meta=np.array(json.dumps({"policy": result.policy, "kpis": kpis})))
        _save_npz(self._done_path(result.policy), arrays)
        self.note(finished=[*self.finished(), result.policy])
        (self.folder / PROGRESS).unlink(missing_ok=True)
        self._rows, self._rows_policy, self._rows_done = {}, "", 0
        shutil.rmtree(self.folder / ROWS, ignore_errors=True)

    def load_finished(
        self, policy: str, world: World, sessions: Any
    ) -> tuple[SimResult, dict[str, float]]:
        a = _load_npz(self._done_path(policy))
        meta = json.loads(str(a["meta"]))
        record = StepRecord(**{f.name: a[f"record.{f.name}"] for f in fields(StepRecord)})
        result = SimResult(policy=policy, world=world, sessions=sessions,
                           delivered_kwh=a["delivered_kwh"], connect_step=a["connect_step"],
                           slot=a["slot"], ev_at_charger=a["ev_at_charger"],
                           power_kw=a["power_kw"], record=record)
        return result, {k: v for k, v in meta["kpis"].items()}

    # -- the policy in flight -------------------------------------------------------------------
    def save_progress(self, policy: str, step: int, sim: dict[str, np.ndarray],
                      controller: dict[str, np.ndarray],
                      is_row: Callable[[str], bool] = Simulator.is_row_array) -> None:
        """Commit the state after ``step``: the per-step arrays' new rows in place, then
        ``progress.npz`` (module docstring)."""
        if policy != self._rows_policy:
            self._open_rows(policy, {k: v for k, v in sim.items() if is_row(k)}, create=True)
        for name, rows in self._rows.items():
            rows[self._rows_done:step] = sim[name][self._rows_done:step]
            rows.flush()
        self._rows_done = step
        arrays = {f"sim/{k}": v for k, v in sim.items() if not is_row(k)}
        arrays.update({f"ctrl/{k}": v for k, v in controller.items()})
        arrays["meta"] = np.array(json.dumps({"policy": policy, "step": step,
                                              "rows": sorted(self._rows)}))
        _save_npz(self.folder / PROGRESS, arrays)

    def _open_rows(self, policy: str, like: dict[str, np.ndarray], *, create: bool) -> None:
        folder = self.folder / ROWS / self._safe(policy)
        if create:
            shutil.rmtree(self.folder / ROWS, ignore_errors=True)
            folder.mkdir(parents=True)
        rows: dict[str, np.memmap] = {}
        for name, a in like.items():
            path = folder / f"{self._safe(name)}.npy"
            rows[name] = (np.lib.format.open_memmap(path, mode="w+", dtype=a.dtype,
                                                    shape=a.shape) if create
                          else np.load(path, mmap_mode="r+", allow_pickle=False))
        self._rows = rows
        self._rows_policy = policy

    def load_progress(self) -> Progress | None:
        path = self.folder / PROGRESS
        if not path.exists():
            return None
        a = _load_npz(path)
        meta = json.loads(str(a.pop("meta")))
        step, policy = int(meta["step"]), str(meta["policy"])
        sim = {k.removeprefix("sim/"): v for k, v in a.items() if k.startswith("sim/")}
        try:
            self._open_rows(policy, dict.fromkeys(meta["rows"], np.zeros(0)), create=False)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.folder}: the per-step rows of {policy!r} are "
                                  f"unreadable ({exc}); start a new run instead") from None
        for name, rows in self._rows.items():
            full = np.zeros_like(rows)
            full[:step] = rows[:step]  # rows past the committed step are not the run's
            sim[name] = full
        self._rows_done = step
        return Progress(
            policy=policy, step=step, sim=sim,
            controller={k.removeprefix("ctrl/"): v for k, v in a.items()
                        if k.startswith("ctrl/")},
        )
