"""Run several policies on the same realised world and compare them with the offline optimum.

Every policy sees the same sessions (same seed, same draw), and the offline LP is solved for
exactly those sessions, so the KPI columns are comparable and the gap is meaningful.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evgrid.agents.policies import make_policy
from evgrid.envs.interface import Controller, Stateful
from evgrid.envs.kpis import breakdown, compute_kpis
from evgrid.envs.sessions import Sessions
from evgrid.envs.simulator import SimResult, Simulator, nearest_free_router
from evgrid.envs.world import World, build_world
from evgrid.evaluation.checkpoint import Checkpoint
from evgrid.evaluation.offline import OfflineSolution, offline_optimal_run
from evgrid.scenario.schema import Scenario

OFFLINE = "offline_optimal"
#: How arriving drivers pick a facility zone: the simulator's nearest-free rule, the shares
#: the cohort agents agreed by ADMM (evgrid.agents.cohort), seed 000's allocation layer, seed
#: 003's assignment (evgrid.optim.assignment_router), seed 004's reservations and walk-ins
#: (evgrid.optim.reservation_router), or learned cohort policies.
ROUTINGS = ["nearest", "cohorts", "layered", "assignment", "assignment-radius", "reservations",
            "learned:DIR"]
#: ``--routing learned:DIR``: the cohort policies exported by ``evgrid train``.
LEARNED_ROUTING = "learned:"


def check_routing(routing: str) -> None:
    """Raise ValueError (one line) for an unknown routing or a learned folder with no bundle."""
    if routing.startswith(LEARNED_ROUTING):
        from evgrid.agents.bundle import check_bundle

        check_bundle(Path(routing[len(LEARNED_ROUTING):]), "cohort")
    elif routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}: choose from {ROUTINGS}")

#: Called as work advances: (what, done, total).
Progress = Callable[[str, int, int], None]


@dataclass
class Experiment:
    """Results of one comparison: KPIs per policy, the bound, and the raw runs for plotting."""

    scenario: Scenario
    seed: int
    runs: dict[str, SimResult] = field(default_factory=dict)
    kpis: dict[str, dict[str, float]] = field(default_factory=dict)
    offline: OfflineSolution | None = None
    routing: str = "nearest"
    claims: dict[str, float] | None = None

    def gap_to_optimal_pct(self) -> dict[str, float]:
        """(objective − optimal objective) / |optimal objective| per policy, in %."""
        if OFFLINE not in self.kpis:
            return {}
        best = self.kpis[OFFLINE]["objective"]
        return {
            name: 100.0 * (k["objective"] - best) / max(abs(best), 1e-9)
            for name, k in self.kpis.items()
            if name != OFFLINE
        }

    def to_json(self) -> dict[str, Any]:
        offline: dict[str, Any] = dict(self.kpis.get(OFFLINE, {}))
        if self.offline is not None:
            offline.update(
                solver=self.offline.solver,
                solve_s=self.offline.solve_s,
                n_variables=self.offline.n_variables,
                solver_objective=self.offline.solver_objective,
            )
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "steps": self.scenario.steps,
            "dt_min": self.scenario.dt_min,
            "routing": self.routing,
            **({"cohort_claims": self.claims} if self.claims else {}),
            "policies": {n: k for n, k in self.kpis.items() if n != OFFLINE},
            "offline_optimal": offline,
            "gap_to_optimal_pct": self.gap_to_optimal_pct(),
            "breakdown": {n: breakdown(r) for n, r in self.runs.items()},
        }


def run_experiment(
    scenario: Scenario,
    policies: Sequence[str | Controller],
    *,
    seed: int | None = None,
    sessions: Sessions | None = None,
    world: World | None = None,
    with_offline: bool = True,
    progress: Progress | None = None,
    factory: Callable[[str, World], Controller] = make_policy,
    routing: str = "nearest",
    cohort_host: Callable[..., Any] | None = None,
    checkpoint: Checkpoint | None = None,
) -> Experiment:
    """Run each policy over the horizon, then the offline-optimal bound on the same sessions.

    With ``checkpoint``, finished policies are kept there and taken from there (a resumed run
    does not run them again), and a controller with state (``state_dict``) is checkpointed
    after every step and continues from its last one (``evgrid.evaluation.checkpoint``).
    Policies are built only when they run, so a finished one costs nothing on resume."""
    if not policies:
        raise ValueError("give at least one policy")
    check_routing(routing)
    world = world if world is not None else build_world(scenario)
    router = nearest_free_router
    claims = None
    if routing == "cohorts":
        from evgrid.agents.cohort import cohort_router

        router, claims = cohort_router(world, seed=scenario.seed if seed is None else seed,
                                       host=cohort_host)
    elif routing == "layered":
        from evgrid.optim.layered_router import RUN_DEFAULTS, LayeredRouter

        router = LayeredRouter(world, seed=scenario.seed if seed is None else seed,
                               **RUN_DEFAULTS)
    elif routing in ("assignment", "assignment-radius"):
        from evgrid.optim.assignment_router import AssignmentRouter

        router = AssignmentRouter(world, seed=scenario.seed if seed is None else seed,
                                  radius=routing == "assignment-radius")
    elif routing == "reservations":
        from evgrid.optim.reservation_router import ReservationRouter

        router = ReservationRouter(world, seed=scenario.seed if seed is None else seed)
    elif routing.startswith(LEARNED_ROUTING):
        from evgrid.agents.learned import LearnedRouter

        router = LearnedRouter(world, Path(routing[len(LEARNED_ROUTING):]))
    sim = Simulator(scenario, seed=seed, sessions=sessions, world=world, router=router)
    # learned:DIR is reported as "learned", coordinated+learned:DIR as "coordinated+learned"
    # (a KPI table column, not a path)
    names = [p.split(":", 1)[0] if isinstance(p, str) else p.name for p in policies]
    if len(set(names)) != len(names) or OFFLINE in names:
        raise ValueError(f"policy names must be unique and not {OFFLINE!r}: got {names}")
    done: list[str] = []
    in_flight = None
    if checkpoint is not None:
        fingerprint = sim.sessions_fingerprint()
        checkpoint.check_sessions(fingerprint)
        checkpoint.note(sessions=fingerprint)
        done = checkpoint.finished()
        in_flight = checkpoint.load_progress()
    exp = Experiment(scenario=scenario, seed=sim.seed, routing=routing)
    if claims is not None:
        exp.claims = {"claims_iterations": claims.iterations, "claims_converged": claims.converged,
                      "claims_violation_rel": claims.violation_rel}
    for name, p in zip(names, policies, strict=True):

        def tick(step: int, total: int, name: str = name) -> None:
            if progress is not None:
                progress(name, step, total)

        if checkpoint is not None and name in done:
            exp.runs[name], exp.kpis[name] = checkpoint.load_finished(name, sim.world,
                                                                      sim.sessions)
            tick(sim.world.steps, sim.world.steps)
            continue
        ctrl = factory(p, sim.world) if isinstance(p, str) else p
        resume, after = None, None
        stateful = ctrl if isinstance(ctrl, Stateful) else None
        if in_flight is not None and in_flight.policy == name and stateful is not None:
            resume = in_flight.sim
            stateful.load_state_dict(in_flight.controller)
        if checkpoint is not None and stateful is not None:

            def after(s: Simulator, name: str = name, c: Stateful = stateful,
                      ck: Checkpoint = checkpoint) -> None:
                ck.save_progress(name, s.t, s.state_dict(), c.state_dict())

        result = sim.run(ctrl, progress=tick, resume=resume, after_step=after)
        exp.runs[name] = result
        exp.kpis[name] = compute_kpis(result)
        summary = getattr(ctrl, "summary", None)
        if callable(summary):
            exp.kpis[name].update(summary())
        if checkpoint is not None:
            checkpoint.save_finished(result, exp.kpis[name])
    if with_offline:
        if progress is not None:
            progress(OFFLINE, 0, 1)
        reference = next(iter(exp.runs.values()))
        result, exp.offline = offline_optimal_run(sim, reference)
        exp.runs[OFFLINE] = result
        exp.kpis[OFFLINE] = compute_kpis(result)
        if progress is not None:
            progress(OFFLINE, 1, 1)
    return exp
