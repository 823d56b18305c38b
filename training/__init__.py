"""RLlib (new API stack) training of DQN, SAC and PPO on ``PortfolioEnv``: single runs, Tune sweeps, export."""
