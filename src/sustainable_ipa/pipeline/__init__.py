"""Running requests through the pipeline's stages: batching, replicas, per-request timestamps."""
