"""Data: download, parse, synthesise and prepare datasets; batches for training."""
