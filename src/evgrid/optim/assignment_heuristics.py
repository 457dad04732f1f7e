"""HASP and its three baselines for seed 003's GAP (003_48b05ca88a329b62.txt, solution method
and evaluation sections).

* :func:`hasp` — HASP steps 1–6 of 003: a GRASP population (cost-based restricted candidate
  list, then the Swap local search), fitness-proportional selection, uniform crossover
  ("inheriting random features"), mutation by swapping the stations of two EVs, the Swap
  local search (exchanges of up to four EVs) on every offspring, elitist update until
  convergence.
* :func:`tabu` — tabu search (TABU) over shifts and pairwise swaps.
* :func:`bees` — Pham's bees algorithm (BA): scouts, elite/selected sites, recruited bees
  searching a shrinking patch, site abandonment.
* :func:`differential_evolution` — "DE-SK", see its docstring for our reading.

All four share one repair (:func:`repair`: range first, then piles, re-inserting the evicted
EVs cheapest-first and by an augmenting path when no reachable pile is free), so every
returned assignment is feasible whenever the instance is, and one objective
(:func:`evgrid.optim.assignment.objective`). Each is deterministic per ``seed`` unless its
``time_limit_s`` cuts it short.

Why the Swap neighbourhood is bounded (three EVs by default, four in HASP): with unit pile
use the GAP is a transportation problem, and cancelling negative *cycles* of any length over
the m-station graph would be an exact algorithm (no improving cycle or chain of any length =
a certificate of optimality). 003's Swap "exchanges assignments between EVs"; we read that as
exchanges of a few EVs — shift, pairwise swap, 3-cycle, ejection chain (:func:`_best_move`,
O(m³) per move on the station graph) and, from ``depth`` 4 on, the best cyclic exchange or
ejection chain of up to ``depth`` EVs found by a length-bounded min-plus recursion over the
station graph (:func:`_long_move`, O(depth·m³)) — and leave longer exchanges to the GA's
recombination. ``depth`` is a hard cap, so the search stays a heuristic: on our instances a
cap of 4 alone (GRASP + local search, no GA) reaches the optimum on ~87 % of the 63 instances
of ``benchmarks/assignment.py --seeds 3``, the GA's recombination the rest. TABU uses shifts
and pairwise swaps only, its textbook neighbourhood; DE-SK's local search keeps ``depth`` 3.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from evgrid.optim.assignment import (
    Assignment,
    GapInstance,
    InfeasibleAssignment,
    check_instance,
    make_assignment,
)


class _Prep:
    """Arrays every heuristic reuses: cost with +inf off range, each EV's stations by cost."""

    def __init__(self, inst: GapInstance) -> None:
        check_instance(inst)
        self.n, self.m = inst.n, inst.m
        self.ar = np.arange(self.n)
        self.cost = np.where(inst.feasible, inst.cost, np.inf)
        self.feasible = inst.feasible
        self.cap = inst.capacity.astype(np.int64)
        self.nfeas = inst.feasible.sum(axis=1)
        self.ranked = np.argsort(self.cost, axis=1, kind="stable")  # feasible first, cheapest first
        self.rank_of = np.empty_like(self.ranked)
        self.rank_of[self.ar[:, None], self.ranked] = np.arange(self.m)[None, :]
        self.best1 = self.ranked[:, 0]
        self.c1 = self.cost[self.ar, self.best1]
        self.c2 = self.cost[self.ar, self.ranked[:, 1]] if self.m > 1 else np.full(self.n, np.inf)
        finite = self.cost[np.isfinite(self.cost)]
        self.tol = 1e-9 * max(1.0, float(np.abs(finite).max()))

    def evaluate(self, pop: np.ndarray) -> np.ndarray:
        """Objective of each row of ``pop`` [P, n] (all rows feasible)."""
        return self.cost[self.ar[None, :], pop].sum(axis=1)


# -- repair -------------------------------------------------------------------------------------
def repair(p: _Prep, x: np.ndarray) -> np.ndarray:
    """A feasible assignment close to ``x`` (range, then piles; −1 / out of range = unset).

    On an over-full station the EVs that lose least by leaving (their cheapest other reachable
    station) are evicted; unset EVs are re-inserted most-constrained first on their cheapest
    reachable station with a free pile, else by a shortest augmenting path.
    """
    x = np.asarray(x, dtype=np.int64).copy()
    x[(x < 0) | (x >= p.m)] = -1
    on = np.nonzero(x >= 0)[0]
    x[on[~np.isfinite(p.cost[on, x[on]])]] = -1
    load = np.bincount(x[x >= 0], minlength=p.m)
    for i in np.nonzero(load > p.cap)[0]:
        members = np.nonzero(x == i)[0]
        alt = np.where(p.best1[members] == i, p.c2[members], p.c1[members])
        loss = alt - p.cost[members, i]
        x[members[np.argsort(loss, kind="stable")[: load[i] - p.cap[i]]]] = -1
        load[i] = p.cap[i]
    free = np.nonzero(x < 0)[0]
    for k in free[np.argsort(p.nfeas[free], kind="stable")]:
        row = np.where(load < p.cap, p.cost[k], np.inf)
        to = int(np.argmin(row))
        if np.isfinite(row[to]):
            x[k] = to
            load[to] += 1
        else:
            _augment(p, x, load, int(k))
    return x


def _augment(p: _Prep, x: np.ndarray, load: np.ndarray, k: int) -> None:
    """Place EV k by a breadth-first augmenting path: k takes a full station whose EV moves on,
    and so on, until a station with a free pile (in place)."""
    parent: dict[int, tuple[int, int]] = {}  # station -> (previous station, EV moved from it)
    queue = deque(int(i) for i in np.nonzero(p.feasible[k])[0])
    for i in queue:
        parent[i] = (-1, k)
    while queue:
        i = queue.popleft()
        if load[i] < p.cap[i]:
            load[i] += 1
            while i >= 0:
                prev, ev = parent[i]
                x[ev] = i
                i = prev
            return
        for ev in np.nonzero(x == i)[0].tolist():
            for j in np.nonzero(p.feasible[ev])[0].tolist():
                if j not in parent:
                    parent[j] = (i, ev)
                    queue.append(j)
    raise InfeasibleAssignment(f"EV {k} cannot be placed: the piles in its range are all taken")


# -- the Swap local search -------------------------------------------------------------------
def _station_moves(p: _Prep, x: np.ndarray, load: np.ndarray,
                   gain: np.ndarray) -> np.ndarray:
    """M[i, j]: the cheapest change of moving one EV now on station i to station j."""
    order = np.argsort(x, kind="stable")
    starts = np.searchsorted(x[order], np.arange(p.m))
    busy = load > 0
    out = np.full((p.m, p.m), np.inf)
    if busy.any():
        out[busy] = np.minimum.reduceat(gain[order], starts[busy], axis=0)
    np.fill_diagonal(out, np.inf)
    return out


def _apply(p: _Prep, x: np.ndarray, load: np.ndarray, gain: np.ndarray,
           arcs: list[tuple[int, int]]) -> None:
    """Move, for each arc (i, j), the EV of station i cheapest to put on j (chosen before any
    move, so a path or cycle of arcs over distinct stations moves distinct EVs), in place."""
    evs = []
    for i, j in arcs:
        on_i = np.nonzero(x == i)[0]
        evs.append(int(on_i[np.argmin(gain[on_i, j])]))
    for (i, j), k in zip(arcs, evs, strict=True):
        x[k] = j
        load[i] -= 1
        load[j] += 1


def _best_move(p: _Prep, x: np.ndarray, load: np.ndarray, gain: np.ndarray,
               depth: int) -> tuple[float, list[tuple[int, int]]]:
    """The best exchange of up to ``depth`` EVs (change, arcs): shift (1), swap (2), and for
    depth 3 a 3-cycle or an ejection chain (i → j, an EV of j → a free pile)."""
    m = p.m
    mv = _station_moves(p, x, load, gain)
    spare = load < p.cap
    cand: list[tuple[float, list[tuple[int, int]]]] = []
    shift = np.where(spare[None, :], mv, np.inf)
    a = int(np.argmin(shift))
    cand.append((float(shift.flat[a]), [divmod(a, m)]))
    swap = mv + mv.T
    b = int(np.argmin(swap))
    i, j = divmod(b, m)
    cand.append((float(swap.flat[b]), [(i, j), (j, i)]))
    if depth >= 3 and m >= 3:
        out = shift.min(axis=1)  # best shift out of each station into a free pile
        chain = mv + out[None, :]
        c = int(np.argmin(chain))
        i, j = divmod(c, m)
        h = int(np.argmin(shift[j]))
        cand.append((float(chain.flat[c]), [(i, j), (j, h)]))
        cyc = mv[:, :, None] + mv[None, :, :] + mv.T[:, None, :]
        d = int(np.argmin(cyc))
        i, rest = divmod(d, m * m)
        j, h = divmod(rest, m)
        cand.append((float(cyc.flat[d]), [(i, j), (j, h), (h, i)]))
    return min(cand, key=lambda t: t[0])


def _long_move(p: _Prep, x: np.ndarray, load: np.ndarray, gain: np.ndarray,
               depth: int) -> tuple[float, list[tuple[int, int]]]:
    """The best ejection chain or cyclic exchange of at most ``depth`` EVs over the station
    graph (change, arcs).

    Arc i → j costs the cheapest move of one EV of station i to j (:func:`_station_moves`).
    A min-plus recursion gives, for every pair (s, t) and every length ℓ ≤ ``depth``, the
    cheapest walk of ℓ arcs s → t; a closed walk is a cyclic exchange, a walk ending at a
    station with a free pile an ejection chain. The best walk is cut into its simple pieces
    (a closed or open walk that repeats a station is a simple path or cycle plus cycles, with
    the same total) and the best piece is returned, so the arcs leave distinct stations and
    :func:`_apply` moves distinct EVs."""
    m = p.m
    mv = _station_moves(p, x, load, gain)
    spare = load < p.cap
    best, best_len, best_s, best_t = np.inf, 0, -1, -1
    dist = mv.copy()
    preds: list[np.ndarray] = []
    for ell in range(1, depth + 1):
        if ell > 1:
            tot = dist[:, :, None] + mv[None, :, :]
            pr = np.argmin(tot, axis=1)
            dist = np.take_along_axis(tot, pr[:, None, :], axis=1)[:, 0, :]
            preds.append(pr)
            cyc = np.diagonal(dist)
            s = int(np.argmin(cyc))
            if cyc[s] < best:
                best, best_len, best_s, best_t = float(cyc[s]), ell, s, s
        chain = np.where(spare[None, :], dist, np.inf)
        a = int(np.argmin(chain))
        if chain.flat[a] < best:
            best, best_len = float(chain.flat[a]), ell
            best_s, best_t = divmod(a, m)
    if not best < -p.tol:
        return best, []
    walk = [best_t]
    for ell in range(best_len, 1, -1):
        walk.append(int(preds[ell - 2][best_s, walk[-1]]))
    walk.append(best_s)
    walk.reverse()
    pieces: list[list[int]] = []
    stack: list[int] = []
    for v in walk:
        if v in stack:
            at = stack.index(v)
            pieces.append([*stack[at:], v])
            del stack[at + 1:]
        else:
            stack.append(v)
    if len(stack) > 1:
        pieces.append(stack)
    arcs_of = [list(itertools.pairwise(pc)) for pc in pieces]
    vals = [float(sum(mv[i, j] for i, j in arcs)) for arcs in arcs_of]
    b = int(np.argmin(vals))
    return vals[b], arcs_of[b]


def local_search(p: _Prep, x: np.ndarray, *, depth: int = 3,
                 max_moves: int = 100_000) -> np.ndarray:
    """003's Swap algorithm, best improvement: exchange the stations of up to ``depth`` EVs
    (shift to a free pile, pairwise swap; depth 3 adds 3-cycles and ejection chains) until
    no such exchange lowers the objective. With ``depth`` > 3, once no exchange of up to three
    EVs improves, the best ejection chain or cyclic exchange of up to ``depth`` EVs
    (:func:`_long_move`) is tried before stopping."""
    x = x.copy()
    load = np.bincount(x, minlength=p.m)
    for _ in range(max_moves):
        gain = p.cost - p.cost[p.ar, x][:, None]
        delta, arcs = _best_move(p, x, load, gain, depth if depth <= 3 else 2)
        if delta >= -p.tol and depth > 3:
            delta, arcs = _long_move(p, x, load, gain, depth)
        if delta >= -p.tol:
            break
        _apply(p, x, load, gain, arcs)
    return x


# -- constructions --------------------------------------------------------------------------
def grasp_construct(p: _Prep, count: int, alpha: np.ndarray | float,
                    rng: np.random.Generator) -> np.ndarray:
    """``count`` GRASP constructions at once (HASP step 1 of 003), [count, n].

    EVs come in a random order per solution; each picks uniformly from its restricted
    candidate list: the reachable stations with a free pile costing at most
    c_min + α·(c_max − c_min). α = 0 is greedy, α = 1 uniform.
    """
    a = np.broadcast_to(np.asarray(alpha, dtype=float), (count,))
    x = np.full((count, p.n), -1, dtype=np.int64)
    load = np.zeros((count, p.m), dtype=np.int64)
    rows = np.arange(count)
    orders = np.argsort(rng.random((count, p.n)), axis=1)
    for t in range(p.n):
        k = orders[:, t]
        c = np.where(load < p.cap, p.cost[k], np.inf)
        cmin = c.min(axis=1)
        ok = np.isfinite(cmin)
        cmax = np.where(np.isfinite(c), c, -np.inf).max(axis=1)
        thr = np.where(ok, cmin + a * np.where(ok, cmax - cmin, 0.0), np.inf) + p.tol
        keys = np.where(c <= thr[:, None], rng.random(c.shape), -1.0)
        i = np.argmax(keys, axis=1)
        x[rows[ok], k[ok]] = i[ok]
        load[rows[ok], i[ok]] += 1
    for r in np.nonzero((x < 0).any(axis=1))[0]:
        x[r] = repair(p, x[r])
    return x


def random_solutions(p: _Prep, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random feasible assignments: a uniform reachable station each, repaired."""
    keys = np.where(p.feasible[None], rng.random((count, p.n, p.m)), -1.0)
    return np.stack([repair(p, row) for row in np.argmax(keys, axis=2)])


def _result(inst: GapInstance, x: np.ndarray, t0: float, method: str) -> Assignment:
    return make_assignment(inst, x, time.perf_counter() - t0, method)


def _out_of_time(t0: float, limit: float | None) -> bool:
    return limit is not None and time.perf_counter() - t0 > limit


# -- HASP -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HaspConfig:
    """HASP settings (steps 1–6 of 003; the paper gives no values, these are ours)."""

    pop_size: int = 20
    alpha: float = 0.3  # GRASP's restricted candidate list (0 greedy … 1 random)
    generations: int = 200
    patience: int = 25  # stop when the best has not improved for this many generations
    crossover_rate: float = 0.9
    mutation_rate: float = 0.3  # share of offspring that get swap mutations
    mutation_swaps: int = 2
    #: The best this many offspring get the Swap local search (all of them by default).
    ls_offspring: int = 20
    #: The largest exchange of the Swap local search, in EVs (:func:`local_search`).
    ls_depth: int = 4
    time_limit_s: float | None = None


def hasp(inst: GapInstance, *, seed: int = 0, config: HaspConfig | None = None,
         **kw: object) -> Assignment:
    """HASP (003's solution method): GRASP population + GA + Swap local search.

    Fitness-proportional selection on *linearly scaled* cost (worst − cost + 10 % of the
    population's spread): with raw 1/cost every roulette slice would be near-equal, since the
    costs of a GRASP population differ by a few percent. Replacement is (μ + λ) without
    duplicates, so the best never gets lost ("update population", step 6). ``kw`` overrides
    fields of :class:`HaspConfig`.

    The Swap local search runs on every GRASP member and every offspring, and also tries
    cyclic exchanges and ejection chains of up to four EVs over the station graph
    (``ls_depth`` 4, :func:`_long_move`). Why: with the old setting (exchanges of up to three
    EVs, only the best 3 offspring polished) HASP reached the MILP optimum on 76 % of the 63
    instances of ``benchmarks/assignment.py --seeds 3`` (48 % at 100–400 EVs): its local
    optima differ from the optimum by a cyclic shift of 4–6 EVs over as many stations, which
    neither a uniform crossover nor a 2-EV swap mutation is likely to hit. Each change alone
    helps (depth 4 on the best 3 offspring: 90 %; depth 3 on all offspring: ~5/6 at 300–400
    EVs); both together reach the optimum on all 63 (and on 27 more scenario-3 draws, seeds
    3–5) at 0.74 s mean, 3.4 s max (2 shared cores). Without the GA (``generations=0``) the same
    local search reaches 87 %, so the recombination still does real work. A deeper cap
    (``ls_depth`` 6) reaches all 63 from the GRASP population alone, i.e. the GA idles;
    we keep 4 so that HASP stays a hybrid rather than a near-exact cycle-cancelling method.
    """
    t0 = time.perf_counter()
    cfg = HaspConfig(**kw) if config is None else config  # type: ignore[arg-type]
    p = _Prep(inst)
    rng = np.random.default_rng(seed)
    size = cfg.pop_size
    alphas = np.full(size, cfg.alpha)
    alphas[0] = 0.0  # one greedy member
    pop = grasp_construct(p, size, alphas, rng)
    pop = np.stack([local_search(p, row, depth=cfg.ls_depth) for row in pop])
    fit = p.evaluate(pop)
    # The local search is deterministic, so an offspring seen before (e.g. a child of two
    # equal parents) gets its earlier result back instead of a second search.
    polished: dict[bytes, np.ndarray] = {row.tobytes(): row for row in pop}
    best, stale = float(fit.min()), 0
    for _ in range(cfg.generations):
        if stale >= cfg.patience or _out_of_time(t0, cfg.time_limit_s):
            break
        w = fit.max() - fit + 0.1 * (fit.max() - fit.min()) + 1e-12
        par = rng.choice(fit.size, size=(size, 2), p=w / w.sum())
        mix = (rng.random((size, p.n)) < 0.5) & (rng.random(size) < cfg.crossover_rate)[:, None]
        kids = np.where(mix, pop[par[:, 1]], pop[par[:, 0]])
        kids = np.stack([repair(p, row) for row in kids])
        _swap_mutation(p, kids, cfg, rng)
        kfit = p.evaluate(kids)
        for r in np.argsort(kfit, kind="stable")[: cfg.ls_offspring]:
            key = kids[r].tobytes()
            if key not in polished:
                polished[key] = local_search(p, kids[r], depth=cfg.ls_depth)
            kids[r] = polished[key]
        kfit = p.evaluate(kids)
        allp = np.concatenate([pop, kids])
        allf = np.concatenate([fit, kfit])
        _, first = np.unique(allp, axis=0, return_index=True)
        keep = first[np.argsort(allf[first], kind="stable")][:size]
        pop, fit = allp[keep], allf[keep]
        if fit[0] < best - p.tol:
            best, stale = float(fit[0]), 0
        else:
            stale += 1
    return _result(inst, pop[np.argmin(fit)], t0, "hasp")


def _swap_mutation(p: _Prep, kids: np.ndarray, cfg: HaspConfig,
                   rng: np.random.Generator) -> None:
    """HASP step 5: exchange the stations of two random EVs (piles unchanged), in place,
    where both stay in range."""
    rows = np.flatnonzero(np.asarray(rng.random(kids.shape[0])) < cfg.mutation_rate)
    for _ in range(cfg.mutation_swaps):
        a, b = rng.integers(0, p.n, (2, rows.size))
        sa, sb = kids[rows, a], kids[rows, b]
        ok = p.feasible[a, sb] & p.feasible[b, sa]
        kids[rows[ok], a[ok]] = sb[ok]
        kids[rows[ok], b[ok]] = sa[ok]


# -- TABU -------------------------------------------------------------------------------------
def tabu(inst: GapInstance, *, seed: int = 0, iterations: int = 3000, patience: int = 500,
         tenure: int | None = None, time_limit_s: float | None = None) -> Assignment:
    """Tabu search (003's TABU baseline) over the shift/swap neighbourhood.

    Starts from the greedy construction; each iteration takes the best non-tabu move, even
    uphill; an EV that leaves station i may not return there for a random tenure in
    [t, 1.5 t] (t = 7 + n/20 unless given); a tabu move is allowed when it beats the best
    found (aspiration). Stops after ``iterations`` or ``patience`` moves without a new best.
    """
    t0 = time.perf_counter()
    p = _Prep(inst)
    rng = np.random.default_rng(seed)
    t_base = 7 + p.n // 20 if tenure is None else tenure
    x = grasp_construct(p, 1, 0.0, rng)[0]
    load = np.bincount(x, minlength=p.m)
    cur = float(p.cost[p.ar, x].sum())
    best_x, best, stale = x.copy(), cur, 0
    until = np.zeros((p.n, p.m), dtype=np.int64)
    for it in range(iterations):
        if stale >= patience or _out_of_time(t0, time_limit_s):
            break
        gain = p.cost - p.cost[p.ar, x][:, None]
        masked = np.where(until > it, np.inf, gain)
        d, arcs = _best_move(p, x, load, gain, 2)
        g_use = gain
        if not cur + d < best - p.tol:  # aspiration: a tabu move only if it beats the best
            d, arcs = _best_move(p, x, load, masked, 2)
            g_use = masked
        if not np.isfinite(d):
            break
        before = x.copy()
        _apply(p, x, load, g_use, arcs)
        moved = np.nonzero(x != before)[0]
        until[moved, before[moved]] = it + rng.integers(t_base, t_base + t_base // 2 + 1,
                                                        moved.size)
        cur += float(d)
        if cur < best - p.tol:
            best_x, best, stale = x.copy(), cur, 0
        else:
            stale += 1
    return _result(inst, best_x, t0, "tabu")


# -- bees algorithm ---------------------------------------------------------------------------
def bees(inst: GapInstance, *, seed: int = 0, scouts: int = 10, sites: int = 5, elite: int = 2,
         elite_bees: int = 10, site_bees: int = 4, patch: int | None = None,
         near: int = 3, iterations: int = 300, patience: int = 40, abandon: int = 10,
         time_limit_s: float | None = None) -> Assignment:
    """Pham's bees algorithm (003's BA baseline).

    Random scouts; the best ``sites`` are searched by ``elite_bees`` (the ``elite`` best) or
    ``site_bees`` recruits; a recruit changes ``patch`` random EVs (n/50 unless given) to
    one of their ``near`` cheapest reachable stations and is repaired; the best recruit
    replaces its site. A site's patch shrinks by 20 % when its search fails and the site is
    abandoned after ``abandon`` failures; ``scouts − sites`` fresh scouts a round keep up
    the global search. Stops after ``iterations`` or ``patience`` rounds without a new best.
    """
    t0 = time.perf_counter()
    p = _Prep(inst)
    rng = np.random.default_rng(seed)
    patch0 = max(1, p.n // 50) if patch is None else patch
    pop = random_solutions(p, max(scouts, sites), rng)
    fit = p.evaluate(pop)
    order = np.argsort(fit, kind="stable")[:sites]
    site, sfit = pop[order], fit[order]
    ngh = np.full(sites, float(patch0))
    fails = np.zeros(sites, dtype=np.int64)
    best_x, best, stale = site[0].copy(), float(sfit[0]), 0
    for _ in range(iterations):
        if stale >= patience or _out_of_time(t0, time_limit_s):
            break
        for s in range(sites):
            nb = elite_bees if s < elite else site_bees
            kids = np.repeat(site[s][None], nb, axis=0)
            size = max(1, int(ngh[s]))
            k = rng.integers(0, p.n, (nb, size))
            pick = rng.integers(0, np.minimum(near, p.nfeas[k]))
            kids[np.arange(nb)[:, None], k] = p.ranked[k, pick]
            kids = np.stack([repair(p, row) for row in kids])
            kf = p.evaluate(kids)
            r = int(np.argmin(kf))
            if kf[r] < sfit[s] - p.tol:
                site[s], sfit[s], fails[s] = kids[r], kf[r], 0
            else:
                fails[s] += 1
                ngh[s] = max(1.0, 0.8 * ngh[s])
            if fails[s] > abandon:
                site[s] = random_solutions(p, 1, rng)[0]
                sfit[s] = p.evaluate(site[s][None])[0]
                fails[s], ngh[s] = 0, float(patch0)
        fresh = random_solutions(p, max(0, scouts - sites), rng)
        allp = np.concatenate([site, fresh])
        allf = np.concatenate([sfit, p.evaluate(fresh)])
        keep = np.argsort(allf, kind="stable")[:sites]
        old_ngh = np.concatenate([ngh, np.full(fresh.shape[0], float(patch0))])
        old_fails = np.concatenate([fails, np.zeros(fresh.shape[0], dtype=np.int64)])
        site, sfit, ngh, fails = allp[keep], allf[keep], old_ngh[keep], old_fails[keep]
        if sfit[0] < best - p.tol:
            best_x, best, stale = site[0].copy(), float(sfit[0]), 0
        else:
            stale += 1
    return _result(inst, best_x, t0, "bees")


# -- DE-SK ------------------------------------------------------------------------------------
def differential_evolution(inst: GapInstance, *, seed: int = 0, pop_size: int = 20,
                           f_weight: float = 0.5, cr: float = 0.9, generations: int = 300,
                           patience: int = 40, local_search_best: bool = True,
                           time_limit_s: float | None = None) -> Assignment:
    """Random-key DE with a repair — our reading of 003's "improved DE (DE-SK)".

    003 names DE-SK without describing it. We read it as DE over *sorted keys* (the S and K):
    each EV has a key in [0, 1) that picks a rank in its reachable stations sorted by cost
    (low key = cheap station), so DE's arithmetic moves keys between similar choices.
    DE/rand/1/bin (F, CR), decode, the shared repair, Lamarckian write-back of the repaired
    station into the key, one-to-one greedy selection. As "improved", the best trial of a
    generation gets the same Swap local search as HASP's offspring (``local_search_best``).
    """
    t0 = time.perf_counter()
    p = _Prep(inst)
    rng = np.random.default_rng(seed)
    size = max(4, pop_size)
    keys = rng.random((size, p.n))
    pop = np.stack([repair(p, _decode(p, row)) for row in keys])
    keys = _encode(p, pop, keys)
    fit = p.evaluate(pop)
    best, stale = float(fit.min()), 0
    idx = np.arange(size)
    for _ in range(generations):
        if stale >= patience or _out_of_time(t0, time_limit_s):
            break
        r = np.argsort(rng.random((size, size - 1)), axis=1)[:, :3]
        r = np.where(r >= idx[:, None], r + 1, r)  # three distinct donors other than i
        mutant = keys[r[:, 0]] + f_weight * (keys[r[:, 1]] - keys[r[:, 2]])
        mutant = np.clip(mutant, 0.0, np.nextafter(1.0, 0.0))
        cross = rng.random((size, p.n)) < cr
        cross[idx, rng.integers(0, p.n, size)] = True
        trial_k = np.where(cross, mutant, keys)
        trial = np.stack([repair(p, _decode(p, row)) for row in trial_k])
        tfit = p.evaluate(trial)
        if local_search_best:
            b = int(np.argmin(tfit))
            trial[b] = local_search(p, trial[b])
            tfit[b] = p.evaluate(trial[b][None])[0]
        trial_k = _encode(p, trial, trial_k)
        win = tfit <= fit
        keys[win], pop[win], fit[win] = trial_k[win], trial[win], tfit[win]
        if fit.min() < best - p.tol:
            best, stale = float(fit.min()), 0
        else:
            stale += 1
    return _result(inst, pop[np.argmin(fit)], t0, "de")


def _decode(p: _Prep, key: np.ndarray) -> np.ndarray:
    rank = np.minimum((key * p.nfeas).astype(np.int64), p.nfeas - 1)
    return p.ranked[p.ar, rank]


def _encode(p: _Prep, pop: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Keys that decode to ``pop``: unchanged where they already do, else mid-rank."""
    rank = p.rank_of[p.ar[None, :], pop]
    old = np.minimum((keys * p.nfeas).astype(np.int64), p.nfeas - 1)
    return np.where(old == rank, keys, (rank + 0.5) / p.nfeas)
