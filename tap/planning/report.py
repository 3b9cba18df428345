"""A planning run in TensorBoard: the trajectory as text, measured and predicted reward against the
budget spent (scalars and a plot), and the Dyna refinement's loss terms.
"""

from __future__ import annotations

from pathlib import Path

from tap.search import SearchResult as PlanResult


def reward_plot(result: PlanResult):
    """Matplotlib figure: each verified chain's measured and predicted reward, and the best so far,
    against the chain evaluations spent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    verified = [r for r in result.records if r.predicted is not None]  # the initial chain's has no prediction
    x = [1] + [r.chain_evals for r in verified]
    best, held = [result.initial_search["accuracy"]], result.initial_search["accuracy"]
    for r in verified:
        held = r.measured if r.accepted else held
        best.append(held)
    ax.scatter(x[1:], [r.measured for r in verified], s=12, label="measured (verified chain)")
    ax.scatter(x[1:], [r.predicted for r in verified], s=12, marker="x", label="predicted by world model")
    ax.step(x, best, where="post", color="black", label="current chain")
    ax.set_xlabel("real chain evaluations spent")
    ax.set_ylabel("accuracy on search examples")
    ax.set_title(f"{result.task} ({result.method}, seed {result.seed})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def log_to_tensorboard(result: PlanResult, log_dir: str | Path, refine_log: list[dict] | None = None) -> Path:
    """Write the run to ``log_dir`` (one TensorBoard run); returns the folder."""
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    writer = SummaryWriter(str(log_dir))
    writer.add_text("plan/trajectory", result.to_markdown(), 0)
    writer.add_text("plan/final_prompt", "```\n" + result.prompt_text() + "\n```", 0)
    writer.add_scalar("plan/current_reward", result.initial_search["accuracy"], 1)
    for r in (r for r in result.records if r.predicted is not None):
        writer.add_scalar("plan/measured_reward", r.measured, r.chain_evals)
        writer.add_scalar("plan/predicted_reward", r.predicted, r.chain_evals)
        writer.add_scalar("plan/prediction_error", abs(r.predicted - r.measured), r.chain_evals)
        writer.add_scalar("plan/llm_requests", r.llm_calls, r.chain_evals)
        if r.accepted:
            writer.add_scalar("plan/current_reward", r.measured, r.chain_evals)
    for name, t in result.test.items():
        writer.add_scalar(f"plan/test_accuracy/{name}", t["accuracy"], 0)
    for row in refine_log or []:
        for k, v in row.items():
            if k != "step":
                writer.add_scalar(f"refine/loss/{k}", v, row["step"])
    fig = reward_plot(result)
    writer.add_figure("plan/reward_vs_calls", fig, 0)
    plt.close(fig)
    writer.close()
    return log_dir
