"""Local (in-process) models: loading, profiles, generation, embeddings, energy."""
