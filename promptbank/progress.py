"""Following a train job from the client: a live progress bar on stderr until the job ends."""

from __future__ import annotations

import sys

from tqdm import tqdm

from promptbank.client import Client
from promptbank_api.v1 import jobs_pb2 as jp

STATE = jp.TrainJob.State.Name


def follow(client: Client, job: str, quiet: bool = False) -> jp.TrainJob:
    """Show a live progress bar (stderr; stdout stays for results) until the job ends; returns the final job."""
    bar = None
    for ev in client.watch_job(job):
        if quiet:
            continue
        if ev.total_steps and bar is None:
            bar = tqdm(total=ev.total_steps, desc=job, unit="step", dynamic_ncols=True, disable=None)
        if bar is not None and ev.step > bar.n:
            bar.update(ev.step - bar.n)
        if bar is not None and ev.kind == jp.TrainJobEvent.PROGRESS:
            bar.set_postfix(loss=f"{ev.loss:.4f}", ex_s=f"{ev.examples_per_second:.0f}")
        if ev.kind == jp.TrainJobEvent.EVAL and "eval_accuracy" in ev.metrics:
            line = f"  step {ev.step}: eval_accuracy={ev.metrics['eval_accuracy']:.4f}"
            tqdm.write(line, file=sys.stderr) if bar is not None else print(line, file=sys.stderr)
        if ev.kind == jp.TrainJobEvent.STATE_CHANGED and (bar is None or bar.disable):
            print(f"  {STATE(ev.state)} {ev.message}".rstrip(), file=sys.stderr)
    if bar is not None:
        bar.close()
    return client.get_job(job)
