"""Orchestration: the commands a person or the timer runs, the only layer that uses all the
others (decisions, outputs, config, systems, models)."""
