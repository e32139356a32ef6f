"""How patterns are scored: confidence from evidence and feedback, what counts as best."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LearnerConfig", "clamp", "confidence", "wilson_lower_bound"]


@dataclass(frozen=True, slots=True)
class LearnerConfig:
    """Knobs of the learner. Changing one changes derived state: that is a replay."""

    min_samples: int = 3
    """A pattern exists once it has this many executions behind it."""
    change_step: float = 0.05
    """Success rate or confidence must move this much to announce a new version."""
    evidence_half: float = 10.0
    """Executions at which evidence alone gives confidence 0.5 (n / (n + evidence_half))."""
    feedback_weight: float = 0.05
    """Confidence gained per helpful vote (lost per unhelpful one)."""
    max_indicators: int = 5


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return max(low, min(high, value))


def confidence(
    samples: int, helpful: int, unhelpful: int, adjustment: float, config: LearnerConfig
) -> float:
    """Grows with sample size; moved by feedback (votes and explicit adjustments); in 0..1."""
    evidence = samples / (samples + config.evidence_half) if samples > 0 else 0.0
    votes = config.feedback_weight * (helpful - unhelpful)
    return round(clamp(evidence + votes + adjustment), 6)


def wilson_lower_bound(successes: int, trials: int, z: float = 1.96) -> float:
    """The lower end of the 95% Wilson interval of a success rate.

    Ranking by it instead of the raw rate keeps 3 lucky runs (3/3, bound 0.44) from beating a
    workflow proven over 70 (60/70, bound 0.76): the evidence a best workflow needs.
    """
    if trials <= 0:
        return 0.0
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return round(max(0.0, (centre - margin) / (1 + z2 / trials)), 6)
