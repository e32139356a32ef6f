"""How patterns are scored: confidence from evidence and feedback, what counts as best."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LearnerConfig", "clamp", "confidence"]


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
