"""The model zoo (a library, not a step): MLP, DomainBed MNIST CNN, CIFAR ResNets.

- `zoo`: build a network from a spec (`schemas.kd.models`) and run it through the `KDModel`
  interface (logits, penultimate features, last feature map, named intermediates).
- `profile`: measure a built model's size and cost; DisWOT's initialisation.
- `checkpoint`: encode and decode checkpoint files (the store I/O is
  `components.artifacts.checkpoints`).

Nothing is re-exported here: a torch-free module of this package can be imported without
importing torch.
"""
