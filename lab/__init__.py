"""hwlab: hardware selection and benchmarking lab for PaddlePaddle deployment."""
__version__ = "0.1.0"
