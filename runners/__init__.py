"""Built-in training runners for expdb.

Each runner module exposes ``run(params: dict, ctx) -> None`` (train and report through
``ctx``) and ``build(params: dict) -> (model, example_inputs)`` (the model for these
parameters in eval mode plus batch-1 example inputs, for measuring Params, FLOPs and
latency without training). ``run`` builds its model through the same ``build`` path.

- ``cvt_io``: a small CvT backbone with an optional latent array (N latents, L latent
  self-attention layers, shared or not, layout "bdhw" or "bndhw") on a synthetic
  single-object detection task; reports ``iou50`` and ``miou``.
"""
