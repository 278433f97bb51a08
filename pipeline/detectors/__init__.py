"""Waste detectors on the priced stream: overthinking, prompt-cache misses, spend spikes, context growth."""
