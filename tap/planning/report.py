"""A planning run in TensorBoard: the trajectory as text, and measured and predicted accuracy against the
budget spent (scalars and a plot).
"""

from __future__ import annotations

from pathlib import Path

from tap.search import SearchResult


def reward_plot(result: SearchResult):
    """Matplotlib figure: each verified chain's measured accuracy (on the examples of its rung) and the
    incumbent's, against the LLM calls spent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    verified = result.records[1:]  # after the initial chain
    x = [0] + [r.calls for r in verified]
    best, held = [result.initial_search["accuracy"]], result.initial_search["accuracy"]
    for r in verified:
        held = r.accuracy if r.accepted else held
        best.append(held)
    ax.scatter(x[1:], [r.accuracy for r in verified], s=12, label="measured (verified chain)")
    ax.step(x, best, where="post", color="black", label="current chain")
    ax.set_xlabel("LLM calls spent")
    ax.set_ylabel("accuracy on search examples")
    ax.set_title(f"{result.task} ({result.method}, seed {result.seed})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def log_to_tensorboard(result: SearchResult, log_dir: str | Path) -> Path:
    """Write the run to ``log_dir`` (one TensorBoard run); returns the folder."""
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    writer = SummaryWriter(str(log_dir))
    writer.add_text("plan/trajectory", result.to_markdown(), 0)
    writer.add_text("plan/final_prompt", "```\n" + result.prompt_text() + "\n```", 0)
    writer.add_scalar("plan/current_accuracy", result.initial_search["accuracy"], 0)
    for r in result.records[1:]:
        writer.add_scalar("plan/measured_accuracy", r.accuracy, r.calls)
        if r.predicted is not None:
            writer.add_scalar("plan/predicted_change", r.predicted, r.calls)
        if r.accepted:
            writer.add_scalar("plan/current_accuracy", r.accuracy, r.calls)
    for name, t in result.test.items():
        writer.add_scalar(f"plan/test_accuracy/{name}", t["accuracy"], 0)
    fig = reward_plot(result)
    writer.add_figure("plan/accuracy_vs_calls", fig, 0)
    plt.close(fig)
    writer.close()
    return log_dir
