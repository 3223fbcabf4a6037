"""Training: the LightningModule, the CLI and loading trained models."""

from .task import META_FORMAT, NormalizationTask, per_field_metrics

__all__ = ["META_FORMAT", "NormalizationTask", "load_model", "per_field_metrics", "predict_gamma"]


def __getattr__(name):  # load_model/predict_gamma live in diffnorm.pretrained (no import cycle)
    if name in ("load_model", "predict_gamma"):
        from .. import pretrained

        return getattr(pretrained, name)
    raise AttributeError(name)
