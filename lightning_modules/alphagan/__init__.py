"""alphaGAN: the fixed discriminator, losses, the search and retraining modules."""
