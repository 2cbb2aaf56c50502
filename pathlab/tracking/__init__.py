"""Run identity, its curated hyper-parameters, and the experiment trackers: TensorBoard, MLflow, W&B."""
