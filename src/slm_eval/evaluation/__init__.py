"""The evaluation engine: plan, run in a sandboxed worker, summarise."""
