"""Hypothesis strategies for event histories (small vocabularies so keys collide)."""
