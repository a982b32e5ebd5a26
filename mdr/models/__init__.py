"""Models: image VAE, text aspect encoder, disentangled fusion, DIN, and MDR itself."""
