"""Diagnostics beyond the paper: disentanglement scores, the image branch, real photos."""
