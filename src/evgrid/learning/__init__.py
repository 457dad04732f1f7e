"""Learning: RLlib training of the station (SAC) and cohort (DQN) agents of
``evgrid.envs.parallel``, export to TorchScript bundles, held-out evaluation and Ray Tune.

The only package importing RLlib. A bundle is served by ``evgrid.agents.learned`` with torch
alone (no Ray), so it runs wherever a baseline runs."""
