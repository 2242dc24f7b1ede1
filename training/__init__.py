"""Training, evaluation and reports for AlexNet on CIFAR-10: ``python -m training`` / ``alexnet-train``."""
