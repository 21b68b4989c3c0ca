"""Vigil's host-side model builder: data loading, training, int8 quantization, evaluation and model bundles.

Needs the ``build`` extra (TensorFlow). The agent never imports this package's TensorFlow-using modules.
"""
