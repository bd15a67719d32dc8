"""Presets of the command line and the benchmarks: the built-in LeNet-300-100 and LeNet-5-Caffe
(`lenet`) and Fashion-MNIST read from IDX files (`fashion_mnist`). The nncodec package itself never
needs them: your own model, data and evaluation go through the same API.
"""
