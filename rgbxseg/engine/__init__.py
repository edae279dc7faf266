"""Training and evaluation: loops, schedules, checkpoints, distributed set-up."""
