"""The method: CS-KD's loss and class-wise pair sampler, the baselines' building blocks, and the
training objective of every method (`--method`)."""
