"""tools/plant/: the pendulum plant and closed loops (batched numpy plant, gymnasium judge, vector envs), the
hand-designed expert, and the callables prune/ searches with (objective, stability check, visited states)."""
