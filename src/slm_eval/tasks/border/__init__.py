"""The five border-control use cases: data, prompts and scorers."""
