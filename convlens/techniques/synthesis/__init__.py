"""Synthesis family: images made by optimisation on one render loop (see ``loop``)."""
