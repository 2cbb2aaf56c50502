"""Run identity and the experiment trackers: TensorBoard, MLflow, W&B."""
