"""Where a job's attempts run: `local` (processes on this machine), `ray`, `slurm`."""
