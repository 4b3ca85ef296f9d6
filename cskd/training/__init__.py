"""Training a run: the trainer, one epoch, starting or resuming a session, the device, and
several processes under torchrun."""
