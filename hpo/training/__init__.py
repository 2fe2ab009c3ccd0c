"""Training: compile a built model and fit it, seeded, reporting each epoch to a sink."""
