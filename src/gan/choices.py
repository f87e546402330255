"""The allowed values of the framework's string options, in one torch-free module (config validation
imports it before anything heavy, so a bad override fails in about a second)."""

UPDATE_SCHEMES = ("simultaneous", "alternating")
G_LOSSES = ("non_saturating", "minimax")
NOISE_DISTRIBUTIONS = ("uniform", "gaussian")
SCALINGS = ("unit", "symmetric", "gcn")
