"""What a run's results look like on disk: report files, tables and figures."""
