"""Routing recommendations: cheaper models, effort, caching, batch and cascades, with projected savings."""
