"""Models (a library) and the `import_model` step: the zoo, the model sources, checkpoints.

- `zoo`: the zoo's networks (MLP, DomainBed MNIST CNN, CIFAR ResNets) and `build_model` for any
  spec, behind the `KDModel` interface (logits, penultimate features, feature map, named
  intermediates); `layers`: the zoo's torch-free layer plans (what a network costs).
- Model sources (torchvision, timm, the user's own module; docs/bring_your_own.md): `sources`
  builds the raw network, `weights` reads pretrained weights as data and loads them strictly,
  `probe` lays the network out in one forward pass, `external` wraps it as a `KDModel`;
  `identity` is what their cache keys and ``model.json`` record (torch-free), `checks` what
  `kdorch validate` checks.
- `profile`: measure a built model's size and cost; DisWOT's initialisation.
- `checkpoint`: encode and decode checkpoint files (the store I/O is
  `components.artifacts.checkpoints`).
- `import_model`: the step that turns a model trained elsewhere into a `ModelCheckpoint`.

Nothing is re-exported here: a torch-free module of this package can be imported without
importing torch.
"""
