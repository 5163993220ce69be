"""The Atari suite (issue 36): its games, the published scores they are compared with, and human normalisation.

Two kinds of reference figure, both for a game's score in points (undiscounted, unclipped):
- ANCHORS: the final mean return of the last 100 training episodes after 10M agent steps (40M frames), from the PPO
  paper (Schulman et al. 2017, arXiv 1707.06347, Table 6, as transcribed in the rldb repository; NoFrameskip-v4
  games, no sticky actions) and CleanRL's `ppo_atari_envpool_xla_jax` benchmark (v5 games).
- RANDOM_HUMAN: a uniformly random agent's and a professional human tester's scores (Mnih et al. 2015, Nature,
  "Human-level control through deep reinforcement learning", Extended Data Table 2, with the human scores of
  later DeepMind work as collected in DeepMind's dqn_zoo `atari_data.py`; episodes start after 1-30 no-ops and are
  capped at 108,000 frames). A human-normalised score is (score - random) / (human - random): 0 is random play,
  1 is the human tester.

Owns: those figures and the arithmetic on them.
Must not: import TensorFlow or any module of the project, or read run files
(tools/atari_table.py reads the shipped models; reproduce.py's rows use the anchors as milestones).
"""
from __future__ import annotations

import statistics

# The games issue 36 trains with `--preset atari`, in the order they are reported; `ALE/{game}-v5` is the env id.
GAMES = ("BeamRider", "Breakout", "MsPacman", "Qbert", "Seaquest", "SpaceInvaders", "Boxing")

# The evaluation protocol: 30 full games, greedy with 1% random actions (the loop breaker), and the same games again
# under sticky actions 0.25, reported under STICKY_EVAL's name (reproduce.py's also_eval; tools/atari_table.py).
EVAL_FLAGS = ("--epsilon", "0.01")
STICKY_EVAL = "sticky-0.25"

ANCHOR_COLUMNS = ("A2C", "ACER", "PPO", "CleanRL PPO")
ANCHORS: dict[str, tuple[float, float, float, float]] = {
    # game: (A2C, ACER, PPO) of the PPO paper, then CleanRL PPO (envpool, v5)
    "BeamRider": (3031.7, 3863.3, 1590.0, 2478.0),
    "Breakout": (303.0, 456.4, 274.8, 430.0),
    "MsPacman": (1626.9, 2718.5, 2096.5, 2346.0),
    "Qbert": (10065.7, 15316.6, 14293.3, 17246.0),
    "Seaquest": (1714.3, 1739.5, 1204.5, 1240.0),
    "SpaceInvaders": (744.5, 1213.9, 942.5, 1189.0),
    "Boxing": (17.7, 98.9, 94.6, 92.7),
    "Pong": (19.7, 20.7, 20.7, 20.4),
}

RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    # game: (random, human)
    "BeamRider": (363.9, 16926.5),
    "Breakout": (1.7, 30.5),
    "MsPacman": (307.3, 6951.6),
    "Qbert": (163.9, 13455.0),
    "Seaquest": (68.4, 42054.7),
    "SpaceInvaders": (148.0, 1668.7),
    "Boxing": (0.1, 12.1),
    "Pong": (-20.7, 14.6),
}


def human_normalised(game: str, score: float) -> float:
    """(score - random) / (human - random) for one of RANDOM_HUMAN's games; KeyError names the game otherwise."""
    if game not in RANDOM_HUMAN:
        raise KeyError(f"no random/human scores for {game!r}; known: {', '.join(sorted(RANDOM_HUMAN))}")
    random, human = RANDOM_HUMAN[game]
    return (score - random) / (human - random)


def median_human_normalised(scores: dict[str, float]) -> float:
    """The median over games of the human-normalised score, the suite's one number; scores: {game: raw score}."""
    if not scores:
        raise ValueError("no games to take the median of")
    return statistics.median(human_normalised(game, s) for game, s in scores.items())


def anchors_beaten(game: str, score: float) -> dict[str, bool]:
    """{anchor column: whether score is above it} for one game."""
    return {column: score > anchor for column, anchor in zip(ANCHOR_COLUMNS, ANCHORS[game])}
