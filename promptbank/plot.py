"""`promptbank jobs plot`: training loss and eval accuracy over steps, from a job's event stream."""

from __future__ import annotations

from pathlib import Path

from promptbank.client import Client
from promptbank.progress import say
from promptbank_api.v1 import jobs_pb2 as jp


def plot_job(client: Client, job: str, out: Path) -> Path:
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; name the .png file to write")
    if out.suffix.lower() != ".png":  # matplotlib would add .png to a bare name, or refuse another suffix late
        raise ValueError(f"--out {out}: name a .png file")
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    loss_steps, losses, eval_steps, accs = [], [], [], []
    for ev in client.watch_job(job, on_retry=say):
        if ev.kind == jp.TrainJobEvent.PROGRESS:
            loss_steps.append(ev.step)
            losses.append(ev.loss)
        elif ev.kind == jp.TrainJobEvent.EVAL and "eval_accuracy" in ev.metrics:
            eval_steps.append(ev.step)
            accs.append(ev.metrics["eval_accuracy"])
    info = client.get_job(job)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(loss_steps, losses, color="tab:blue", label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(eval_steps, accs, "o-", color="tab:orange", label="eval accuracy")
    if "majority_rate" in info.metrics:
        ax2.axhline(info.metrics["majority_rate"], color="grey", ls="--", lw=1, label="majority rate")
    ax2.set_ylabel("eval accuracy", color="tab:orange")
    ax2.set_ylim(0, 1)
    state = jp.TrainJob.State.Name(info.state)
    ax.set_title(f"{info.name} ({info.prompt}, {state}) {info.result_version}".strip(), fontsize=9)
    fig.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
