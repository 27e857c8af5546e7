"""A hand-designed Pendulum-v1 swing-up controller: energy pumping far from upright, PD near it.

With the plant's ``theta_ddot = 15 sin(theta) + 3 u``, the energy ``E = theta_dot**2 / 2 +
15 (cos(theta) - 1)`` is 0 at the upright rest and changes as ``dE/dt = 3 u theta_dot``: full torque
along ``-E * theta_dot`` drives it to 0 as fast as the torque limit allows. Near the top a PD law
catches the pendulum. It scores about -145 on gymnasium seeds 0..99 and is the teacher the
reference MLP is cloned from before it is fine-tuned through the plant.
"""

from __future__ import annotations

import numpy as np

MAX_TORQUE = 2.0


def energy_shaping_expert(obs: np.ndarray, kp: float = 10.0, kd: float = 2.0, catch_angle: float = 0.4) -> np.ndarray:
    """Torques (N, 1) float32 for observations (N, 3) = [cos, sin, theta_dot]."""
    obs = np.asarray(obs, dtype=np.float64).reshape(-1, 3)
    c, s, w = obs[:, 0], obs[:, 1], obs[:, 2]
    theta = np.arctan2(s, c)
    energy = 0.5 * w**2 + 15.0 * (c - 1.0)
    # The tiny offset breaks the tie at rest at the bottom (E < 0, w = 0), where pumping must start somewhere.
    pump = MAX_TORQUE * np.sign(-energy * w + 1e-12)
    catch = np.clip(-(kp * theta + kd * w), -MAX_TORQUE, MAX_TORQUE)
    near_top = (c > np.cos(catch_angle)) & (np.abs(energy) < 8.0)
    return np.where(near_top, catch, pump)[:, None].astype(np.float32)
