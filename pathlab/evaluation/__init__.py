"""Numbers: metrics (one definition each), bootstrap and paired statistics, calibration, TTA, predictions."""
