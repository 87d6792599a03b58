"""The kinds of run (autoencoder training, evaluation of a given checkpoint, complexity only,
latent diffusion): one module each, one registry (``registry.py``)."""
