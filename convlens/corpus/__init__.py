"""What a model makes of a whole dataset: named image folders, cached CNN codes, projections,
nearest neighbours and maximally activating patches (the corpus family's shared machinery; the
techniques themselves live in ``convlens/techniques/corpus/``)."""
