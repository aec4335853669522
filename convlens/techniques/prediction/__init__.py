"""Prediction family: image → the model's classes (classify; the info API is answered on its endpoint)."""
