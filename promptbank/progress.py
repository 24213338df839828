"""Following a train job from the client: a live progress bar on a terminal, plain lines otherwise, and what
the held-out figures can be trusted for."""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

from promptbank.client import RECONNECT_FOR_S, Client
from promptbank_api.v1 import jobs_pb2 as jp

STATE = jp.TrainJob.State.Name
SMALL_EVAL = 50  # held-out rows below which an accuracy says little (its 95% interval is > ±0.1 wide)
PLAIN_EVERY_S = 10.0  # seconds between progress lines when stderr is not a terminal


def wilson_interval(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy over n rows: how far a held-out figure can be trusted."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def small_eval_warning(job: jp.TrainJob) -> str:
    """A warning when the job's held-out split was too small for its accuracy to mean much ("" otherwise)."""
    n = int(job.metrics.get("eval_examples", 0))
    acc = job.metrics.get("eval_accuracy")
    if acc is None or n >= SMALL_EVAL:
        return ""
    lo, hi = wilson_interval(acc * n, n)
    return (f"warning: only {n} held-out rows: eval_accuracy {acc:.3f} has a 95% interval of [{lo:.3f}, {hi:.3f}]; "
            f"hold out more rows (--eval-fraction) or evaluate on a test set")


def truncation_note(job: jp.TrainJob) -> str:
    """A note when texts were cut at the job's max_length ("" otherwise): nothing is shortened silently."""
    cut = int(job.metrics.get("truncated_examples", 0))
    if not cut:
        return ""
    return (f"note: {cut} of {int(job.metrics.get('train_examples', 0) + job.metrics.get('eval_examples', 0))} "
            f"examples reached max_length ({job.hyperparameters.max_length} tokens) and were cut there "
            f"(--max-length raises it)")


def say(line: str) -> None:
    """A note to the person watching (stderr: stdout stays for results)."""
    print(f"promptbank: {line}", file=sys.stderr, flush=True)


def follow(client: Client, job: str, quiet: bool = False, reconnect_for: float = RECONNECT_FOR_S) -> jp.TrainJob:
    """Report a job until it ends (stderr; stdout stays for results); returns the final job. On a terminal a
    progress bar (steps, loss, examples/s, ETA); otherwise a plain line at most every PLAIN_EVERY_S."""
    bar, last_line = None, 0.0
    tty = sys.stderr.isatty()
    for ev in client.watch_job(job, reconnect_for=reconnect_for, on_retry=say):
        if quiet:
            continue
        if tty and ev.total_steps and bar is None:
            bar = tqdm(total=ev.total_steps, desc=job, unit="step", dynamic_ncols=True, file=sys.stderr)
        if bar is not None and ev.step > bar.n:
            bar.update(ev.step - bar.n)
        if ev.kind == jp.TrainJobEvent.PROGRESS:
            if bar is not None:
                bar.set_postfix(loss=f"{ev.loss:.4f}", ex_s=f"{ev.examples_per_second:.0f}")
            elif time.monotonic() - last_line >= PLAIN_EVERY_S:
                last_line = time.monotonic()
                print(f"  step {ev.step}/{ev.total_steps} loss {ev.loss:.4f} {ev.examples_per_second:.0f} ex/s "
                      f"eta {ev.eta_seconds:.0f}s", file=sys.stderr)
        if ev.kind == jp.TrainJobEvent.EVAL and "eval_accuracy" in ev.metrics:
            line = f"  step {ev.step}: eval_accuracy={ev.metrics['eval_accuracy']:.4f}"
            tqdm.write(line, file=sys.stderr) if bar is not None else print(line, file=sys.stderr)
        if ev.kind == jp.TrainJobEvent.STATE_CHANGED:  # with its notes (rows left out, a costly step)
            line = f"  {STATE(ev.state)} {ev.message}".rstrip()
            tqdm.write(line, file=sys.stderr) if bar is not None else print(line, file=sys.stderr)
    if bar is not None:
        bar.close()
    return client.get_job(job)
