"""The reward-model loop: training, embeddings, pool scoring, retrieval, prioritisation, the
model registry, rounds, and the model's view shown to annotators (with its pages and API)."""
