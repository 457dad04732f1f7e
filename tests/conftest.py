"""Shared fixtures: scenario dictionaries small enough for many hypothesis examples."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from hypothesis import settings

from evgrid.scenario import load_scenario

# CI must not depend on luck: the same examples every run (``derandomize``). Explore new
# draws locally with HYPOTHESIS_PROFILE=explore.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def small_dict() -> dict:
    """The bundled ``small`` scenario as a plain dict (mutate a deep copy)."""
    return load_scenario("small").model_dump(mode="json")


@pytest.fixture
def small_copy(small_dict: dict) -> dict:
    return copy.deepcopy(small_dict)


@pytest.fixture
def write_yaml(tmp_path):
    def write(data: object, name: str = "scenario.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
        return path

    return write


@pytest.fixture(scope="session", autouse=True)
def _ray_before_any_thread(request: pytest.FixtureRequest) -> None:
    """Start Ray first when any selected test needs it, before another test leaves gRPC
    or websocket threads behind: Ray starts its GCS with a ``preexec_fn`` that runs Python in
    the forked child, and a fork while gRPC threads are busy ("skipping fork() handlers") can
    leave that child hung, so ``ray.init`` times out waiting for the GCS port (seen in CI)."""
    if any("ray_session" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("ray_session")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray runtime for the whole test session (2 CPUs, like CI)."""
    import ray

    from evgrid.transport.ray_actors import ensure_ray

    ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()
