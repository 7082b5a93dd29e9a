"""TensorBoard logging of trials (`logger=tensorboard`): per-epoch scalars and HParams.

Each trial is one run, `<logger.dir>/<study>/trial-<number>` (a train-app job:
`<study>/job-<its output folder>`), so TensorBoard's HParams view lists every trial with its
factor values and test accuracy, side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study.paths import named_folder


class TrialLog:
    def __init__(self, log_dir: str, study: str, run: str) -> None:
        # imported here: the tensorboard package is needed only with logger=tensorboard, and a
        # bare GPU node without it still runs the sweep
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(named_folder(Path(log_dir), study) / run))

    def epoch(self, epoch: int, loss: float, accuracy: float, test_accuracy: float | None
              ) -> None:
        self.writer.add_scalar("train/loss", loss, epoch + 1)
        self.writer.add_scalar("train/accuracy", accuracy, epoch + 1)
        if test_accuracy is not None:
            self.writer.add_scalar("test/accuracy", test_accuracy, epoch + 1)

    def finish(self, params: dict[str, Any], seed: int, test_accuracy: float, outcome: str
               ) -> None:
        hparams = {name: value for name, value in params.items() if value is not None}
        self.writer.add_hparams(hparams | {"seed": seed, "outcome": outcome},
                                {"test/accuracy": test_accuracy}, run_name=".")
        self.writer.close()
