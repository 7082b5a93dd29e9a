"""Several trials at once in one process, each on its own CUDA stream: `sweep.streams`.

A small CNN's training step leaves most of a GPU idle, and more worker processes do not fill it:
without NVIDIA's MPS daemon a GPU runs the kernels of one process at a time and switches between
processes. Kernels that one process issues on different CUDA streams can run side by side.
`TrialStreams` holds up to `size` trials as generators (study.training.engine.trial_steps yields
after every optimizer step) and advances each by one step in turn, under its own stream and with
its own random-number state, so that a trial trains as it would alone: bit-identically on the
CPU.

Each of the `size` slots has one stream for the process's life, and a trial captures its CUDA
graph on its slot's stream (study.training.engine.TrainStep.capture). PyTorch keys the cuBLAS
workspace a graph embeds by the stream it was captured on, and destroying a graph frees the
workspace of its stream (pytorch/pytorch#193402): graphs captured on one shared stream and
replayed side by side race on one workspace, and the first trial to end pulls it from under the
others. On an H200 that shared stream made trials of the quick study diverge and later stop
with an illegal memory access; one live graph per stream avoids both.
`python -m study.bench` measures what it gains (bench.streams).
"""

from __future__ import annotations

from collections.abc import Generator, Hashable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Running:
    key: Hashable  # the caller's name for the trial
    steps: Generator[None, None, Any]
    slot: int
    stream: torch.cuda.Stream | None  # the slot's; None on the CPU and with one slot
    rng: list[torch.Tensor] | None = None  # the trial's generator states between its turns


class TrialStreams:
    """Up to `size` trials trained in turns by this process on `device`. With size 1 a trial
    runs exactly as study.training.engine.train_trial runs it: on the default stream, no state
    swapped."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.size, self.device = size, device
        self.running: list[Running] = []
        # made once: PyTorch hands out pooled streams round-robin, so a stream made per trial
        # could be one that a running trial's graph was captured on
        self.streams = ([torch.cuda.Stream(device) for _ in range(size)]
                        if size > 1 and device.type == "cuda" else [None] * size)

    def has_room(self) -> bool:
        return len(self.running) < self.size

    def start(self, key: Hashable, steps: Generator[None, None, Any]) -> None:
        slot = min(set(range(self.size)) - {trial.slot for trial in self.running})
        stream = self.streams[slot]
        if stream is not None:  # the data it reads was made on the default stream
            stream.wait_stream(torch.cuda.current_stream(self.device))
        self.running.append(Running(key, steps, slot, stream))

    def turn(self) -> list[tuple[Hashable, Any]]:
        """Advance every running trial by one step; return (key, result) of those that ended.
        A trial that raises is dropped and its exception propagates."""
        finished = []
        for trial in list(self.running):
            try:
                self._advance(trial)
            except StopIteration as done:
                self.running.remove(trial)
                finished.append((trial.key, done.value))
            except BaseException:
                self.running.remove(trial)
                raise
        return finished

    def _advance(self, trial: Running) -> None:
        if self.size == 1:
            next(trial.steps)
            return
        # Dropout and weight initialisation draw from the global generators, which the other
        # trials share: each trial gets its own by swapping their states around its turn.
        if trial.rng is not None:
            self._set_rng(trial.rng)
        try:
            with torch.cuda.stream(trial.stream) if trial.stream else nullcontext():
                next(trial.steps)
        finally:
            trial.rng = self._get_rng()

    def _get_rng(self) -> list[torch.Tensor]:
        states = [torch.get_rng_state()]
        if self.device.type == "cuda":
            states.append(torch.cuda.get_rng_state(self.device))
        return states

    def _set_rng(self, states: list[torch.Tensor]) -> None:
        torch.set_rng_state(states[0])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(states[1], self.device)
