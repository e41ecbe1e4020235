"""A feature space that sees classes, not patients: a self-supervised encoder per fold and a
fidelity protocol whose targets pass their negative controls (issue 24).

Config: :class:`lusaug.core.config.features_sections.FeaturesParams` (``features:`` section; defaults in
``lusaug.core.config.features_sections.DEFAULT_YAML``).

Encoder (``features.ssl``):
- :func:`lusaug.features.frame_table.load_split_frames` -> :class:`~lusaug.features.frame_table.FrameTable`
  (uint8 images + split rows);
- :func:`lusaug.features.train.train_ssl` (:class:`~lusaug.features.train.SslRequest` ->
  :class:`~lusaug.features.train.SslResult`): lightly SimCLR / DCL / VICReg on intra-clip pairs of
  the fold's TRAINING frames (anything else fails), per-epoch atomic checkpoint and resume;
- :class:`lusaug.features.encoder.SslEncoder` (``SslEncoder.load(out_dir / "encoder.pt")``):
  ``features(uint8 (N, H, W)) -> (N, F)``.

Quality (``features.probe``): :func:`lusaug.features.probe.linear_probe` (any extractor; the
supervised encoder's ``FeatureSpace.features`` too) -> :class:`~lusaug.features.probe.ProbeResult`
(balanced accuracy, rare-class AUROC, intervals over validation patients).

Fidelity (``features.fidelity``, ``features.controls``):
- :func:`lusaug.features.fold.fold_protocol` (:class:`~lusaug.features.fold.FoldInputs`) ->
  :class:`~lusaug.features.fold.FoldProtocol`: probe, real-vs-real references, targets calibrated
  on new real patients, negative/positive controls, the usable-target rule;
- :func:`lusaug.features.fold.judge_synthetic`: a generator's images against those targets;
- :func:`lusaug.features.plots.controls_figure`: the controls heat-table.

Layer: ``features`` imports only the base and ``lusaug.data``, so ``models`` (classifier
initialisation from the encoder) and ``generators`` (filter, registry) can both import it.
"""
