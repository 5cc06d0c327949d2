"""Tasks: examples, prompts and scorers."""
