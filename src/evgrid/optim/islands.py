"""Island layouts of a stacked EV car-park and their relocation cost (§5.1–5.5 of
000_f74a305f822cf870.txt).

Why a separate model: the zone ILP (``evgrid.optim.layout``) decides *where* each SoC band
parks, but not *how densely*. Seed 000's numerical experiments (§5.1–5.3, Fig. 5–7) answer the
second question with islands of stacked parking: EVs that are moved by the operator (valet or
automated) can be parked nose-to-tail without a driving aisle to every spot, which packs more
vehicles on the floor at the price of *relocations*: an EV in an inner column can leave only
after the EVs between it and the gap are moved out of the way.

Geometry (our reading of §5.1, written once here):

* The floor is ``length_m`` (L) along x by ``width_m`` (W) along y. A clearance roadway of
  ``roadway_m`` runs along the whole length on one side, so ``rows · spot_width + roadway <= W``
  (150 × 65 with 2 m spots: 30 rows + 5 m roadway = 65 m exactly, the paper's y = 30).
* An island is ``columns`` spots deep along x (``spot_length`` each) and ``rows`` spots wide
  along y. Islands stand side by side along x with a gap α (``gap_m``) on *both* sides of every
  island — one before the first, between each pair and after the last — so ``n`` islands of
  ``x`` columns need ``n·x·l + (n+1)·α <= L``. Every island therefore opens on two gaps and all
  islands are alike, which is what "demand evenly distributed among islands" needs.
* An EV leaves its row along x into the nearer gap and drives along the gap to the roadway.

Relocations per retrieval (derivation). In an island of ``x`` columns the depth of column
``j = 1..x`` is ``k_j = min(j-1, x-j)``: the number of columns between it and the nearer gap.
The operator fills the shallowest spots first (depth 0 = the two outer columns, then depth 1,
...), which is the placement of least relocations for a static stock. With ``s_k`` spots at depth
``k`` (``2·rows``, or ``rows`` for the middle column of an odd island) and ``d`` EVs in the island,
``n_k = min(s_k, d - Σ_{k'<k} s_{k'})`` EVs sit at depth ``k``, each with ``k`` EVs in front of it
in its row (the shallower spots are full). Retrieving a uniformly random EV thus moves

    E[R](d) = Σ_k k · n_k / d

vehicles. The car-park's ``D`` EVs are spread as evenly as the integers allow (``D mod n``
islands hold one more), and ``E[R] = Σ_islands Σ_k k · n_k / D``. For each demand the design of
least ``E[R]`` among those with supply ``>= D`` is chosen. Ties (at low demand many designs
need no relocation at all) go first to the design with the least ``E[R]`` when *full* — the one
that stays cheap as the day's demand rises above the plan — then to the larger supply (free
headroom at no relocation cost), then to fewer islands. This keeps the chosen supply
non-decreasing in ``D`` on the paper's floor (tested); a tie-break on supply alone would pick a
single deep island for a handful of EVs.

The **spatial efficiency ratio** (§5.2–5.3, Fig. 6c, 7d) is ``D_max`` — the largest supply of any
design, i.e. the largest demand the floor can serve — over the capacity of a conventional
layout on the same floor: two-column islands of 2.8 m-wide spots (a driver must open the door),
with the same gaps and roadway.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

#: Conventional spot width [m] of §5.2 ("w = 2 vs. w = 2.8").
CONVENTIONAL_SPOT_WIDTH_M = 2.8


@dataclass(frozen=True)
class IslandGeometry:
    """A rectangular floor and its spot, roadway and gap sizes (§5.1 of 000: 150 × 65 m, 5 × 2 m
    spots, 30 rows per island, 5 m clearance roadway; α = 3 m, varied 2.0–4.0 m in §5.3).

    ``rows`` = None takes as many rows as fit beside the roadway, ``⌊(W - roadway) / w⌋``.
    """

    length_m: float = 150.0
    width_m: float = 65.0
    spot_length_m: float = 5.0
    spot_width_m: float = 2.0
    rows: int | None = 30
    roadway_m: float = 5.0
    gap_m: float = 3.0

    def __post_init__(self) -> None:
        for name in ("length_m", "width_m", "spot_length_m", "spot_width_m"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"island geometry: {name} {v} is not a finite number > 0")
        for name in ("roadway_m", "gap_m"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"island geometry: {name} {v} is not a finite number >= 0")
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"island geometry: rows {self.rows} is not >= 1")
        if self.row_count * self.spot_width_m + self.roadway_m > self.width_m + 1e-9:
            raise ValueError(
                f"island geometry: {self.row_count} rows of {self.spot_width_m:g} m and a "
                f"{self.roadway_m:g} m roadway do not fit in the width {self.width_m:g} m"
            )

    @property
    def row_count(self) -> int:
        """Rows per island: the given ``rows`` or as many as fit beside the roadway."""
        if self.rows is not None:
            return self.rows
        return max(0, math.floor((self.width_m - self.roadway_m) / self.spot_width_m + 1e-9))


@dataclass(frozen=True)
class IslandDesign:
    """``islands`` islands of ``columns`` × ``rows`` spots; ``supply`` = their spaces."""

    islands: int
    columns: int
    rows: int
    used_length_m: float

    @property
    def supply(self) -> int:
        return self.islands * self.columns * self.rows


@dataclass(frozen=True)
class IslandChoice:
    """The design chosen for a demand and its expected relocations per random retrieval."""

    demand: int
    design: IslandDesign
    relocations: float

    @property
    def supply(self) -> int:
        return self.design.supply


@dataclass(frozen=True)
class IslandSummary:
    """What the island model says about one floor (§5.1–5.3 of 000)."""

    geometry: IslandGeometry
    d_max: int
    conventional_capacity: int
    efficiency_ratio: float
    #: the design chosen for the facility's demand; None when the floor cannot hold it
    choice: IslandChoice | None


def enumerate_designs(geom: IslandGeometry) -> list[IslandDesign]:
    """Every (islands, columns) that fits: ``n·x·l + (n+1)·α <= L`` (module docstring)."""
    out: list[IslandDesign] = []
    rows = geom.row_count
    if rows < 1:
        return out
    n = 1
    while n * geom.spot_length_m + (n + 1) * geom.gap_m <= geom.length_m + 1e-9:
        room = geom.length_m - (n + 1) * geom.gap_m
        x_max = math.floor(room / (n * geom.spot_length_m) + 1e-9)
        for x in range(1, x_max + 1):
            used = n * x * geom.spot_length_m + (n + 1) * geom.gap_m
            out.append(IslandDesign(islands=n, columns=x, rows=rows, used_length_m=used))
        n += 1
    return out


def _depth_sizes(columns: int, rows: int) -> list[int]:
    """Spots at depth k = 0, 1, ... in a two-sided island (module docstring)."""
    sizes: dict[int, int] = {}
    for j in range(1, columns + 1):
        k = min(j - 1, columns - j)
        sizes[k] = sizes.get(k, 0) + rows
    return [sizes[k] for k in sorted(sizes)]


def island_relocations(columns: int, rows: int, evs: int) -> int:
    """Total relocations Σ_k k·n_k to retrieve each of ``evs`` EVs once, shallowest fill."""
    if evs > columns * rows:
        raise ValueError(f"{evs} EVs do not fit in an island of {columns} × {rows} spots")
    return _island_relocations(columns, rows, evs)


@functools.lru_cache(maxsize=65_536)
def _island_relocations(columns: int, rows: int, evs: int) -> int:
    # cached: a demand sweep asks for the same few islands again and again
    total, left = 0, evs
    for k, size in enumerate(_depth_sizes(columns, rows)):
        n_k = min(size, left)
        total += k * n_k
        left -= n_k
        if left == 0:
            break
    return total


def expected_relocations(design: IslandDesign, demand: int) -> float:
    """E[R] for a uniformly random retrieval with ``demand`` EVs spread evenly (docstring)."""
    if demand <= 0:
        return 0.0
    if demand > design.supply:
        raise ValueError(f"demand {demand} exceeds the design's supply {design.supply}")
    base, extra = divmod(demand, design.islands)
    total = (design.islands - extra) * island_relocations(design.columns, design.rows, base)
    if extra:
        total += extra * island_relocations(design.columns, design.rows, base + 1)
    return total / demand


def best_design(
    geom: IslandGeometry, demand: int, designs: list[IslandDesign] | None = None
) -> IslandChoice | None:
    """Least E[R] among designs with supply >= ``demand``; None if none holds it (§5.1)."""
    best: tuple[float, float, int, int] | None = None
    chosen: IslandChoice | None = None
    for d in enumerate_designs(geom) if designs is None else designs:
        if d.supply < demand:
            continue
        r = expected_relocations(d, demand)
        # ties (to 1e-12) go to the design with fewer relocations when full, then to the
        # larger supply, then to fewer islands (module docstring)
        full = expected_relocations(d, d.supply)
        key = (round(r, 12), round(full, 12), -d.supply, d.islands)
        if best is None or key < best:
            best, chosen = key, IslandChoice(demand=demand, design=d, relocations=r)
    return chosen


def supply_steps(geom: IslandGeometry, demands: Iterable[int]) -> list[IslandChoice | None]:
    """The chosen design for each demand (Fig. 5a/b of 000: step-wise supply)."""
    designs = enumerate_designs(geom)
    return [best_design(geom, int(d), designs) for d in demands]


def max_demand(geom: IslandGeometry) -> int:
    """D_max: the largest supply of any design, the most EVs the floor can serve (§5.1)."""
    return max((d.supply for d in enumerate_designs(geom)), default=0)


def conventional_capacity(
    geom: IslandGeometry, spot_width_m: float = CONVENTIONAL_SPOT_WIDTH_M
) -> int:
    """Spaces of the conventional layout: two-column islands of ``spot_width_m``-wide spots
    (as many rows as fit beside the roadway), same gaps and roadway (§5.2–5.3)."""
    rows = math.floor((geom.width_m - geom.roadway_m) / spot_width_m + 1e-9)
    if rows < 1:
        return 0
    room = geom.length_m - geom.gap_m
    n = math.floor(room / (2 * geom.spot_length_m + geom.gap_m) + 1e-9)
    return max(0, n) * 2 * rows


def spatial_efficiency(geom: IslandGeometry) -> float:
    """D_max / conventional capacity (Fig. 6c, 7d of 000); inf if no conventional island fits."""
    conv = conventional_capacity(geom)
    return max_demand(geom) / conv if conv else math.inf


def summarize(geom: IslandGeometry, demand: int | None = None) -> IslandSummary:
    """D_max, conventional capacity, efficiency ratio and the design for ``demand``."""
    conv = conventional_capacity(geom)
    d_max = max_demand(geom)
    choice = None if demand is None else best_design(geom, demand)
    return IslandSummary(
        geometry=geom,
        d_max=d_max,
        conventional_capacity=conv,
        efficiency_ratio=d_max / conv if conv else math.inf,
        choice=choice,
    )
