"""tools/usecases/sac/: a foreign SAC actor (stable-baselines3, Pendulum-v1, 3-256-256 ReLU) for the issue-17 check."""
