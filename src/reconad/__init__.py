"""reconad: unsupervised image anomaly detection by reconstruction."""

__version__ = "0.1.0"
