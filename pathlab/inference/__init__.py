"""A trained checkpoint put to use: loading, deploy (predict, export), embeddings."""
