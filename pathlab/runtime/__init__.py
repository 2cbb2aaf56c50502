"""The ground floor: errors, atomic files, the terminal, the machine, locks, DDP and SLURM facts."""
