"""Corpus family: what a model makes of a dataset (faithfulness curves; codes, embeddings, patches)."""
