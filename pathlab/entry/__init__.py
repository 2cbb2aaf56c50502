"""What every entry point shares: the table of commands, the one runner, the model assembled from a cfg."""
