"""Fine-tuning: dataset preparation, the training engine and entry script, and the local and SageMaker launchers."""
