"""Stop-and-copy windows under load: the stall and what a copy costs."""
