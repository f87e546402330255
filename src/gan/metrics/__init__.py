"""Sample-quality metrics: the paper's Parzen-window log-likelihood and modern feature-space metrics."""

from gan.metrics.parzen import DEFAULT_SIGMAS, ParzenResult, parzen_log_likelihoods, parzen_protocol

__all__ = ["DEFAULT_SIGMAS", "ParzenResult", "parzen_log_likelihoods", "parzen_protocol"]
