"""Running a study: the storage and its studies (`storage`), the trial queue and heartbeats
(`queue`), the sweep's worker processes (`workers`), live progress (`progress`), TensorBoard
logging (`tensorboard_log`) and the benchmark's measurements (`benchmark`)."""
