"""Layers shared by the families: attention, convolutions over time, FFN, embeddings."""
