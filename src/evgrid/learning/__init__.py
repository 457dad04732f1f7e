"""Learning: RLlib training of the station (SAC) and cohort (DQN) agents of
``evgrid.envs.parallel``, export to TorchScript, and the learned policies served without Ray."""
