"""Construction of preference data: image corruptions, text negatives, samplers, scorers and named recipes."""
