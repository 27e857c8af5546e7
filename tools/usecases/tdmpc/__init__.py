"""A TD-MPC agent for Pendulum-v1: the agent, its training, planning evaluation, export and bench."""
