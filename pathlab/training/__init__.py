"""Training: the LightningModule, losses, schedules, callbacks, the run record, progress lines."""
