"""A user's own architectures, as the `python` model source imports them (`factory:
tests.support.own_models.nets:small_cnn`), for the model-source tests."""
