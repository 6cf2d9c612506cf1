"""Training with one recipe for every family: schedules, token batches, the trainer and its run folder,
validation measures, the tasks, and the two equal-budget searches (tune: the peak rate; shapes: depth, heads
and FFN ratio)."""
