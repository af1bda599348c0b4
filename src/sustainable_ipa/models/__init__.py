"""Model building and weights resolution for the pipeline's stages."""
