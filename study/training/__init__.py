"""Training one trial: CIFAR-10 as tensors on the device (`data`), the networks (`model`), the
training loop (`engine`) and several trials interleaved on CUDA streams (`streams`)."""
