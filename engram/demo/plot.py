"""The demo's picture: success rate over time, with memory versus without (PNG)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_success"]


def plot_success(
    with_memory: list[float], baseline: list[float], path: Path, window: int
) -> Path | None:
    """Write the plot; returns None (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=110)
    axes.plot(range(1, len(with_memory) + 1), with_memory, label="with engram", linewidth=2)
    axes.plot(
        range(1, len(baseline) + 1), baseline, label="without memory", linewidth=2, linestyle="--"
    )
    axes.set_xlabel("task")
    axes.set_ylabel(f"success rate (last {window} tasks)")
    axes.set_ylim(0, 1)
    axes.set_title("Agents that remember which workflows work")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
