"""diffnorm: normalization coefficients of diffusion-based covariance operators."""

__version__ = "0.1.0"
